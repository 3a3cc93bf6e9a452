"""Image bytes -> an RGB PIL image ready for embedding, and WebP thumbnails for the gallery.

Formats: JPEG (incl. MPO from cameras), PNG, GIF (first frame), WebP, BMP, TIFF, HEIC/HEIF, AVIF.
Every failure is an `ImageError` with a short machine `reason` and a human message; nothing else escapes.
"""

from __future__ import annotations

import io
import math
from pathlib import PurePosixPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:  # HEIC/HEIF (iPhone photos); AVIF is built into Pillow >= 11.3
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - optional at runtime, a dependency in pyproject
    pass

CONTENT_TYPES: dict[str, str] = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".avif": "image/avif",
}
IMAGE_EXTENSIONS: frozenset[str] = frozenset(CONTENT_TYPES)
# Decoders we let loose on untrusted bytes (JPEG covers MPO); others are rare and less hardened.
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF")
# Content types that say image/* but are not raster images we can decode.
NOT_RASTER = frozenset({"image/svg+xml"})


class ImageError(ValueError):
    """An object that cannot be used as an image. `reason` is one of: corrupt, not_image, too_large,
    too_many_pixels, empty, unsupported."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def content_type_for(key: str) -> str | None:
    return CONTENT_TYPES.get(PurePosixPath(key).suffix.lower())


def is_image_key(key: str, content_type: str | None = None) -> bool:
    """Whether an object looks like an image: by extension, else by an image/* content type."""
    if not key or key.endswith("/"):
        return False
    if content_type_for(key) is not None:
        return True
    if content_type:
        media = content_type.split(";", 1)[0].strip().lower()
        return media.startswith("image/") and media not in NOT_RASTER
    return False


def decode(
    data: bytes, *, max_pixels: int, max_bytes: int, min_side: int | None = None, min_long_side: int | None = None
) -> Image.Image:
    """Bytes -> loaded RGB image, EXIF-oriented, transparency composited on white.

    Limits are checked before any pixel is decoded: `max_bytes` on the input, `max_pixels` on the size
    the header declares (decompression-bomb guard). `min_side` (and `min_long_side`), if given, let JPEGs
    decode at a reduced scale (DCT scaling, much faster for big photos) while keeping the shorter side
    >= min_side and the longer side >= min_long_side: what the model and the thumbnail need.
    """
    if not data:
        raise ImageError("empty", "the object is empty (0 bytes): re-upload the file")
    if len(data) > max_bytes:
        raise ImageError(
            "too_large",
            f"the object is {len(data):,} bytes, over the limit of {max_bytes:,} "
            "(IB_MAX_IMAGE_BYTES): shrink the file or raise the limit",
        )
    image = _open(data)
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError("corrupt", f"the {image.format} header declares an empty {width}x{height} image")
    if width * height > max_pixels:
        raise ImageError(
            "too_many_pixels",
            f"the image is {width}x{height} = {width * height:,} pixels, over "
            f"the limit of {max_pixels:,} (IB_MAX_IMAGE_PIXELS): downscale it "
            "or raise the limit",
        )
    try:
        if min_side and image.format in ("JPEG", "MPO"):
            scale = max(min_side / min(width, height), (min_long_side or 0) / max(width, height))
            if scale <= 0.5:  # draft only reduces by 1/2, 1/4 or 1/8
                image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        image.seek(0)  # first frame of animations / multi-page TIFFs
        image.load()
        image = ImageOps.exif_transpose(image) or image
        return _to_rgb(image)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError("too_many_pixels", "not enough memory to decode this image: downscale it") from None
    except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError, struct.error, ...
        raise ImageError(
            "corrupt", f"the {image.format} data is damaged or truncated ({exc}): re-upload the original file"
        ) from None


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageError("too_many_pixels", f"{exc}: downscale the image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        pass
    # Our decoders refuse it: tell a known-but-unsupported format from something that is no image at all.
    try:
        with Image.open(io.BytesIO(data)) as other:
            fmt = other.format
    except Exception:
        fmt = None
    if fmt:
        raise ImageError("unsupported", f"{fmt} images are not supported: convert to JPEG, PNG or WebP")
    if _looks_supported(data):
        raise ImageError(
            "corrupt",
            "the file starts like a supported image but its header is damaged or "
            "truncated: re-upload the original file",
        )
    head = data[:16]
    raise ImageError(
        "not_image",
        f"the data is not a recognised image (starts with {head!r}); supported: "
        "JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC, AVIF",
    )


def _looks_supported(data: bytes) -> bool:
    """Magic numbers of the supported formats: a match that Pillow cannot open is a damaged file."""
    return (
        data.startswith((b"\xff\xd8\xff", b"\x89PNG", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*"))
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
        or data[4:8] == b"ftyp"  # HEIC / AVIF (ISO base media)
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16/32-bit greyscale: convert("L") would clip everything above 255 to white; scale instead.
        pixels = np.asarray(image, dtype=np.float64)
        peak = float(pixels.max()) if pixels.size else 0.0
        if mode == "F":
            scale = 255.0 / peak if peak > 0 else 1.0
        else:
            scale = 1.0 if peak <= 255 else (255.0 / 65535.0 if peak <= 65535 else 255.0 / peak)
        grey = np.clip(pixels * scale + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa") or (mode == "L" and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    try:
        return image.convert("RGB")  # L, 1, CMYK, YCbCr, ...
    except (ValueError, OSError) as exc:
        raise ImageError("unsupported", f"cannot convert a {mode} image to RGB ({exc}): save it as 8-bit RGB") from None


def thumbnail(image: Image.Image, size: int = 384) -> bytes:
    """WebP bytes with the longest side <= size (never enlarged)."""
    thumb = image.convert("RGB") if image.mode != "RGB" else image.copy()
    # Bilinear with reducing_gap=2 (a box reduction first, then a short bilinear step) and WebP method 0:
    # about 2 ms less per image than Lanczos with method 2, for thumbnails a person cannot tell apart at this
    # size and ~10% bigger files; ingestion is CPU-bound (BENCHMARKS.md, ingestion).
    thumb.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    thumb.save(out, format="WEBP", quality=80, method=0)
    return out.getvalue()
