"""Keywords and captions written into photos by people and their tools: IPTC Keywords (2:25) and Caption
(2:120), XMP `dc:subject`, `dc:description` and `lr:hierarchicalSubject`, as Lightroom, digiKam and darktable
write them.

- Tags: XMP subjects, then every level of each hierarchical subject ("Places|France|Paris" gives Places,
  France and Paris), then IPTC keywords; deduplicated by their folded form (shared.search.keywords.fold), first
  spelling and order kept. darktable's own bookkeeping ("darktable|format|jpg") is left out.
- Caption: XMP `dc:description` (the x-default language, else the first), else IPTC Caption; the
  placeholders cameras write by themselves ("OLYMPUS DIGITAL CAMERA") are not captions.

Read from the header only, like shared/ingest/exif.py, and never raises: this is data from anywhere. XML goes
through defusedxml (Pillow's `getxmp`), so entity expansion (billion laughs) and external entities are
refused; an XMP packet over MAX_XMP_BYTES or an IPTC block over MAX_IPTC_BYTES is not read at all; at most
MAX_TAGS tags of at most MAX_TAG_CHARS characters are kept, and MAX_CAPTION_CHARS of a caption. A source
that cannot be decoded gives nothing, and the other source is still read.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image, IptcImagePlugin, TiffImagePlugin

from shared.images import FORMATS
from shared.ingest.exif import PLACEHOLDER_DESCRIPTIONS
from shared.search.keywords import fold

log = logging.getLogger(__name__)

MAX_XMP_BYTES = 1024 * 1024  # Lightroom's packets are a few KiB; a JPEG APP1 segment holds 64 KiB
MAX_IPTC_BYTES = 256 * 1024
MAX_TAGS = 200
MAX_TAG_CHARS = 128  # longer is not a keyword someone typed
MAX_HIERARCHY_LEVELS = 16
MAX_CAPTION_CHARS = 2000
IPTC_KEYWORDS, IPTC_CAPTION, IPTC_CHARSET = (2, 25), (2, 120), (1, 90)
IPTC_UTF8 = b"\x1b%G"  # ISO 2022 escape for UTF-8 in IPTC CodedCharacterSet
HIERARCHY_SEPARATOR = "|"
TOOL_HIERARCHIES = frozenset({"darktable"})  # roots of hierarchies tools keep for themselves

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC = "http://purl.org/dc/elements/1.1/"
LIGHTROOM = "http://ns.adobe.com/lightroom/1.0/"
XML = "http://www.w3.org/XML/1998/namespace"
SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class PhotoTags:
    """The words a photo carries: keywords (`tags`) and a caption; empty when it carries none."""

    tags: tuple[str, ...] = ()
    caption: str | None = None

    @property
    def words(self) -> str | None:
        """The keyword index's source for these: tags and caption, folded (shared.search.keywords)."""
        text = " ".join([*self.tags, self.caption or ""]).strip()
        return fold(text) if text else None

    def columns(self) -> dict[str, Any]:
        """The collection table's columns (shared/store/tables.py ADDED_COLUMNS): tags [] when it has none."""
        return {"tags": list(self.tags), "caption": self.caption, "tag_words": self.words}


def read_photo_tags(data: bytes) -> PhotoTags:
    """The tags and caption in an image's bytes; never raises (an unreadable image gives none)."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as header:
            return photo_tags(header)
    except Exception:  # not an image, or a header Pillow refuses: the decoder reports that, not us
        return PhotoTags()


def photo_tags(header: Image.Image) -> PhotoTags:
    """The tags and caption of an opened image (no pixels decoded); never raises."""
    subjects, hierarchy, xmp_caption = _guarded(_xmp_fields, header, default=((), (), None))
    keywords, iptc_caption = _guarded(_iptc_fields, header, default=((), None))
    levels = (level for path in hierarchy for level in _levels(path))
    return PhotoTags(tags=_unique_tags([*subjects, *levels, *keywords]),
                     caption=_caption(xmp_caption) or _caption(iptc_caption))


def _guarded(read: Any, header: Image.Image, default: Any) -> Any:
    try:
        return read(header)
    except Exception as exc:  # hostile or broken metadata: XML errors, refused entities, recursion, bad IIM
        log.debug("unreadable photo tags: %s", exc)
        return default


# -- XMP -------------------------------------------------------------------------------------------------


def _xmp_fields(header: Image.Image) -> tuple[list[str], list[str], str | None]:
    """(dc:subject items, lr:hierarchicalSubject items, dc:description) of the packet's descriptions."""
    packet = header.info.get("xmp")
    if not packet or len(packet) > MAX_XMP_BYTES or not hasattr(header, "getxmp"):
        return [], [], None
    try:
        xmp = header.getxmp(strip_namespaces=False)
    except TypeError:  # Pillow < 13 always strips namespaces
        xmp = header.getxmp()
    subjects: list[str] = []
    hierarchy: list[str] = []
    captions: list[tuple[str | None, str]] = []
    for description in _descriptions(xmp):
        for key, value in description.items():
            if _is(key, DC, "subject"):
                subjects += _texts(value)
            elif _is(key, LIGHTROOM, "hierarchicalSubject"):
                hierarchy += _texts(value)
            elif _is(key, DC, "description"):
                captions += _alternatives(value)
    return subjects, hierarchy, _default_language(captions)


