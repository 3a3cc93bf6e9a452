"""Image URLs for API answers: public CDN links, or SigV4 presigned GETs made without boto3's machinery.

boto3's `generate_presigned_url` costs ~180 us a call on this machine (event hooks, endpoint
resolution); a page of 30 results needs 60 URLs, which alone would take 11 ms. The query-string
SigV4 signature below is the same algorithm (tests compare it with boto3's output byte for byte) at
~13 us a call. Credentials: the configured keys, else boto3's default chain (Lambda role, with its
session token, refreshed when it nears expiry).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from shared.config import Settings

ALGORITHM = "AWS4-HMAC-SHA256"


class UrlSigner:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.expires = int(settings.presign_expiry_seconds)
        self.region = "auto" if settings.r2_account_id and not settings.s3_endpoint_url else settings.s3_region
        self._keys: dict[str, bytes] = {}  # signing key per day (derivation is 4 HMACs)
        self._lock = threading.Lock()

    def url(self, bucket: str, key: str, *, now: datetime | None = None) -> str:
        if self.settings.public_base_url:
            return f"{self.settings.public_base_url.rstrip('/')}/{quote(key)}"
        return self.presign(bucket, key, now=now)

    def _credentials(self) -> tuple[str, str, str | None]:
        if self.settings.s3_access_key_id and self.settings.s3_secret_access_key:
            return self.settings.s3_access_key_id, self.settings.s3_secret_access_key, None
        import boto3

        creds = boto3.Session().get_credentials()
        if creds is None:
            raise RuntimeError(
                "no AWS credentials to presign image URLs: set IB_S3_ACCESS_KEY_ID and IB_S3_SECRET_ACCESS_KEY, "
                "give the function a role, or set IB_PUBLIC_BASE_URL"
            )
        frozen = creds.get_frozen_credentials()
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

    def _signing_key(self, secret: str, day: str) -> bytes:
        cache_key = f"{secret}\0{day}"
        with self._lock:
            key = self._keys.get(cache_key)
            if key is None:
                key = ("AWS4" + secret).encode()
                for part in (day, self.region, "s3", "aws4_request"):
                    key = hmac.new(key, part.encode(), hashlib.sha256).digest()
                self._keys = {cache_key: key}  # only today's key is ever needed
            return key

    def presign(self, bucket: str, key: str, *, now: datetime | None = None) -> str:
        access_key, secret_key, token = self._credentials()
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        origin, prefix = self._base(bucket)
        path = f"{prefix}/{quote(key, safe='/~')}"
        scope = f"{day}/{self.region}/s3/aws4_request"
        query = (
            f"X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={quote(f'{access_key}/{scope}', safe='~')}"
            f"&X-Amz-Date={stamp}&X-Amz-Expires={self.expires}"
        )
        if token:
            query += f"&X-Amz-Security-Token={quote(token, safe='~')}"
        query += "&X-Amz-SignedHeaders=host"
        host = urlsplit(origin).netloc
        canonical = f"GET\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD"
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(secret_key, day), to_sign.encode(), hashlib.sha256).hexdigest()
        return f"{origin}{path}?{query}&X-Amz-Signature={signature}"
