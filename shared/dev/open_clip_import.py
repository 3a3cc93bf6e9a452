"""Import open_clip (and transformers' image processors) on this machine's CPU-only torch.

Dev and tests only, never the runtime.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def allow_torchvision_import() -> None:
    """Let `import torchvision` succeed although its C extension cannot load. Call before importing
    open_clip or transformers' image processors (transformers imports torchvision when installed).

    PyPI's torchvision==0.28.0, the release matching torch 2.13.0, ships a C extension linked against
    CUDA libraries; without them its ops are not registered and `import torchvision` fails in
    torchvision/_meta_registrations.py with "operator torchvision::nms does not exist". That module only
    registers fake-tensor kernels for those C ops (nms, roi_align, ...), which neither open_clip nor
    transformers uses, so an empty stand-in lets the import through; transforms work unchanged.
    """
    if "torchvision" not in sys.modules:
        stub = types.ModuleType("torchvision._meta_registrations")
        sys.modules.setdefault(stub.__name__, stub)


def import_open_clip() -> Any:
    """The open_clip module (it imports torchvision for its image transforms)."""
    allow_torchvision_import()
    import open_clip

    return open_clip
