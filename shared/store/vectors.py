"""Vector values between numpy and pgvector's columns.

pgvector-python's types are registered on every pooled connection (`db.register_vectors`): a halfvec
(or vector) a statement returns arrives as a `pgvector.HalfVector` (`Vector`), and `as_array` makes it the
float32 array the rest of the code uses (measured faster than splitting `embedding::text` with numpy).
Vectors going in are sent as text made by hand (`vector_literal`): pgvector's `HalfVector(array)` text takes
twice as long to make and is 1.7 times longer, for the same stored value (BENCHMARKS.md, "Vector values";
`bench/bench_vectors.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pgvector import HalfVector, Vector

from shared.store.errors import CatalogError


def vector_literal(vector: Sequence[float] | np.ndarray) -> str:
    """pgvector text form; 6 significant digits is past halfvec's precision."""
    values = np.asarray(vector, dtype=np.float32).ravel()
    if not np.all(np.isfinite(values)):
        raise CatalogError("embedding contains NaN or infinity")
    return "[" + ",".join(f"{value:.6g}" for value in values.tolist()) + "]"


def as_array(value: HalfVector | Vector) -> np.ndarray:
    """A stored vector as float32 (halfvec's float16 values widened exactly)."""
    return value.to_numpy().astype(np.float32)
