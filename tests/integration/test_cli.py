"""The `image-browser` CLI against moto S3 + embedded PostgreSQL with the tiny test model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import runtime
from shared.cli.main import main
from shared.dev.local_services import MotoServer, aws_client
from tests.fixtures.model import synthetic_photo
from tests.fixtures.services import unique_name


@pytest.fixture()
def cli_bucket(moto_server: MotoServer, pg_url: str, test_model_dir: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    bucket = unique_name("cli")
    aws_client("s3", moto_server.endpoint).create_bucket(Bucket=bucket)
    for name, value in {"IB_DATABASE_URL": pg_url, "IB_S3_ENDPOINT_URL": moto_server.endpoint,
                        "IB_S3_ACCESS_KEY_ID": "test", "IB_S3_SECRET_ACCESS_KEY": "test", "IB_BUCKET": bucket,
                        "IB_MODEL": str(test_model_dir)}.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    yield bucket
    runtime.reset()


def make_folder(root: Path, count: int) -> Path:
    for i in range(count):
        path = root / ("deep/er" if i % 2 else "") / f"photo {i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic_photo(64, 48, seed=i).save(path, format="JPEG")
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    synthetic_photo(64, 48, seed=99).save(root / ".hidden" / "skip.jpg", format="JPEG")
    return root


def test_sync_uploads_once_then_embed_and_status(cli_bucket: str, moto_server: MotoServer, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_folder(tmp_path / "photos", 6)
    assert main(["sync", str(folder), "--collection", cli_bucket, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "uploaded 6" in out and "0 already in the bucket" in out and "1 not images" in out
    s3 = aws_client("s3", moto_server.endpoint)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=cli_bucket)["Contents"]}
    assert keys == {"photo 0.jpg", "photo 2.jpg", "photo 4.jpg", "deep/er/photo 1.jpg", "deep/er/photo 3.jpg",
                    "deep/er/photo 5.jpg"}
    assert s3.head_object(Bucket=cli_bucket, Key="photo 0.jpg")["ContentType"] == "image/jpeg"

    synthetic_photo(64, 48, seed=7).save(folder / "photo 7.jpg", format="JPEG")
    assert main(["sync", str(folder), "--collection", cli_bucket, "--quiet", "--embed"]) == 0
    out = capsys.readouterr().out
    assert "uploaded 1" in out and "6 already in the bucket" in out
    assert "embedded 7" in out and "remaining 0" in out

    assert main(["status", "--collection", cli_bucket]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"] == {"embedded": 7, "pending": 0, "failed": 0} and status["remaining"] == 0

    assert main(["backfill", "--collection", cli_bucket]) == 0
    assert "embedded 0" in capsys.readouterr().out


def test_cli_errors_say_what_to_do(cli_bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sync", str(tmp_path / "nope"), "--collection", cli_bucket]) == 1
    assert "is not a directory" in capsys.readouterr().err
    assert main(["status", "--collection", unique_name("missing")]) == 1
    assert "no collection named" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reembed", "--collection", cli_bucket])  # --model is required
