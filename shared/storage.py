"""Object storage through boto3: AWS S3, Cloudflare R2, or any S3-compatible endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.config import Settings

MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable",
                   "InternalError", "503", "500", "RequestLimitExceeded"}


class StorageError(RuntimeError):
    """A storage request failed for good (permissions, bad bucket); the message says what to check."""


class ObjectMissing(StorageError):
    pass


class ObjectTooLarge(StorageError):
    def __init__(self, bucket: str, key: str, size: int, limit: int):
        self.size, self.limit = size, limit
        super().__init__(
            f"s3://{bucket}/{key} is {size:,} bytes, over the {limit:,}-byte limit (IB_MAX_IMAGE_BYTES); "
            "raise the limit or shrink the image"
        )


class StorageUnavailable(RuntimeError):
    """Throttling, a 5xx or a network error: transient, retry later."""


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str | None
    last_modified: datetime | None
    content_type: str | None = None


@dataclass(frozen=True)
class StoredObject:
    info: ObjectInfo
    data: bytes


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None


class Storage:
    """Thin wrapper over an S3 client that maps errors to missing / too large / transient / permanent."""

    def __init__(self, settings: Settings):
        self.settings = settings

    @cached_property
    def client(self):  # noqa: ANN201 - boto3 clients are dynamically typed
        region = "auto" if self.settings.r2_account_id and not self.settings.s3_endpoint_url else None
        return boto3.client(
            "s3",
            endpoint_url=self.settings.s3_endpoint,
            region_name=region or self.settings.s3_region,
            aws_access_key_id=self.settings.s3_access_key_id,
            aws_secret_access_key=self.settings.s3_secret_access_key,
            config=Config(
                signature_version="s3v4",
                retries={"max_attempts": 3, "mode": "standard"},
                max_pool_connections=32,
                s3={"addressing_style": "path"} if self.settings.s3_endpoint else {},
            ),
        )

    def _fail(self, exc: Exception, bucket: str, key: str | None = None) -> Exception:
        where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in MISSING_CODES:
                return ObjectMissing(f"{where} does not exist (deleted since the event?)")
            if code == "NoSuchBucket":
                return StorageError(f"bucket {bucket!r} does not exist; check IB_BUCKET and the endpoint")
            if code in TRANSIENT_CODES or status >= 500 or status == 429:
                return StorageUnavailable(f"{where}: storage is busy or failing ({code}); retry later")
            if code in {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
                return StorageError(f"{where}: access denied ({code}); check the credentials and policy")
            return StorageError(f"{where}: {code or status}: {exc}")
        return StorageUnavailable(f"{where}: cannot reach storage: {exc}")

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            response = self.client.head_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            error = self._fail(exc, bucket, key)
            if isinstance(error, ObjectMissing):
                return None
            raise error from exc
        return ObjectInfo(
            bucket, key, int(response["ContentLength"]), _etag(response.get("ETag")),
            response.get("LastModified"), response.get("ContentType"),
        )

    def read(self, bucket: str, key: str, max_bytes: int | None = None) -> StoredObject:
        """The object's bytes; ObjectTooLarge before downloading anything over the limit."""
        limit = max_bytes if max_bytes is not None else self.settings.max_image_bytes
        try:
            response = self.client.get_object(Bucket=bucket, Key=key)
            size = int(response["ContentLength"])
            if size > limit:
                response["Body"].close()
                raise ObjectTooLarge(bucket, key, size, limit)
            data = response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, bucket, key) from exc
        info = ObjectInfo(
            bucket, key, size, _etag(response.get("ETag")), response.get("LastModified"), response.get("ContentType")
        )
        return StoredObject(info, data)

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under `prefix`, page by page (1,000 a page)."""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        bucket, item["Key"], int(item["Size"]), _etag(item.get("ETag")), item.get("LastModified")
                    )
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, bucket) from exc

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        try:
            self.client.put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type, CacheControl="public, max-age=31536000"
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, bucket, key) from exc

    def delete(self, bucket: str, key: str) -> None:
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            error = self._fail(exc, bucket, key)
            if not isinstance(error, ObjectMissing):
                raise error from exc

    def url(self, bucket: str, key: str) -> str:
        """A public URL when the bucket sits behind a CDN, else a presigned GET that expires."""
        if self.settings.public_base_url:
            from urllib.parse import quote

            return f"{self.settings.public_base_url.rstrip('/')}/{quote(key)}"
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=self.settings.presign_expiry_seconds
        )

    def thumbnail_key(self, key: str) -> str:
        return f"{self.settings.thumbnail_prefix}{key}.webp"

    def is_thumbnail(self, key: str) -> bool:
        return key.startswith(self.settings.thumbnail_prefix)
