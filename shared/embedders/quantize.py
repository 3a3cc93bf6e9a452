"""int8 copies of ONNX models (ONNX Runtime dynamic quantisation), built once and cached.

The int8 file goes beside the fp32 model when that directory is writable, otherwise into
`<model_cache_dir>/quantized/`. It is written to a temporary file and renamed into place, so two
processes quantising at once both end with a complete file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)
_lock = threading.Lock()

# Only matrix multiplications: they hold nearly all the weights and time, and quantising the patch
# convolution (ConvInteger) costs accuracy for no speed.
OP_TYPES = ["MatMul", "Gemm"]


def _cache_target(model_path: Path, cache_dir: Path) -> Path:
    stat = model_path.stat()
    digest = hashlib.sha256(f"{model_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir / "quantized" / f"{model_path.parent.name}-{digest}.int8.onnx"


def quantized_path(model_path: Path, cache_dir: Path) -> Path:
    """Path of the int8 copy of model_path, building it first if needed."""
    model_path = Path(model_path)
    beside = model_path.with_name(model_path.stem + ".int8.onnx")
    if beside.exists():
        return beside
    target = beside if os.access(model_path.parent, os.W_OK) else _cache_target(model_path, cache_dir)
    with _lock:
        if not target.exists():
            _build(model_path, target)
    return target


def _build(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("quantising %s to int8 (once; cached at %s)", source, target)
    fd, tmp_name = tempfile.mkstemp(prefix=".int8-", suffix=".onnx", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        quantize_dynamic(source, tmp, weight_type=QuantType.QInt8, op_types_to_quantize=OP_TYPES)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
