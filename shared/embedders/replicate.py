"""The hosted backend the project started with: `krthr/clip-embeddings` (ViT-L/14, 768-d) on Replicate.

One prediction per image or text. Rate limits (429) and server errors (5xx) are retried with
exponential backoff (0.5, 1, 2, 4 s, with jitter), waiting at least what `Retry-After` asks; the
replicate client does not retry a POST by itself. At most `IB_REPLICATE_CONCURRENCY` predictions
run at once per process.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
from PIL import Image

from shared.embedders import Embedder, EmbedderError, EmbedderTemporaryError, normalize_rows
from shared.embedders.text import DEFAULT_LANGUAGE

if TYPE_CHECKING:
    from shared.config import Settings

log = logging.getLogger(__name__)

BACKOFF = (0.5, 1.0, 2.0, 4.0)  # seconds before retries 1..4
MAX_RETRY_AFTER = 60.0
DIMENSIONS = {"krthr/clip-embeddings": 768}
# The model resizes to 224 px itself: sending more only costs upload time.
MAX_UPLOAD_SIDE = 448


class _RetryAfterTransport(httpx.BaseTransport):
    """Remembers the last Retry-After header per thread: the client's errors do not carry headers."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.local = threading.local()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        self.local.retry_after = response.headers.get("retry-after")
        return response

    def close(self) -> None:
        self._inner.close()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class ReplicateEmbedder(Embedder):
    def __init__(
        self,
        model: str,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        import replicate

        name, _, version = model.partition(":")
        if name.count("/") != 1:
            raise EmbedderError(f"replicate:{model} is not a model reference: use replicate:owner/name[:version]")
        token = settings.replicate_api_token or os.environ.get("REPLICATE_API_TOKEN")
        if not token:
            raise EmbedderError(
                f"IB_MODEL=replicate:{model} needs a Replicate API token: set IB_REPLICATE_API_TOKEN "
                "(https://replicate.com/account/api-tokens), or use the local default model"
            )
        self.model_name = name
        self.model_id = f"replicate:{name}"
        self.dim = DIMENSIONS.get(name, 768)
        self._version = version or None
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._slots = threading.BoundedSemaphore(settings.replicate_concurrency)
        self._concurrency = settings.replicate_concurrency
        self._transport = _RetryAfterTransport()
        self._client = replicate.Client(
            api_token=token, base_url=settings.replicate_base_url, transport=self._transport
        )
        self._version_lock = threading.Lock()

    def loaded(self) -> dict[str, bool]:
        return {"visual": True, "textual": True}  # nothing to load locally

    def embed_texts(self, texts: Sequence[str], lang: str = DEFAULT_LANGUAGE) -> np.ndarray:
        # krthr/clip-embeddings (OpenAI CLIP) takes no language: `lang` is accepted and ignored.
        return self._embed_all([{"text": str(text)} for text in texts])

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._embed_all([{"image": _data_uri(image)} for image in images])

    def _embed_all(self, inputs: list[dict[str, str]]) -> np.ndarray:
        if not inputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(inputs) == 1:
            return normalize_rows(np.asarray([self._predict(inputs[0])]))
        with ThreadPoolExecutor(max_workers=min(self._concurrency, len(inputs))) as pool:
            rows = list(pool.map(self._predict, inputs))
        return normalize_rows(np.asarray(rows))

    # -- one prediction, with retries ---------------------------------------------------------------

    def version(self) -> str:
        """The model version to run: the one in the spec, else the model's latest (looked up once)."""
        with self._version_lock:
            if self._version is None:
                model = self._with_retries(lambda: self._client.models.get(self.model_name))
                latest = getattr(model, "latest_version", None)
                if latest is None:
                    raise EmbedderError(f"Replicate model {self.model_name} has no published version")
                self._version = latest.id
            return self._version

    def _predict(self, model_input: dict[str, str]) -> list[float]:
        version = self.version()
        with self._slots:
            prediction = self._with_retries(
                lambda: self._client.predictions.create(version=version, input=model_input, wait=True)
            )
            if prediction.status not in ("succeeded", "failed", "canceled"):
                self._with_retries(prediction.wait)
        if prediction.status != "succeeded":
            raise EmbedderError(
                f"Replicate prediction {prediction.id} {prediction.status}: {prediction.error or 'no detail'}"
            )
        output: Any = prediction.output
        embedding = output.get("embedding") if isinstance(output, dict) else output
        if not isinstance(embedding, list) or len(embedding) != self.dim:
            raise EmbedderError(
                f"Replicate model {self.model_name} returned {type(embedding).__name__} "
                f"of length {len(embedding) if isinstance(embedding, list) else '?'}; expected {self.dim} floats"
            )
        return embedding

    def _with_retries(self, call: Callable[[], Any]) -> Any:
        from replicate.exceptions import ReplicateError

        for attempt in range(len(BACKOFF) + 1):
            self._transport.local.retry_after = None
            try:
                return call()
            except ReplicateError as exc:
                status = exc.status or 0
                if status in (401, 403):
                    raise EmbedderError(
                        f"Replicate refused the token ({status}): check IB_REPLICATE_API_TOKEN"
                    ) from None
                if status != 429 and status < 500:
                    raise EmbedderError(f"Replicate rejected the request ({status}): {exc}") from None
                problem = f"HTTP {status}"
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt == len(BACKOFF):
                break
            delay = BACKOFF[attempt] * self._rng.uniform(0.8, 1.2)
            retry_after = parse_retry_after(getattr(self._transport.local, "retry_after", None))
            if retry_after is not None:
                delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
            log.warning("Replicate %s; retry %d in %.2f s", problem, attempt + 1, delay)
            self._sleep(delay)
        raise EmbedderTemporaryError(
            f"Replicate still failing after {len(BACKOFF) + 1} attempts ({problem}): try again later"
        )


def _data_uri(image: Image.Image) -> str:
    if image.mode != "RGB":
        image = image.convert("RGB")
    if min(image.size) > MAX_UPLOAD_SIDE:
        image = image.copy()
        scale = MAX_UPLOAD_SIDE / min(image.size)
        image.thumbnail((round(image.width * scale) + 1, round(image.height * scale) + 1), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
