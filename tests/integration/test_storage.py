"""Storage against moto in server mode: a real HTTP S3 endpoint on 127.0.0.1."""

from __future__ import annotations

import urllib.request

import pytest

from shared.config import load_settings
from shared.storage import ObjectMissing, ObjectTooLarge, Storage, StorageError


def test_put_read_head_delete(storage: Storage, bucket: str) -> None:
    storage.put(bucket, "a b/ü.jpg", b"hello", "image/jpeg")
    obj = storage.read(bucket, "a b/ü.jpg")
    assert obj.data == b"hello"
    assert obj.info.size == 5 and obj.info.etag and '"' not in obj.info.etag
    assert obj.info.content_type == "image/jpeg" and obj.info.last_modified is not None
    head = storage.head(bucket, "a b/ü.jpg")
    assert head is not None and head.etag == obj.info.etag
    storage.delete(bucket, "a b/ü.jpg")
    assert storage.head(bucket, "a b/ü.jpg") is None
    storage.delete(bucket, "a b/ü.jpg")  # deleting twice is fine


def test_read_refuses_oversized_objects_before_download(storage: Storage, bucket: str) -> None:
    storage.put(bucket, "big.png", b"x" * 5000, "image/png")
    with pytest.raises(ObjectTooLarge, match="IB_MAX_IMAGE_BYTES") as err:
        storage.read(bucket, "big.png", max_bytes=4096)
    assert err.value.size == 5000


def test_missing_key_and_bucket_are_clear(storage: Storage, bucket: str) -> None:
    with pytest.raises(ObjectMissing, match="does not exist"):
        storage.read(bucket, "nope.jpg")
    with pytest.raises(StorageError, match="IB_BUCKET"):
        storage.read("no-such-bucket-here", "x.jpg")


def test_list_paginates(storage: Storage, bucket: str) -> None:
    storage.client.put_object(Bucket=bucket, Key="other/x.jpg", Body=b"1")
    keys = {f"dir/{i:04d}.jpg" for i in range(25)}
    for key in keys:
        storage.client.put_object(Bucket=bucket, Key=key, Body=b"x")
    pages: list[int] = []
    storage.client.meta.events.register("after-call.s3.ListObjectsV2",
                                        lambda parsed, **_: pages.append(len(parsed.get("Contents", []))))
    listed = {info.key for info in storage.list(bucket, prefix="dir/", page_size=10)}
    assert listed == keys and pages == [10, 10, 5]  # three pages, each token followed


def test_presigned_url_serves_the_object(storage: Storage, bucket: str) -> None:
    storage.put(bucket, "photo 1.jpg", b"pixels", "image/jpeg")
    url = storage.url(bucket, "photo 1.jpg")
    assert "Expires=" in url or "X-Amz-Expires=" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"pixels"


def test_public_base_url_and_thumbnail_keys(settings) -> None:
    public = Storage(load_settings(public_base_url="https://cdn.example/photos/", bucket="b"))
    assert public.url("b", "a b/c.jpg") == "https://cdn.example/photos/a%20b/c.jpg"
    assert public.thumbnail_key("x/y.jpg") == ".thumbnails/x/y.jpg.webp"
    assert public.is_thumbnail(".thumbnails/x/y.jpg.webp") and not public.is_thumbnail("x/y.jpg")




