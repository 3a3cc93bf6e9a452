"""Photo metadata from EXIF (shared/ingest/exif.py) on files written by PIL: dates with and without an offset,
camera names as phones and cameras write them, GPS in the four hemispheres, orientation, the formats
that carry EXIF (JPEG, HEIC, AVIF, PNG, WebP), and broken or missing EXIF, which never fails an image."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from PIL import ExifTags, Image, TiffImagePlugin

from shared.images import decode
from shared.ingest.exif import PhotoMetadata, camera, read_metadata
from tests.fixtures.model import synthetic_photo
from tests.fixtures.photos import encode, exif_block, with_app1

PHOTO = synthetic_photo(96, 64, seed=3)
LIMITS = {"max_pixels": 10**8, "max_bytes": 10**9}


def test_taken_at_keeps_the_recorded_offset_and_sub_seconds() -> None:
    exif = exif_block(taken="2023:07:14 15:30:05", offset="+02:00")
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.SubsecTimeOriginal] = "25"
    meta = read_metadata(encode(PHOTO, "JPEG", exif))
    assert meta.taken_at == datetime(2023, 7, 14, 15, 30, 5, 250000, tzinfo=timezone(timedelta(hours=2)))
    assert meta.taken_at.isoformat() == "2023-07-14T15:30:05.250000+02:00"
    columns = meta.columns()  # stored as the instant, with the offset beside it
    assert columns["taken_at"] == datetime(2023, 7, 14, 13, 30, 5, 250000, tzinfo=UTC)
    assert columns["taken_offset"] == 120


def test_a_negative_offset_and_a_missing_one() -> None:
    west = read_metadata(encode(PHOTO, "JPEG", exif_block(taken="2021:12:31 23:59:59", offset="-05:30")))
    assert west.taken_at is not None and west.taken_at.utcoffset() == -timedelta(hours=5, minutes=30)
    plain = read_metadata(encode(PHOTO, "JPEG", exif_block(taken="2021:12:31 23:59:59")))
    assert plain.taken_at == datetime(2021, 12, 31, 23, 59, 59) and plain.taken_at.tzinfo is None
    assert plain.columns()["taken_offset"] is None
    assert plain.columns()["taken_at"] == datetime(2021, 12, 31, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(("make", "model", "expected"), [
    ("Apple", "iPhone 12", "Apple iPhone 12"),
    ("Apple", "Apple iPhone 12", "Apple iPhone 12"),  # brands that repeat themselves in Model
    ("samsung", "SM-G991B", "samsung SM-G991B"),
    ("NIKON CORPORATION", "NIKON D750", "NIKON D750"),
    ("OLYMPUS IMAGING CORP.", "E-M10", "OLYMPUS E-M10"),
    ("Canon", "Canon EOS 5D Mark IV", "Canon EOS 5D Mark IV"),
    ("Google", "Pixel 7\x00\x00", "Google Pixel 7"),  # NUL padding, as some firmware writes
    ("Fujifilm", None, "Fujifilm"),
    (None, "DSC-RX100", "DSC-RX100"),
    ("  ", "", None),
])
def test_camera_names(make: str | None, model: str | None, expected: str | None) -> None:
    assert camera(make, model) == expected
    meta = read_metadata(encode(PHOTO, "JPEG", exif_block(make=make, model=model)))
    assert meta.camera == expected


@pytest.mark.parametrize(("place", "latitude", "longitude"), [
    ("Eiffel Tower (north, east)", 48.858370, 2.294481),
    ("Statue of Liberty (north, west)", 40.689247, -74.044502),
    ("Sydney Opera House (south, east)", -33.856784, 151.215297),
    ("Christ the Redeemer (south, west)", -22.951916, -43.210487),
])
def test_gps_in_the_four_hemispheres(place: str, latitude: float, longitude: float) -> None:
    meta = read_metadata(encode(PHOTO, "JPEG", exif_block(gps=(latitude, longitude))))
    assert meta.latitude == pytest.approx(latitude, abs=1e-5), place
    assert meta.longitude == pytest.approx(longitude, abs=1e-5), place


def test_gps_without_a_fix_and_with_broken_rationals_is_no_place() -> None:
    assert read_metadata(encode(PHOTO, "JPEG", exif_block(gps=(0.0, 0.0)))).latitude is None
    exif = exif_block()
    place = exif.get_ifd(ExifTags.IFD.GPSInfo)
    place[ExifTags.GPS.GPSLatitudeRef], place[ExifTags.GPS.GPSLongitudeRef] = "N", "E"
    zero = TiffImagePlugin.IFDRational(1, 0)  # a zero denominator
    place[ExifTags.GPS.GPSLatitude], place[ExifTags.GPS.GPSLongitude] = (zero, zero, zero), (1.0, 2.0, 3.0)
    meta = read_metadata(encode(PHOTO, "JPEG", exif))
    assert (meta.latitude, meta.longitude) == (None, None)


@pytest.mark.parametrize(("orientation", "size"), [(1, (96, 64)), (3, (96, 64)), (6, (64, 96)), (8, (64, 96))])
def test_size_is_as_displayed(orientation: int, size: tuple[int, int]) -> None:
    data = encode(PHOTO, "JPEG", exif_block(orientation=orientation))
    meta = read_metadata(data)
    assert (meta.width, meta.height) == size == decode(data, **LIMITS).size


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF", "PNG", "WEBP", "JPEG"])
def test_every_format_that_carries_exif(fmt: str) -> None:
    exif = exif_block(taken="2019:05:01 08:00:00", offset="+09:00", make="Apple", model="iPhone 12",
                      gps=(35.658581, 139.745433), orientation=6, description="Tokyo Tower")
    data = encode(PHOTO, fmt, exif)
    meta = read_metadata(data)
    assert meta.taken_at == datetime(2019, 5, 1, 8, 0, tzinfo=timezone(timedelta(hours=9)))
    assert meta.camera == "Apple iPhone 12"
    assert (meta.latitude, meta.longitude) == (pytest.approx(35.658581, abs=1e-5), pytest.approx(139.745433, abs=1e-5))
    # Portrait as displayed: HEIF applies the rotation in the file itself, the others through the tag.
    assert (meta.width, meta.height) == decode(data, **LIMITS).size == (64, 96)
    assert meta.exif_words == "apple iphone 12 tokyo tower"


def test_description_words_are_folded_and_camera_placeholders_dropped() -> None:
    meta = read_metadata(encode(PHOTO, "JPEG", exif_block(make="OLYMPUS", model="E-M10",
                                                          description="OLYMPUS DIGITAL CAMERA")))
    assert meta.description is None and meta.exif_words == "olympus e-m10"
    exif = exif_block()
    exif[ExifTags.Base.ImageDescription] = "Große Mauer".encode()  # UTF-8, as most phones write it
    exif[ExifTags.Base.XPComment] = "Café del Mar".encode("utf-16-le")
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = b"ASCII\x00\x00\x00sunset"
    assert read_metadata(encode(PHOTO, "JPEG", exif)).exif_words == "grosse mauer cafe del mar sunset"


BROKEN_EXIF = {
    "truncated TIFF header": b"Exif\x00\x00MM\x00",
    "IFD offset past the end": b"Exif\x00\x00MM\x00*\x7f\xff\xff\xff",
    "IFD with a huge entry count": b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff" + b"\x00" * 24,
    "garbage": b"Exif\x00\x00" + bytes(range(256)) * 4,
}


@pytest.mark.parametrize("damage", list(BROKEN_EXIF))
def test_broken_exif_gives_nulls_and_the_image_still_decodes(damage: str) -> None:
    data = with_app1(encode(PHOTO, "JPEG"), BROKEN_EXIF[damage])
    meta = read_metadata(data)
    assert (meta.taken_at, meta.camera, meta.latitude, meta.longitude) == (None, None, None, None)
    assert decode(data, **LIMITS).size == (96, 64)


def test_fields_of_the_wrong_kind_are_skipped_one_by_one() -> None:
    exif = exif_block(taken="0000:00:00 00:00:00", offset="+99:00", make="Sony", model="ILCE-7M3")
    exif[ExifTags.Base.Orientation] = 42
    meta = read_metadata(encode(PHOTO, "JPEG", exif))
    assert meta.taken_at is None and meta.camera == "Sony ILCE-7M3" and (meta.width, meta.height) == (96, 64)
    bad_offset = read_metadata(encode(PHOTO, "JPEG", exif_block(taken="2020:02:29 12:00:00", offset="+99:00")))
    assert bad_offset.taken_at == datetime(2020, 2, 29, 12, 0)  # the date stands, the impossible offset does not


def test_no_exif_at_all_and_no_image_at_all() -> None:
    assert read_metadata(encode(PHOTO, "PNG")) == PhotoMetadata(width=96, height=64)
    assert read_metadata(b"not an image") == PhotoMetadata()
    assert read_metadata(encode(Image.new("RGB", (8, 8)), "GIF")).exif_words is None
