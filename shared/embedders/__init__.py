"""Embedders: turn images and texts into unit-length float32 vectors in one shared space.

`load(spec)` picks the backend from the spec:
- a local directory in Immich's CLIP layout (`visual/`, `textual/`, `config.json`) -> local ONNX Runtime
- a Hugging Face repo id in that layout (default `immich-app/ViT-B-32__openai`) -> downloaded once, then local
- `replicate:owner/name[:version]` (e.g. `replicate:krthr/clip-embeddings`) -> the hosted API

One process holds one instance per (spec, quantised, threads): loading is not repeated per request.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from shared.config import Settings

REPLICATE_PREFIX = "replicate:"


class EmbedderError(RuntimeError):
    """A permanent problem (bad model directory, missing token): retrying will not help."""


class ModelUnavailable(EmbedderError):
    """The model cannot be found or downloaded; the message says how to use a local directory instead."""


class EmbedderTemporaryError(RuntimeError):
    """A transient failure (rate limit, 5xx) that outlasted our retries: the caller should retry later."""


class Embedder(ABC):
    """Images and texts -> float32 rows of unit length, shape (n, dim)."""

    model_id: str
    dim: int
    is_test_model: bool = False
    # The shorter side the model's input needs: big photos may be decoded at a reduced scale down to it.
    input_side: int = 224

    @abstractmethod
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    @abstractmethod
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    @abstractmethod
    def loaded(self) -> dict[str, bool]:
        """Which towers are in memory, for /api/health: {"visual": bool, "textual": bool}."""

    def embed_text(self, text: str) -> np.ndarray:
        """One query -> one (dim,) vector."""
        return self.embed_texts([text])[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, dim={self.dim})"


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit length (a zero row stays zero rather than becoming NaN)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


_cache: dict[tuple[str, bool, int], Embedder] = {}
_cache_lock = threading.Lock()


def load(spec: str, settings: Settings | None = None) -> Embedder:
    """The embedder for `spec`, created once per process (per spec, quantisation and thread count)."""
    from shared.config import get_settings

    settings = settings or get_settings()
    spec = spec.strip()
    key = (spec, settings.model_quantized, settings.model_threads, settings.embed_parallel)
    with _cache_lock:
        embedder = _cache.get(key)
        if embedder is None:
            embedder = _create(spec, settings)
            _cache[key] = embedder
        return embedder


def _create(spec: str, settings: Settings) -> Embedder:
    if not spec:
        raise EmbedderError(
            "no model given: set IB_MODEL to a local directory, a Hugging Face repo id "
            "such as immich-app/ViT-B-32__openai, or replicate:krthr/clip-embeddings"
        )
    if spec.startswith(REPLICATE_PREFIX):
        from shared.embedders.replicate import ReplicateEmbedder

        return ReplicateEmbedder(spec[len(REPLICATE_PREFIX) :], settings)
    from shared.embedders.onnx_clip import OnnxClipEmbedder

    return OnnxClipEmbedder.from_spec(spec, settings)


def clear_cache() -> None:
    """Forget loaded embedders (tests)."""
    with _cache_lock:
        _cache.clear()


__all__ = [
    "Embedder",
    "EmbedderError",
    "EmbedderTemporaryError",
    "ModelUnavailable",
    "clear_cache",
    "load",
    "normalize_rows",
]
