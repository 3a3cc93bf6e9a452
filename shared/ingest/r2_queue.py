"""Cloudflare Queues HTTP pull client: how compute outside Workers consumes R2 event notifications.

A Python Worker cannot hold a CLIP model, so R2 notifications go to a Queue with an HTTP pull consumer
(`wrangler queues consumer http add <queue>`) and a scheduled function pulls them:

- `POST /accounts/{account}/queues/{queue}/messages/pull` with `batch_size` and `visibility_timeout_ms`
  leases up to `batch_size` messages: `{"result": {"messages": [{"id", "body", "attempts", "lease_id",
  "timestamp_ms", "metadata"}]}}`. Bodies are base64 (or plain JSON); `shared.events.parse` decodes both.
- `POST …/messages/ack` with `{"acks": [{"lease_id"}], "retries": [{"lease_id", "delay_seconds"}]}`
  deletes the acked messages and makes the retried ones visible again. A lease that is neither acked nor
  retried returns to the queue when `visibility_timeout_ms` runs out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from shared.config import Settings

MAX_BATCH_SIZE = 100  # Cloudflare's limit per pull
MAX_VISIBILITY_TIMEOUT_MS = 12 * 60 * 60 * 1000  # 12 hours


class QueueError(RuntimeError):
    """The Cloudflare API refused a request; the message says why and what to check."""


class QueueUnavailable(QueueError):
    """Cloudflare is busy or unreachable (429, 5xx, network): try again on the next run."""


@dataclass(frozen=True)
class PulledMessage:
    id: str
    lease_id: str
    body: str
    attempts: int = 1
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class AckResult:
    acked: int
    retried: int
    warnings: tuple[str, ...] = ()


class R2QueueClient:
    """Pull, ack and retry messages of one Cloudflare Queue with an API token."""

    def __init__(
        self,
        account_id: str,
        queue_id: str,
        api_token: str,
        base_url: str = "https://api.cloudflare.com/client/v4",
        timeout_seconds: float = 30.0,
    ):
        missing = [
            name
            for name, value in (
                ("IB_R2_ACCOUNT_ID", account_id),
                ("IB_R2_QUEUE_ID", queue_id),
                ("IB_CLOUDFLARE_API_TOKEN", api_token),
            )
            if not value
        ]
        if missing:
            raise QueueError(
                f"cannot pull the R2 event queue: {', '.join(missing)} not set "
                "(see docs/deploy-cloudflare.md for where each value comes from)"
            )
        self._queue_path = f"/accounts/{account_id}/queues/{queue_id}/messages"
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_token}", "Content-Type": "application/json"},
            timeout=timeout_seconds,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> R2QueueClient:
        return cls(
            account_id=settings.r2_account_id or "",
            queue_id=settings.r2_queue_id or "",
            api_token=settings.cloudflare_api_token or "",
            base_url=settings.cloudflare_api_url,
        )

    def __enter__(self) -> R2QueueClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def pull(self, batch_size: int = 10, visibility_timeout_ms: int = 600_000) -> list[PulledMessage]:
        """Lease up to `batch_size` messages; an empty list when the queue is empty (no long polling)."""
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_SIZE}, got {batch_size}")
        if not 1 <= visibility_timeout_ms <= MAX_VISIBILITY_TIMEOUT_MS:
            raise ValueError(f"visibility_timeout_ms must be 1..{MAX_VISIBILITY_TIMEOUT_MS}")
        result = self._post("/pull", {"batch_size": batch_size, "visibility_timeout_ms": visibility_timeout_ms})
        raw_messages = (result or {}).get("messages") or []
        messages = []
        for raw in raw_messages:
            if not isinstance(raw, dict) or not raw.get("lease_id"):
                raise QueueError(f"pull returned a message without lease_id: {str(raw)[:200]}")
            messages.append(
                PulledMessage(
                    id=str(raw.get("id", "")),
                    lease_id=str(raw["lease_id"]),
                    body=str(raw.get("body", "")),
                    attempts=int(raw.get("attempts") or 1),
                    timestamp_ms=int(raw["timestamp_ms"]) if raw.get("timestamp_ms") is not None else None,
                )
            )
        return messages

    def ack(self, acks: Sequence[str], retries: Sequence[str] = (), retry_delay_seconds: int = 0) -> AckResult:
        """Delete the `acks` leases and hand the `retries` leases back to the queue (after a delay)."""
        if not acks and not retries:
            return AckResult(0, 0)
        payload = {
            "acks": [{"lease_id": lease} for lease in acks],
            "retries": [{"lease_id": lease, "delay_seconds": retry_delay_seconds} for lease in retries],
        }
        result = self._post("/ack", payload) or {}
        return AckResult(
            acked=int(result.get("ackCount", len(acks))),
            retried=int(result.get("retryCount", len(retries))),
            warnings=tuple(str(w) for w in result.get("warnings") or ()),
        )

    def _post(self, path: str, payload: dict[str, Any]) -> Any:
        url = self._queue_path + path
        try:
            response = self._http.post(url, json=payload)
        except httpx.HTTPError as exc:
            raise QueueUnavailable(f"cannot reach the Cloudflare API for {path}: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        errors = (
            "; ".join(f"{e.get('code')}: {e.get('message')}" for e in body.get("errors") or () if isinstance(e, dict))
            or response.text[:200]
        )
        if response.status_code == 429 or response.status_code >= 500:
            raise QueueUnavailable(f"Cloudflare API {path} answered {response.status_code} ({errors}); retry later")
        if response.status_code in (401, 403):
            raise QueueError(
                f"Cloudflare API {path} refused the token ({response.status_code}: {errors}); "
                "IB_CLOUDFLARE_API_TOKEN needs the Queues Edit permission"
            )
        if response.status_code == 404:
            raise QueueError(
                f"Cloudflare API {path} found no such queue ({errors}); check IB_R2_ACCOUNT_ID and "
                "IB_R2_QUEUE_ID, and that the queue has an HTTP pull consumer "
                "(wrangler queues consumer http add <queue>)"
            )
        if response.status_code >= 400 or body.get("success") is False:
            raise QueueError(f"Cloudflare API {path} failed ({response.status_code}: {errors})")
        return body.get("result")
