"""Photo metadata from an image's EXIF: when (`taken_at`), with what (`camera`), where (`latitude`,
`longitude`), and the size as displayed (orientation applied).

Read from the header only (no pixels decoded), for every format Pillow and pillow-heif read EXIF from:
JPEG, PNG (eXIf), WebP, TIFF, HEIC and AVIF. EXIF is written by thousands of devices and apps, often
wrongly, so nothing here raises: a field that cannot be read is None, and an image without EXIF gets
all None (and its pixel size).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from PIL import ExifTags, Image

from shared.images import FORMATS
from shared.search.keywords import fold

log = logging.getLogger(__name__)

ORIENTATION = ExifTags.Base.Orientation
SWAPS_SIDES = frozenset({5, 6, 7, 8})  # orientations that turn the picture by 90 degrees
# (date/time, sub-second, offset) tags, best first: when the shutter fired, else when it was digitised.
WHEN_TAGS = (
    (ExifTags.Base.DateTimeOriginal, ExifTags.Base.SubsecTimeOriginal, ExifTags.Base.OffsetTimeOriginal),
    (ExifTags.Base.DateTimeDigitized, ExifTags.Base.SubsecTimeDigitized, ExifTags.Base.OffsetTimeDigitized),
)
DESCRIPTION_TAGS = (ExifTags.Base.ImageDescription, ExifTags.Base.XPTitle, ExifTags.Base.XPSubject,
                    ExifTags.Base.XPComment, ExifTags.Base.XPKeywords)
# Descriptions cameras write by themselves: they say nothing about the picture.
PLACEHOLDER_DESCRIPTIONS = frozenset({"", "olympus digital camera", "sony dsc", "digital camera", "dcim",
                                      "default", "exif_jpeg_picture", "image", "picasa", "camera"})
# Company words in Make that phones and cameras add to the brand ("NIKON CORPORATION", "OLYMPUS IMAGING CORP.").
MAKE_NOISE = re.compile(r"[\s,]+(corporation|corp\.?|co\.?,?\s*ltd\.?|company|imaging|optical|inc\.?)\b.*$",
                        re.IGNORECASE)
OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


@dataclass(frozen=True)
class PhotoMetadata:
    """What an image's header says about it; None where it says nothing (or nothing readable)."""

    width: int | None = None  # as displayed: EXIF orientation applied
    height: int | None = None
    taken_at: datetime | None = None  # aware when the photo recorded its UTC offset, else naive (camera clock)
    camera: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    description: str | None = None

    @property
    def exif_words(self) -> str | None:
        """The keyword index's EXIF source: camera and description, folded (shared.search.keywords)."""
        text = " ".join(part for part in (self.camera, self.description) if part)
        return fold(text) if text else None

    def columns(self) -> dict[str, Any]:
        """The collection table's columns for these facts (shared/store/tables.py ADDED_COLUMNS)."""
        taken_at, offset = self.taken_at, None
        if taken_at is not None:
            if taken_at.tzinfo is None:
                taken_at = taken_at.replace(tzinfo=UTC)  # no recorded offset: stored as if UTC
            else:
                offset = int((taken_at.utcoffset() or timedelta()).total_seconds() // 60)
        return {"taken_at": taken_at, "taken_offset": offset, "camera": self.camera, "latitude": self.latitude,
                "longitude": self.longitude, "exif_words": self.exif_words}


def read_metadata(data: bytes) -> PhotoMetadata:
    """The photo's metadata from its bytes; never raises (an unreadable header gives all None)."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as header:
            width, height = header.size
            exif = header.getexif()
    except Exception:  # not an image, or a header Pillow refuses: the decoder reports that, not us
        return PhotoMetadata()
    orientation = _safe(lambda: exif.get(ORIENTATION))
    if orientation in SWAPS_SIDES:
        width, height = height, width
    details = _safe(lambda: exif.get_ifd(ExifTags.IFD.Exif)) or {}
    gps = _safe(lambda: exif.get_ifd(ExifTags.IFD.GPSInfo)) or {}
    latitude, longitude = _safe(lambda: location(gps)) or (None, None)
    return PhotoMetadata(
        width=width, height=height,
        taken_at=_safe(lambda: taken_at(details)),
        camera=_safe(lambda: camera(exif.get(ExifTags.Base.Make), exif.get(ExifTags.Base.Model))),
        latitude=latitude, longitude=longitude,
        description=_safe(lambda: description(exif, details)),
    )


def _safe(read: Any) -> Any:
    """One field's reader; a broken field is None and the other fields are still read."""
    try:
        return read()
    except Exception as exc:  # EXIF from the wild: wrong types, truncated IFDs, bad rationals, ...
        log.debug("unreadable EXIF field: %s", exc)
        return None


def text(value: Any) -> str | None:
    """An EXIF string: bytes decoded, NULs and padding stripped; None when empty."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    elif isinstance(value, str):
        with contextlib.suppress(UnicodeError):  # Pillow reads EXIF ASCII as Latin-1; phones write UTF-8
            value = value.encode("latin-1").decode("utf-8")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", " ").strip()
    return value or None


def camera(make: Any, model: Any) -> str | None:
    """"Make Model" as people say it: "Apple iPhone 12", "NIKON D750" (not "NIKON CORPORATION NIKON D750")."""
    make_text, model_text = text(make), text(model)
    if make_text:
        make_text = MAKE_NOISE.sub("", make_text).strip() or make_text
    if not model_text:
        return make_text
    if not make_text or model_text.casefold().split()[0] == make_text.casefold().split()[0]:
        return model_text  # phones and many cameras repeat the brand in Model
    return f"{make_text} {model_text}"


def taken_at(details: dict[int, Any]) -> datetime | None:
    """DateTimeOriginal (else DateTimeDigitized) with its sub-seconds and offset; naive without an offset."""
    for when_tag, subsec_tag, offset_tag in WHEN_TAGS:
        when = _parse_when(text(details.get(when_tag)))
        if when is None:
            continue
        subsec = text(details.get(subsec_tag))
        if subsec and subsec.isdigit():
            when = when.replace(microsecond=int(subsec[:6].ljust(6, "0")))
        offset = _parse_offset(text(details.get(offset_tag)) or text(details.get(ExifTags.Base.OffsetTime)))
        return when.replace(tzinfo=offset) if offset is not None else when
    return None


def _parse_when(value: str | None) -> datetime | None:
    """EXIF's "YYYY:MM:DD HH:MM:SS" (some writers use dashes or a T); None for blanks like "0000:00:00"."""
    if not value or len(value) < 19:
        return None
    try:
        when = datetime.strptime(value[:10].replace("-", ":") + " " + value[11:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    return when if when.year >= 1800 else None


def _parse_offset(value: str | None) -> timezone | None:
    match = OFFSET.match(value or "")
    if not match:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14):
        return None
    return timezone(-delta if sign == "-" else delta)


def location(gps: dict[int, Any]) -> tuple[float, float] | None:
    """(latitude, longitude) in signed degrees: south and west are negative. None when missing or
    impossible, and for (0, 0), which devices write when they had no fix."""
    latitude = _degrees(gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef), "S")
    longitude = _degrees(gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef), "W")
    if latitude is None or longitude is None or not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    if latitude == 0 and longitude == 0:
        return None
    return round(latitude, 7), round(longitude, 7)


