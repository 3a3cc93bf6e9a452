"""Embedders: turn images and texts into unit-length float32 vectors in one shared space.

`load(spec)` picks the backend from the spec:
- a local directory in Immich's CLIP layout (`visual/`, `textual/`, `config.json`) -> local ONNX Runtime
- a Hugging Face repo id in that layout (default `immich-app/ViT-B-32__openai`) -> downloaded once, then local
- `replicate:owner/name[:version]` (e.g. `replicate:krthr/clip-embeddings`) -> the hosted API

`Models` is the set a deployment holds (IB_MODEL, comma-separated): each collection is served by the
model it records, so one deployment serves a collection before, during and after a model move.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.embedders.text import DEFAULT_LANGUAGE

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


class ModelNotDeployed(EmbedderError):
    """A collection records a model this deployment does not hold (e.g. right after a model move)."""

    def __init__(self, collection: str, model_id: str, held: Sequence[str]):
        self.collection, self.model_id, self.held = collection, model_id, list(held)
        super().__init__(
            f"collection {collection!r} uses model {model_id!r}, but this deployment holds only "
            f"{', '.join(repr(m) for m in held) or 'no model'}. Deploy {model_id!r} beside them "
            f"(IB_MODEL={','.join([*held, model_id])}, and an image that contains it)."
        )


class Embedder(ABC):
    """Images and texts -> float32 rows of unit length, shape (n, dim)."""

    model_id: str
    dim: int
    is_test_model: bool = False
    # The shorter side the model's input needs: big photos may be decoded at a reduced scale down to it.
    input_side: int = 224

    @abstractmethod
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def prepare_image(self, image: Image.Image) -> Any:
        """Per-image work that can run in a worker thread before the model call (here: none)."""
        return image

    def embed_prepared(self, prepared: Sequence[Any]) -> np.ndarray:
        """Vectors of images that went through `prepare_image`."""
        return self.embed_images(prepared)

    @abstractmethod
    def embed_texts(self, texts: Sequence[str], lang: str = DEFAULT_LANGUAGE) -> np.ndarray:
        """Queries -> rows. `lang` is the queries' language as an app language tag (`en`, `de`, `pt-BR`):
        only models that are told the language (Immich's NLLB models) use it; the others ignore it."""

    @abstractmethod
    def loaded(self) -> dict[str, bool]:
        """Which towers are in memory, for /api/health: {"visual": bool, "textual": bool}."""

    def embed_text(self, text: str, lang: str = DEFAULT_LANGUAGE) -> np.ndarray:
        """One query -> one (dim,) vector."""
        return self.embed_texts([text], lang=lang)[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_id={self.model_id!r}, dim={self.dim})"


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit length (a zero row stays zero rather than becoming NaN)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def load(spec: str, settings: Settings | None = None) -> Embedder:
    """A new embedder for `spec` (its towers load on first use). `Models` keeps one per spec."""
    from shared.config import get_settings

    return _create(spec.strip(), settings or get_settings())


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


class Models:
    """The models a deployment holds. The first is the default for new collections.

    `sources` are specs (as IB_MODEL takes them; a folder holding several model folders counts as
    each of them) or embedders already built. Specs are resolved on first use, not here.
    """

    def __init__(self, sources: Sequence[str | Embedder], settings: Settings | None = None):
        if not sources:
            raise EmbedderError("no model given: set IB_MODEL (see docs/models.md)")
        self.sources = [expanded for source in sources for expanded in _expand(source)]
        self.settings = settings
        self._loaded: dict[str, Embedder] = {}  # one instance per spec: towers load once per process
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Models:
        return cls([spec for spec in settings.model.split(",") if spec.strip()] or [""], settings)

    @property
    def default(self) -> Embedder:
        return self._embedder(self.sources[0])

    def _embedder(self, source: str | Embedder) -> Embedder:
        if isinstance(source, Embedder):
            return source
        with self._lock:
            if source not in self._loaded:
                self._loaded[source] = load(source, self.settings)
            return self._loaded[source]

    def ids(self) -> list[str]:
        return [source if _id_is_spec(source) else self._embedder(source).model_id for source in self.sources]

    def find(self, model_id: str) -> Embedder | None:
        """The held model with this id, or None. A hub repo id matches without loading anything."""
        for source in self.sources:
            if source == model_id or (not _id_is_spec(source) and self._embedder(source).model_id == model_id):
                return self._embedder(source)
        return None

    def get(self, model_id: str, collection: str) -> Embedder:
        """The model a collection records; ModelNotDeployed (naming both) when this deployment lacks it."""
        embedder = self.find(model_id)
        if embedder is None:
            raise ModelNotDeployed(collection, model_id, self.ids())
        return embedder


def _id_is_spec(source: str | Embedder) -> bool:
    """A Hugging Face repo id is the model id collections record; folders and Replicate specs say theirs."""
    if not isinstance(source, str) or source.startswith(REPLICATE_PREFIX):
        return False
    return not Path(source).expanduser().exists()


def _expand(source: str | Embedder) -> list[str | Embedder]:
    """A folder of model folders (each with config.json) stands for all of them, in name order."""
    if isinstance(source, Embedder):
        return [source]
    source = source.strip()
    folder = Path(source).expanduser()
    if folder.is_dir() and not (folder / "config.json").exists():
        models = sorted(str(child) for child in folder.iterdir() if (child / "config.json").is_file())
        return list(models) or [source]
    return [source]


__all__ = [
    "Embedder",
    "EmbedderError",
    "EmbedderTemporaryError",
    "ModelNotDeployed",
    "ModelUnavailable",
    "Models",
    "load",
    "normalize_rows",
]
