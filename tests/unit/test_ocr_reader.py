"""The OCR reader on the real PP-OCR models that ship in the rapidocr wheel: signs, receipts, photos without text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from PIL import Image

from shared.ocr.reader import TextLine, TextReader
from tests.fixtures.model import synthetic_photo
from tests.fixtures.text_images import SCENE, SCENES, Scene, render

# Photo-like pictures in which an earlier detector found fragments of text.
FRAGMENT_PHOTOS = [(seed, [(1024, 768), (768, 1024), (1600, 1200), (640, 480)][seed % 4])
                   for seed in (9, 30, 37, 45, 54, 109, 121, 166, 191, 194)]


@pytest.mark.parametrize("scene", SCENES, ids=[scene.name for scene in SCENES])
def test_reads_signs_receipts_and_screenshots_word_for_word(reader: TextReader, scene: Scene) -> None:
    """Varied fonts (sans, serif, italic, mono), sizes, colours, slight rotations, one to three lines."""
    lines = reader.read(render(scene))
    assert [line.text for line in lines] == list(scene.lines)  # top to bottom, as written
    assert all(line.score >= reader.min_score for line in lines)


def test_photos_without_text_get_no_text(reader: TextReader) -> None:
    pictures = [synthetic_photo(width, height, seed=seed) for seed, (width, height) in FRAGMENT_PHOTOS]
    pictures += [Image.new("RGB", (800, 600), (90, 140, 200)),
                 Image.fromarray(np.random.default_rng(1).integers(0, 256, (600, 800, 3), dtype=np.uint8))]
    assert [reader.read(picture) for picture in pictures] == [[] for _ in pictures]


def test_lines_need_the_confidence_floor_and_two_letters_or_digits() -> None:
    @dataclass
    class Output:  # rapidocr's answer: texts and recognition scores
        txts: tuple[str, ...]
        scores: tuple[float, ...]

    reader = TextReader(min_score=0.8)
    reader._engine = lambda pixels: Output(("Total 7.85", "Harbour", "-0", "」", " ab ", "8"),
                                           (0.95, 0.79, 0.99, 0.9, 0.8, 0.98))
    assert reader.read(Image.new("RGB", (64, 64))) == [TextLine("Total 7.85", 0.95), TextLine("ab", 0.8)]
    reader._engine = lambda pixels: Output((), ())  # rapidocr's empty answer for a picture without text
    assert reader.read(Image.new("RGB", (64, 64))) == []


def test_models_come_from_the_wheel_and_nothing_is_downloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    import requests
    from rapidocr.utils.download_file import DownloadFile

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("rapidocr tried to download a file")

    monkeypatch.setattr(DownloadFile, "run", classmethod(refuse))
    monkeypatch.setattr(requests.Session, "request", refuse)
    fresh = TextReader()
    assert not fresh.loaded()
    assert [line.text for line in fresh.read(render(SCENE["street-sign"]))] == ["Harbour Street"]
    assert fresh.loaded()