def _degrees(value: Any, ref: Any, negative_ref: str) -> float | None:
    """(degrees, minutes, seconds) rationals -> degrees; the reference letter gives the sign."""
    if value is None:
        return None
    parts = [float(part) for part in (value if isinstance(value, tuple | list) else (value,))][:3]
    if not parts or not all(math.isfinite(part) for part in parts):
        return None  # a zero denominator reads as NaN
    degrees = sum(abs(part) / 60**index for index, part in enumerate(parts))
    ref_text = (text(ref) or "").upper()[:1]
    negative = ref_text == negative_ref or (not ref_text and parts[0] < 0)
    return -degrees if negative else degrees


def description(ifd0: Any, details: dict[int, Any]) -> str | None:
    """The picture's own words: ImageDescription, Windows' title/subject/comment/keywords, UserComment."""
    found: list[str] = []
    for tag in DESCRIPTION_TAGS:
        value = ifd0.get(tag)
        if tag != ExifTags.Base.ImageDescription and isinstance(value, tuple | list):
            value = bytes(value)
        if isinstance(value, bytes) and tag != ExifTags.Base.ImageDescription:
            value = value.decode("utf-16-le", errors="replace")  # XP* tags are UTF-16LE
        found.append(text(value) or "")
    found.append(_user_comment(details.get(ExifTags.Base.UserComment)) or "")
    words = [part for part in dict.fromkeys(found) if part.casefold() not in PLACEHOLDER_DESCRIPTIONS]
    return " ".join(words)[:2000] or None


def _user_comment(value: Any) -> str | None:
    """UserComment starts with 8 bytes naming its character code (ASCII, UNICODE, JIS or undefined)."""
    if isinstance(value, str):
        return text(value)
    if not isinstance(value, bytes) or len(value) <= 8:
        return None
    code, body = value[:8], value[8:]
    if code.startswith(b"UNICODE"):
        encoding = "utf-16-be" if body[:1] == b"\x00" else "utf-16-le"
        return text(body.decode(encoding, errors="replace"))
    return text(body.decode("utf-8" if code.startswith((b"ASCII", b"\x00")) else "latin-1", errors="replace"))