def _is(key: str, namespace: str, local: str) -> bool:
    """Whether an XMP key is namespace:local, with namespaces kept ({uri}local) or stripped (local)."""
    return key == local or key == f"{{{namespace}}}{local}"


def _child(node: Any, namespace: str, local: str) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            if _is(key, namespace, local):
                return value
    return None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _descriptions(xmp: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The rdf:Description nodes of an x:xmpmeta/rdf:RDF packet (or of a bare rdf:RDF)."""
    meta = _child(xmp, "adobe:ns:meta/", "xmpmeta")
    rdf = _child(meta, RDF, "RDF") or _child(xmp, RDF, "RDF")
    for description in _as_list(_child(rdf, RDF, "Description")):
        if isinstance(description, dict):
            yield description


def _items(value: Any) -> list[Any]:
    """The rdf:li items of an rdf:Bag, Seq or Alt (or the value itself when it is a plain string)."""
    if isinstance(value, dict):
        for container in ("Bag", "Seq", "Alt"):
            inner = _child(value, RDF, container)
            if inner is not None:
                return _as_list(_child(inner, RDF, "li"))[: MAX_TAGS * 4]
        return []
    return [value] if isinstance(value, str) else []


def _texts(value: Any) -> list[str]:
    return [text for _, text in _alternatives(value)]


def _alternatives(value: Any) -> list[tuple[str | None, str]]:
    """(language, text) of each item; an item with attributes is {"lang": ..., "text": ...}."""
    found: list[tuple[str | None, str]] = []
    for item in _items(value):
        if isinstance(item, str):
            found.append((None, item))
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            language = _child(item, XML, "lang")
            found.append((language if isinstance(language, str) else None, item["text"]))
    return found


def _default_language(captions: list[tuple[str | None, str]]) -> str | None:
    for language, text in captions:
        if language == "x-default":
            return text
    return captions[0][1] if captions else None


def _levels(path: str) -> list[str]:
    """Every level of a hierarchical subject; none for a tool's own hierarchy."""
    levels = path.split(HIERARCHY_SEPARATOR, MAX_HIERARCHY_LEVELS)[:MAX_HIERARCHY_LEVELS]
    if levels and fold(levels[0].strip()) in TOOL_HIERARCHIES:
        return []
    return levels


# -- IPTC ------------------------------------------------------------------------------------------------


def _iptc_fields(header: Image.Image) -> tuple[list[str], str | None]:
    """(Keywords, Caption) from the IPTC-IIM block of a JPEG (Photoshop APP13) or a TIFF."""
    if _iptc_size(header) > MAX_IPTC_BYTES:
        return [], None
    iptc = IptcImagePlugin.getiptcinfo(header)  # type: ignore[arg-type]
    if not iptc:
        return [], None
    utf8 = _as_list(iptc.get(IPTC_CHARSET))[0] == IPTC_UTF8
    keywords = [_decode(value, utf8) for value in _as_list(iptc.get(IPTC_KEYWORDS))[: MAX_TAGS * 4]]
    caption = _as_list(iptc.get(IPTC_CAPTION))[0]
    return [keyword for keyword in keywords if keyword], _decode(caption, utf8)


def _iptc_size(header: Image.Image) -> int:
    """The IPTC block's size before Pillow parses it (its parser walks the block field by field)."""
    photoshop = header.info.get("photoshop")
    if isinstance(photoshop, dict):
        return len(photoshop.get(0x0404) or b"")
    tags = getattr(header, "tag_v2", None)
    raw = getattr(tags, "_tagdata", {}).get(TiffImagePlugin.IPTC_NAA_CHUNK) if tags is not None else None
    return len(raw) if isinstance(raw, bytes) else 0


def _decode(value: Any, utf8: bool) -> str | None:
    """IIM text: UTF-8 when the block says so (or when it decodes as UTF-8), else Latin-1."""
    if not isinstance(value, bytes):
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("utf-8", errors="replace") if utf8 else value.decode("latin-1")


# -- cleaning --------------------------------------------------------------------------------------------


def _clean(text: str) -> str:
    """Control characters and runs of whitespace become one space."""
    return SPACES.sub(" ", "".join(c if c.isprintable() else " " for c in text)).strip()


def _unique_tags(candidates: Iterable[str | None]) -> tuple[str, ...]:
    tags: list[str] = []
    seen: set[str] = set()
    for candidate in candidates:
        tag = _clean(candidate) if isinstance(candidate, str) and len(candidate) <= 4 * MAX_TAG_CHARS else ""
        if not tag or len(tag) > MAX_TAG_CHARS or fold(tag) in seen:
            continue
        seen.add(fold(tag))
        tags.append(tag)
        if len(tags) == MAX_TAGS:
            break
    return tuple(tags)


def _caption(text: str | None) -> str | None:
    if not isinstance(text, str):
        return None
    caption = _clean(text[: 4 * MAX_CAPTION_CHARS])[:MAX_CAPTION_CHARS].strip()
    if not caption or caption.casefold() in PLACEHOLDER_DESCRIPTIONS:
        return None
    return caption
