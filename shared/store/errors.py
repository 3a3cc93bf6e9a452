"""What the store refuses or cannot do; each message says why and what to do."""

from __future__ import annotations


class CatalogError(ValueError):
    """A request the catalog refuses; the message says why and what to do."""


class UnknownCollection(CatalogError):
    pass


class ModelMismatch(CatalogError):
    def __init__(self, collection: str, stored_model: str, stored_dim: int, model: str, dim: int):
        self.collection, self.stored_model, self.model = collection, stored_model, model
        super().__init__(
            f"collection {collection!r} holds embeddings of model {stored_model!r} ({stored_dim}-d), "
            f"but this server uses {model!r} ({dim}-d). Set IB_MODEL={stored_model} to query it, or "
            f"move it with `image-browser reembed --collection {collection} --model {model}`."
        )


class ModelChanged(RuntimeError):
    """The collection switched models while a vector of the old one was on its way: retry with the new one."""

    def __init__(self, collection: str, model_id: str):
        super().__init__(f"collection {collection!r} moved off model {model_id!r} during this request; retry")
