"""OCR through the local stack, as a user of make dev sees it."""

from __future__ import annotations

import time
from pathlib import Path

from tests.fixtures.text_images import SCENE, jpeg, render


def test_make_dev_shows_the_words_found_in_pictures(tmp_path: Path, test_model_dir: Path) -> None:
    """The local stack's OCR worker reads what its embed worker embedded; the gallery's API shows it."""
    from tests.fixtures.devstack import ARTIFACTS, get_json, start_stack

    stack = start_stack(tmp_path / "data", str(test_model_dir), log_path=ARTIFACTS / "devstack-ocr.log",
                        settings={"IB_OCR": "true"})
    try:
        stack.s3().put_object(Bucket=stack.bucket, Key="ward.jpg", Body=jpeg(render(SCENE["hospital-sign"])))
        stack.wait_embedded(1)
        deadline = time.monotonic() + 120
        while (item := get_json(f"{stack.api_url}/api/recent")["items"][0])["text"] is None:
            assert time.monotonic() < deadline, f"no text after 120 s:\n{stack.output()[-4000:]}"
            time.sleep(0.5)
        assert item["text"] == "INPATIENT\nHOSPITAL"
        assert get_json(f"{stack.api_url}/api/stats")["ocr_waiting"] == 0
    finally:
        assert stack.stop() == 0
    assert "Traceback" not in stack.output()
