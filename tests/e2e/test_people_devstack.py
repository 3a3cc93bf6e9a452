"""`make dev` finds faces: the local stack's faces worker consumes the faces queue its embed worker fills."""

from __future__ import annotations

import io
import time
from pathlib import Path

from PIL import Image, ImageOps

from tests.fixtures.portraits import photo, rescaled


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def test_make_dev_groups_the_faces_of_its_photos_into_people(tmp_path: Path, test_model_dir: Path) -> None:
    from tests.fixtures.devstack import ARTIFACTS, get_json, start_stack

    stack = start_stack(tmp_path / "data", str(test_model_dir), log_path=ARTIFACTS / "devstack-people.log",
                        settings={"IB_FACES": "true"})
    grace = photo("grace_hopper")
    try:
        for key, image in {"grace-1.jpg": grace, "grace-2.jpg": ImageOps.mirror(grace),
                           "grace-3.jpg": rescaled(grace, 1024), "cat.jpg": photo("chelsea_cat")}.items():
            stack.s3().put_object(Bucket=stack.bucket, Key=key, Body=jpeg(image))
        stack.wait_embedded(4)
        deadline = time.monotonic() + 180
        while not (people := get_json(f"{stack.api_url}/api/people")["people"]):
            assert time.monotonic() < deadline, f"no person after 180 s:\n{stack.output()[-4000:]}"
            time.sleep(1)
        assert [person["faces"] for person in people] == [3]
        items = {item["key"]: item for item in get_json(f"{stack.api_url}/api/recent")["items"]}
        assert items["cat.jpg"]["people"] == [] and len(items["grace-2.jpg"]["people"]) == 1
    finally:
        assert stack.stop() == 0
    assert "Traceback" not in stack.output()
