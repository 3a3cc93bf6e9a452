"""shared.images: every supported format from real encoded files, orientation, modes, limits, failures."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from shared.images import (
    IMAGE_EXTENSIONS,
    ImageError,
    content_type_for,
    decode,
    is_image_key,
    thumbnail,
)

LIMITS = {"max_pixels": 50_000_000, "max_bytes": 20_000_000}
GREEN = (10, 200, 30)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def close(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF"])
def test_each_format_decodes_to_rgb(fmt: str) -> None:
    original = Image.new("RGB", (120, 80), GREEN)
    image = decode(encode(original, fmt), **LIMITS)
    assert image.mode == "RGB"
    assert image.size == (120, 80)
    assert close(image.getpixel((60, 40)), GREEN)


def test_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert close(decode(data, **LIMITS).getpixel((16, 16)), (255, 0, 0))


@pytest.mark.parametrize("orientation, expected_size", [(1, (40, 20)), (3, (40, 20)), (6, (20, 40)), (8, (20, 40))])
def test_exif_orientation_is_applied(orientation: int, expected_size: tuple[int, int]) -> None:
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = decode(encode(stored, "JPEG", exif=exif.tobytes(), quality=95), **LIMITS)
    assert image.size == expected_size
    # Where the stored left (red) half ends up once the camera's rotation is undone.
    red_at = {1: (5, 10), 3: (35, 10), 6: (10, 5), 8: (10, 35)}[orientation]
    assert close(image.getpixel(red_at), (255, 0, 0), 40)


def test_transparency_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    image = decode(encode(rgba, "PNG"), **LIMITS)
    assert image.getpixel((5, 5)) == (255, 255, 255)
    assert image.getpixel((0, 0)) == (0, 0, 255)


def test_palette_with_transparency() -> None:
    palette = Image.new("P", (10, 10), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    image = decode(encode(palette, "PNG", transparency=0), **LIMITS)
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((5, 5)) == (255, 0, 0)


def test_la_grey_with_alpha() -> None:
    image = decode(encode(Image.new("LA", (8, 8), (0, 0)), "PNG"), **LIMITS)
    assert image.getpixel((1, 1)) == (255, 255, 255)


def test_cmyk_jpeg() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    image = decode(encode(cmyk, "JPEG", quality=95), **LIMITS)
    assert image.mode == "RGB"
    assert close(image.getpixel((8, 8)), (255, 0, 0), 20)


def test_16_bit_grey_keeps_its_range() -> None:
    ramp = np.linspace(0, 65535, 64 * 16, dtype=np.float64).reshape(16, 64).astype(np.uint16)
    image = decode(encode(Image.fromarray(ramp), "PNG"), **LIMITS)
    assert image.getpixel((0, 0)) == (0, 0, 0)
    assert image.getpixel((63, 15)) == (255, 255, 255)
    middle = image.getpixel((32, 8))[0]
    assert 100 < middle < 160  # scaled, not clipped to white


def test_16_bit_tiff() -> None:
    data = np.full((8, 8), 32896, dtype=np.uint16)  # 0x8080 -> 128 in 8 bits
    image = decode(encode(Image.fromarray(data), "TIFF"), **LIMITS)
    assert close(image.getpixel((4, 4)), (128, 128, 128), 1)


def test_one_bit_and_grey() -> None:
    assert decode(encode(Image.new("1", (8, 8), 1), "PNG"), **LIMITS).getpixel((0, 0)) == (255, 255, 255)
    assert decode(encode(Image.new("L", (8, 8), 77), "BMP"), **LIMITS).getpixel((0, 0)) == (77, 77, 77)


def test_zero_bytes() -> None:
    with pytest.raises(ImageError) as info:
        decode(b"", **LIMITS)
    assert info.value.reason == "empty"


def test_not_an_image() -> None:
    with pytest.raises(ImageError) as info:
        decode(b"%PDF-1.7 this is a document", **LIMITS)
    assert info.value.reason == "not_image"
    assert "supported" in str(info.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_file_is_corrupt(fmt: str) -> None:
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), fmt)
    for cut in (len(data) // 2, 40):
        with pytest.raises(ImageError) as info:
            decode(data[:cut], **LIMITS)
        assert info.value.reason == "corrupt", (cut, str(info.value))


def test_garbage_after_a_valid_header_is_corrupt() -> None:
    data = bytearray(encode(Image.new("RGB", (64, 64), GREEN), "PNG"))
    data[60:-20] = bytes(len(data) - 80)  # zero the compressed pixels, keep the header
    with pytest.raises(ImageError) as info:
        decode(bytes(data), **LIMITS)
    assert info.value.reason == "corrupt"


def test_unsupported_format_is_named() -> None:
    with pytest.raises(ImageError) as info:
        decode(encode(Image.new("RGB", (16, 16)), "ICO"), **LIMITS)
    assert info.value.reason == "unsupported"
    assert "ICO" in str(info.value)


def test_byte_limit() -> None:
    data = encode(Image.new("RGB", (64, 64)), "BMP")
    with pytest.raises(ImageError) as info:
        decode(data, max_pixels=10**6, max_bytes=len(data) - 1)
    assert info.value.reason == "too_large"
    assert "IB_MAX_IMAGE_BYTES" in str(info.value)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height: decoding it would need the claimed memory."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [5_000, 40_000])  # under and over Pillow's own bomb limit
def test_pixel_limit_is_checked_before_decoding(side: int) -> None:
    # The pixel data is missing: had we decoded, the error would be "corrupt", not the limit.
    with pytest.raises(ImageError) as info:
        decode(png_declaring(side, side), max_pixels=20_000_000, max_bytes=10**6)
    assert info.value.reason == "too_many_pixels"


def test_draft_decoding_keeps_the_requested_side() -> None:
    big = Image.new("RGB", (2000, 1500), GREEN)
    image = decode(encode(big, "JPEG"), **LIMITS, min_side=224)
    assert 224 <= min(image.size) < 1500
    assert abs(image.size[0] / image.size[1] - 2000 / 1500) < 0.01


def test_thumbnail_is_webp_within_size() -> None:
    thumb = Image.open(io.BytesIO(thumbnail(Image.new("RGB", (1000, 400), GREEN), 384)))
    assert thumb.format == "WEBP"
    assert thumb.size == (384, 154)
    small = Image.open(io.BytesIO(thumbnail(Image.new("RGB", (100, 50)), 384)))
    assert small.size == (100, 50)  # never enlarged


def test_keys_and_content_types() -> None:
    assert {".jpg", ".heic", ".avif", ".tiff"} <= IMAGE_EXTENSIONS
    assert is_image_key("a/b/Photo.JPG")
    assert is_image_key("x.heif")
    assert not is_image_key("notes.txt")
    assert is_image_key("upload-123", "image/png; charset=binary")
    assert not is_image_key("drawing", "image/svg+xml")
    assert not is_image_key("folder/", "image/png")
    assert content_type_for("a.JPEG") == "image/jpeg"
    assert content_type_for("a.avif") == "image/avif"
    assert content_type_for("a.txt") is None


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF", "HEIF", "AVIF"])
def test_exif_orientation_in_other_formats_is_applied_once(fmt: str) -> None:
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    image = decode(encode(stored, fmt, exif=exif.tobytes(), quality=95), **LIMITS)
    assert image.size == (20, 40)
    assert close(image.getpixel((10, 5)), (255, 0, 0))  # rotated once, not twice
    assert close(image.getpixel((10, 35)), (0, 0, 255))
