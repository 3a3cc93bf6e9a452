"""The words in a picture: PP-OCR text detection and recognition on the ONNX Runtime the embedders use.

The models are the ones `rapidocr` bundles inside its wheel (PP-OCRv6 small, det + rec), named by path,
so nothing is ever downloaded. Reading is cheap by construction, as in Immich's OCR:
- detection runs on a copy whose longest side is `detect_side` (736 by default), so a picture without
  text costs one small pass;
- recognition runs only on the lines detection found, cut from the larger image (longest side
  READ_SIDE), so small print stays legible;
- lines under `min_score` recognition confidence (Immich's 0.8) are dropped, and so are lines with fewer
  than two letters or digits: in a photo without text, detection finds edges and leaves that read as a
  lone "1", "-" or "」", sometimes with high confidence. No text is better than invented text.
The direction classifier is left out: it only turns upside-down lines; slightly rotated ones are
straightened by the detector's rotated boxes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

READ_SIDE = 2000  # longest side that lines are cut from for recognition (rapidocr's own bound)
MIN_LINE_CHARACTERS = 2  # letters or digits a line needs to be kept
DETECTION_MODEL = "PP-OCRv6_det_small.onnx"
RECOGNITION_MODEL = "PP-OCRv6_rec_small.onnx"


class OcrUnavailable(RuntimeError):
    """The OCR models cannot be loaded; the message says what to install."""


@dataclass(frozen=True)
class TextLine:
    text: str
    score: float  # recognition confidence, 0..1


def text_of(lines: list[TextLine]) -> str:
    """The text stored for a picture: its lines, top to bottom, one per line."""
    return "\n".join(line.text for line in lines)


class TextReader:
    """Reads the lines of text in a picture. Thread-safe: the models load once, on first use, under a
    lock, and several pictures may be read at once (each call runs `threads` ONNX threads)."""

    def __init__(self, *, min_score: float = 0.8, detect_side: int = 736, threads: int = 1):
        self.min_score, self.detect_side, self.threads = min_score, detect_side, threads
        self._engine: Any = None
        self._lock = threading.Lock()

    def loaded(self) -> bool:
        return self._engine is not None

    def _load(self) -> Any:
        with self._lock:
            if self._engine is None:
                self._engine = self._create()
        return self._engine

    def _create(self) -> Any:
        try:
            import rapidocr
        except ImportError as exc:
            raise OcrUnavailable(f"rapidocr is not installed ({exc}): `pip install -e .` installs it") from None
        models = Path(rapidocr.__file__).parent / "models"
        missing = [name for name in (DETECTION_MODEL, RECOGNITION_MODEL) if not (models / name).is_file()]
        if missing:
            raise OcrUnavailable(f"rapidocr's wheel lacks {', '.join(missing)} in {models}: reinstall rapidocr "
                                 "at the version pyproject.toml names")
        return rapidocr.RapidOCR(params={
            "Global.log_level": "error",  # else every picture without text logs a warning
            "Global.use_cls": False,
            "Global.max_side_len": READ_SIDE,
            "Det.model_path": str(models / DETECTION_MODEL),
            "Det.limit_type": "max",
            "Det.limit_side_len": self.detect_side,
            "Rec.model_path": str(models / RECOGNITION_MODEL),
            "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        })

    def read(self, image: Image.Image) -> list[TextLine]:
        """The lines read with at least `min_score` confidence and two letters or digits, top to bottom;
        [] for a picture without text."""
        engine = self._load()
        pixels = np.asarray(image.convert("RGB"))[:, :, ::-1]  # rapidocr takes arrays in OpenCV's BGR order
        result = engine(np.ascontiguousarray(pixels))
        texts, scores = getattr(result, "txts", None) or (), getattr(result, "scores", None) or ()
        return [TextLine(text.strip(), float(score)) for text, score in zip(texts, scores, strict=True)
                if score >= self.min_score and sum(c.isalnum() for c in text) >= MIN_LINE_CHARACTERS]
