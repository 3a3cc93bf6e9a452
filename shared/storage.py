"""Object storage through boto3: AWS S3, Cloudflare R2, or any S3-compatible endpoint."""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.config import Settings
from shared.events import MAX_KEY_BYTES, clean_etag

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


def region_for(settings: Settings) -> str:
    """R2 signs with region `auto`; everything else with the configured region."""
    return "auto" if settings.r2_account_id and not settings.s3_endpoint_url else settings.s3_region


class Storage:
    """Thin wrapper over an S3 client that maps errors to missing / too large / transient / permanent."""

    def __init__(self, settings: Settings):
        self.settings = settings

    @cached_property
    def client(self):  # noqa: ANN201 - boto3 clients are dynamically typed
        return boto3.client(
            "s3",
            endpoint_url=self.settings.s3_endpoint,
            region_name=region_for(self.settings),
            aws_access_key_id=self.settings.s3_access_key_id,
            aws_secret_access_key=self.settings.s3_secret_access_key,
            config=Config(
                signature_version="s3v4",
                retries={"max_attempts": 3, "mode": "standard"},
                max_pool_connections=32,
                s3={"addressing_style": "path"} if self.settings.s3_endpoint else {},
                # CRC checksums on every PUT and GET cost CPU per image; S3's own MD5/ETag checks stay.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
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
            bucket, key, int(response["ContentLength"]), clean_etag(response.get("ETag")),
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
        info = ObjectInfo(bucket, key, size, clean_etag(response.get("ETag")), response.get("LastModified"),
                          response.get("ContentType"))
        return StoredObject(info, data)

    def read_unchanged(self, bucket: str, key: str, etag: str | None) -> bytes | None:
        """The object's bytes while it still holds the content `etag` names; None once it is gone, too large
        or replaced (its own event, or the next backfill, handles the new content)."""
        try:
            obj = self.read(bucket, key)
        except (ObjectMissing, ObjectTooLarge):
            return None
        if etag and obj.info.etag and obj.info.etag != etag:
            return None
        return obj.data

    def list(self, bucket: str, prefix: str = "", page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Every object under `prefix`, page by page (S3's most, 1,000 a page, unless told fewer)."""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        bucket, item["Key"], int(item["Size"]), clean_etag(item.get("ETag")), item.get("LastModified")
                    )
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, bucket) from exc

    def list_page(self, bucket: str, token: str | None = None, max_keys: int = 1000,
                  ) -> tuple[list[ObjectInfo], str | None]:
        """One page of the listing: (objects, the token of the next page, None at the end). A listing of
        millions of keys is resumed from a stored token by the next call, in this process or another."""
        kwargs: dict[str, object] = {"Bucket": bucket, "MaxKeys": int(max_keys)}
        if token:
            kwargs["ContinuationToken"] = token
        try:
            page = self.client.list_objects_v2(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, bucket) from exc
        infos = [ObjectInfo(bucket, item["Key"], int(item["Size"]), clean_etag(item.get("ETag")),
                            item.get("LastModified")) for item in page.get("Contents", [])]
        return infos, (page.get("NextContinuationToken") if page.get("IsTruncated") else None)

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

    @cached_property
    def _signer(self) -> UrlSigner:
        return UrlSigner(self.settings)

    def url(self, bucket: str, key: str) -> str:
        """A public URL when the bucket sits behind a CDN, else a presigned GET that expires."""
        return self._signer.url(bucket, key)

    def thumbnail_key(self, key: str) -> str:
        """`<prefix><key>.webp`, or `<prefix>long/<sha256 of the key>.webp` when that would be over
        S3's 1,024-byte key limit (a long key's thumbnail must still be writable)."""
        name = f"{self.settings.thumbnail_prefix}{key}.webp"
        if len(name.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES:
            return name
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.settings.thumbnail_prefix}long/{digest}.webp"

    def is_thumbnail(self, key: str) -> bool:
        return key.startswith(self.settings.thumbnail_prefix)


ALGORITHM = "AWS4-HMAC-SHA256"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"  # X-Amz-Date
SIGNED_URLS_KEPT = 10_000  # URLs of the current window a process keeps (~4 MB)
SIGNINGS_KEPT = 16  # (bucket, time, credentials) signing parts kept: a window's, and presign's exact times
# Characters a key keeps in a URL path as they are (quote's unreserved set and "/").
_UNRESERVED_PATH = re.compile(r"[A-Za-z0-9_.~/-]*")


class UrlSigner:
    """Image URLs for API answers: public CDN links, or SigV4 presigned GETs made without boto3.

    boto3's `generate_presigned_url` costs ~180 µs a call (event hooks, endpoint resolution); a page
    of 30 results needs 60 URLs. This is the same query-string SigV4 algorithm (a test compares it with
    boto3's output byte for byte) at ~10 µs a call: what a bucket's URLs signed at one time share is made once
    (_Signing). Credentials: the configured keys, else boto3's default chain (a Lambda role with its session token),
    resolved once and then refreshed by botocore as they near expiry (resolving them took 16 ms a URL).

    URLs are signed at the start of the current window, a quarter of their lifetime: within it a key gets the same
    URL, so a browser keeps the images and thumbnails it loaded across pages and searches, and the API signs each
    once (60 signatures were a fifth of an `/api/similar` answer's CPU); each URL handed out has at least three
    quarters of its lifetime left.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.expires = int(settings.presign_expiry_seconds)
        self.window = max(1, self.expires // 4)
        self.region = region_for(settings)
        self.clock = time.time
        self._signings: dict[tuple[str, str, tuple[str, str, str | None]], _Signing] = {}
        self._window_stamp = (-1, "")  # (a window's first second, its X-Amz-Date)
        self._role_credentials: Any = None  # botocore's, from the default chain (they refresh themselves)
        self._urls: OrderedDict[tuple[str, str], tuple[tuple[Any, ...], str]] = OrderedDict()  # LRU
        self._lock = threading.Lock()

    def url(self, bucket: str, key: str, *, now: datetime | None = None) -> str:
        """The image's URL: public, or presigned in the current window (at `now` exactly, if given)."""
        if self.settings.public_base_url:
            return f"{self.settings.public_base_url.rstrip('/')}/{quote(key)}"
        if now is not None:
            return self.presign(bucket, key, now=now)
        credentials = self._credentials()
        start = int(self.clock()) // self.window * self.window
        signed = (start, *credentials)  # new keys: new URLs
        with self._lock:
            kept = self._urls.get((bucket, key))
            if kept is not None and kept[0] == signed:
                self._urls.move_to_end((bucket, key))
                return kept[1]
        url = self._sign(bucket, key, self._stamp(start), credentials)
        with self._lock:
            self._urls[(bucket, key)] = (signed, url)
            if len(self._urls) > SIGNED_URLS_KEPT:
                self._urls.popitem(last=False)
        return url

    def _stamp(self, start: int) -> str:
        """The X-Amz-Date of the window starting at `start` (formatting it took longer than a signature's hash)."""
        window = self._window_stamp
        if window[0] != start:
            window = self._window_stamp = (start, datetime.fromtimestamp(start, UTC).strftime(STAMP_FORMAT))
        return window[1]

    def _credentials(self) -> tuple[str, str, str | None]:
        if self.settings.s3_access_key_id and self.settings.s3_secret_access_key:
            return self.settings.s3_access_key_id, self.settings.s3_secret_access_key, None
        if self._role_credentials is None:
            self._role_credentials = boto3.Session().get_credentials()
            if self._role_credentials is None:
                raise RuntimeError(
                    "no AWS credentials to presign image URLs: set IB_S3_ACCESS_KEY_ID and IB_S3_SECRET_ACCESS_KEY, "
                    "give the function a role, or set IB_PUBLIC_BASE_URL"
                )
        frozen = self._role_credentials.get_frozen_credentials()
        return frozen.access_key, frozen.secret_key, frozen.token

    def _base(self, bucket: str) -> tuple[str, str]:
        """(scheme://host, path prefix): path style on custom endpoints, virtual-hosted on AWS."""
        endpoint = self.settings.s3_endpoint
        if endpoint:
            parts = urlsplit(endpoint)
            return f"{parts.scheme}://{parts.netloc}", f"{parts.path.rstrip('/')}/{quote(bucket, safe='')}"
        if "." in bucket:  # dotted names break the wildcard TLS certificate of virtual-hosted URLs
            return f"https://s3.{self.region}.amazonaws.com", f"/{quote(bucket, safe='')}"
        return f"https://{bucket}.s3.{self.region}.amazonaws.com", ""

    def _signing(self, bucket: str, stamp: str, credentials: tuple[str, str, str | None]) -> _Signing:
        """What the URLs of `bucket` signed at `stamp` share, made once (a window's URLs share one)."""
        with self._lock:
            found = self._signings.get((bucket, stamp, credentials))
        if found is not None:
            return found
        access_key, secret_key, token = credentials
        day = stamp[:8]
        origin, prefix = self._base(bucket)
        scope = f"{day}/{self.region}/s3/aws4_request"
        query = (
            f"X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={quote(f'{access_key}/{scope}', safe='~')}"
            f"&X-Amz-Date={stamp}&X-Amz-Expires={self.expires}"
        )
        if token:
            query += f"&X-Amz-Security-Token={quote(token, safe='~')}"
        query += "&X-Amz-SignedHeaders=host"
        key = ("AWS4" + secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.digest(key, part.encode(), "sha256")
        tail = f"\n{query}\nhost:{urlsplit(origin).netloc}\n\nhost\nUNSIGNED-PAYLOAD"
        signing = _Signing(origin, prefix, query, tail, f"{ALGORITHM}\n{stamp}\n{scope}\n",
                           hmac.new(key, digestmod=hashlib.sha256))
        with self._lock:
            if len(self._signings) >= SIGNINGS_KEPT:
                self._signings.clear()
            self._signings[(bucket, stamp, credentials)] = signing
        return signing

    def presign(self, bucket: str, key: str, *, now: datetime | None = None) -> str:
        """A presigned GET signed at `now` (this second by default)."""
        return self._sign(bucket, key, (now or datetime.now(UTC)).strftime(STAMP_FORMAT), self._credentials())

    def _sign(self, bucket: str, key: str, stamp: str, credentials: tuple[str, str, str | None]) -> str:
        signing = self._signing(bucket, stamp, credentials)
        path = f"{signing.prefix}/{key if _UNRESERVED_PATH.fullmatch(key) else quote(key, safe='/~')}"
        canonical = f"GET\n{path}{signing.canonical_tail}"
        mac = signing.mac.copy()
        mac.update(f"{signing.to_sign_head}{hashlib.sha256(canonical.encode()).hexdigest()}".encode())
        return f"{signing.origin}{path}?{signing.query}&X-Amz-Signature={mac.hexdigest()}"


@dataclass(frozen=True)
class _Signing:
    """The parts of a SigV4 query-string signature shared by the URLs of one bucket signed at one time."""

    origin: str  # scheme://host
    prefix: str  # the path before the key
    query: str  # the X-Amz-* parameters before the signature
    canonical_tail: str  # the canonical request after its path
    to_sign_head: str  # the string to sign before the canonical request's hash
    mac: hmac.HMAC  # keyed with the signing key (4 HMACs from the secret); copied for each URL


def queue_client(queue_url: str, settings: Settings) -> Any:
    """An SQS client for `queue_url`: its endpoint and region come from the URL, so AWS queues and the
    local stack's (moto) both work; a local endpoint takes the test credentials moto accepts."""
    parts = urlsplit(queue_url)
    host = parts.hostname or ""
    endpoint = f"{parts.scheme}://{parts.netloc}"
    if host.endswith(".amazonaws.com"):
        return boto3.client("sqs", region_name=host.split(".")[1], endpoint_url=endpoint)
    return boto3.client("sqs", region_name=settings.s3_region, endpoint_url=endpoint,
                        aws_access_key_id=settings.s3_access_key_id or "test",
                        aws_secret_access_key=settings.s3_secret_access_key or "test")
