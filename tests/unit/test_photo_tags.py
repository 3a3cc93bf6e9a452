"""Keywords and captions written into photos (shared/ingest/tags.py): IPTC and XMP as Lightroom, digiKam and
darktable write them, and hostile metadata that must give nothing rather than crash or hang.

Fixtures are made here: Pillow writes XMP into JPEG (APP1 with the standard header) and PNG (iTXt); IPTC it
does not write into JPEG, so the Photoshop APP13 segment (an 8BIM image resource 0x0404 holding IIM
datasets) is built byte by byte and spliced in after SOI."""

from __future__ import annotations

import io

import pytest
from PIL import Image, PngImagePlugin

from shared.ingest import tags as photo_tags
from shared.ingest.tags import PhotoTags, read_photo_tags
from tests.fixtures.photo_tags import NAMESPACES, XPACKET_BEGIN, XPACKET_END, alt, app13, bag, iim, xmp_packet

# -- fixtures -------------------------------------------------------------------------------------------















def jpeg(xmp: bytes | None = None, iptc: bytes | None = None) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 12), (90, 120, 150)).save(out, "JPEG", **({"xmp": xmp} if xmp else {}))
    data = out.getvalue()
    return data[:2] + app13(iptc) + data[2:] if iptc is not None else data


def png(xmp: bytes) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", errors="replace"))
    out = io.BytesIO()
    Image.new("RGB", (16, 12)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def tiff_with_iptc(iptc: bytes) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 12)).save(out, "TIFF", tiffinfo={33723: iptc})
    return out.getvalue()


LIGHTROOM = xmp_packet(
    '<xmp:CreatorTool>Adobe Photoshop Lightroom Classic 13.0 (Windows)</xmp:CreatorTool>'
    + alt("dc:description", {"x-default": "Sunset over the Vieux-Port"})
    + bag("dc:subject", ["France", "Marseille", "harbour", "sunset"])
    + bag("lr:hierarchicalSubject", ["Places|France|Marseille", "Subjects|harbour", "Subjects|sunset"]))
DIGIKAM = xmp_packet(
    bag("digiKam:TagsList", ["Family/Anna", "Events/Wedding"], "Seq")
    + bag("MicrosoftPhoto:LastKeywordXMP", ["Family/Anna", "Events/Wedding"])
    + bag("lr:hierarchicalSubject", ["Family|Anna", "Events|Wedding"])
    + bag("dc:subject", ["Anna", "Wedding"])
    + alt("dc:description", {"de-DE": "Hochzeit im Garten", "x-default": "Wedding in the garden"}),
    NAMESPACES + ' xmlns:digiKam="http://www.digikam.org/ns/1.0/" '
    'xmlns:MicrosoftPhoto="http://ns.microsoft.com/photo/1.0/"')
DARKTABLE = xmp_packet(
    bag("dc:subject", ["mountains", "hiking", "Zermatt"])
    + bag("lr:hierarchicalSubject", ["darktable|format|nef", "darktable|exported", "places|Switzerland|Zermatt",
                                     "activities|hiking"])
    + alt("dc:description", {"x-default": "Matterhorn at dawn"}),
    NAMESPACES + ' xmlns:darktable="http://darktable.sf.net/" darktable:xmp_version="5" darktable:raw_params="0"')


# -- reading --------------------------------------------------------------------------------------------


def test_lightroom_subjects_hierarchy_and_caption() -> None:
    tags = read_photo_tags(jpeg(xmp=LIGHTROOM))
    assert tags.tags == ("France", "Marseille", "harbour", "sunset", "Places", "Subjects")
    assert tags.caption == "Sunset over the Vieux-Port"


def test_digikam_tags_and_the_default_language_caption() -> None:
    tags = read_photo_tags(jpeg(xmp=DIGIKAM))
    assert tags.tags == ("Anna", "Wedding", "Family", "Events")
    assert tags.caption == "Wedding in the garden"


def test_darktable_tags_without_its_own_bookkeeping() -> None:
    tags = read_photo_tags(jpeg(xmp=DARKTABLE))
    assert tags.tags == ("mountains", "hiking", "Zermatt", "places", "Switzerland", "activities")
    assert not {"darktable", "format", "nef", "exported"} & {tag.casefold() for tag in tags.tags}
    assert tags.caption == "Matterhorn at dawn"


def test_hierarchical_subject_alone_gives_every_level() -> None:
    tags = read_photo_tags(jpeg(xmp=xmp_packet(bag("lr:hierarchicalSubject", ["Places|France|Paris|Eiffel Tower"]))))
    assert tags == PhotoTags(tags=("Places", "France", "Paris", "Eiffel Tower"), caption=None)


def test_caption_without_default_language_is_the_first_and_several_descriptions_are_read() -> None:
    packet = (XPACKET_BEGIN + '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
              'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              f'<rdf:Description rdf:about="" {NAMESPACES}>{bag("dc:subject", ["cat"])}</rdf:Description>'
              f'<rdf:Description rdf:about="" {NAMESPACES}>{alt("dc:description", {"fr-FR": "Le chat"})}'
              f'{bag("dc:subject", ["sofa"])}</rdf:Description></rdf:RDF></x:xmpmeta>' + XPACKET_END).encode()
    assert read_photo_tags(jpeg(xmp=packet)) == PhotoTags(tags=("cat", "sofa"), caption="Le chat")


def test_iptc_keywords_and_caption() -> None:
    iptc = iim([(1, 90, b"\x1b%G"), (2, 0, b"\x00\x04"), (2, 25, "Zürich".encode()), (2, 25, b"lake"),
                (2, 25, b"boats"), (2, 120, "Boats on the lake, Zürich".encode())])
    tags = read_photo_tags(jpeg(iptc=iptc))
    assert tags == PhotoTags(tags=("Zürich", "lake", "boats"), caption="Boats on the lake, Zürich")
    assert tags.words == "zurich lake boats boats on the lake, zurich"


def test_iptc_single_keyword_and_latin1_text() -> None:
    iptc = iim([(2, 25, "Île de Ré".encode("latin-1")), (2, 120, "Plage à marée basse".encode("latin-1"))])
    assert read_photo_tags(jpeg(iptc=iptc)) == PhotoTags(tags=("Île de Ré",), caption="Plage à marée basse")


def test_iptc_in_tiff() -> None:
    assert read_photo_tags(tiff_with_iptc(iim([(2, 25, b"scan"), (2, 25, b"archive")]))).tags == ("scan", "archive")


def test_xmp_in_png() -> None:
    assert read_photo_tags(png(LIGHTROOM)).caption == "Sunset over the Vieux-Port"


def test_xmp_and_iptc_together_are_deduplicated_case_and_accent_blind() -> None:
    iptc = iim([(2, 25, b"france"), (2, 25, b"MARSEILLE"), (2, 25, b"boats"), (2, 120, b"IPTC caption")])
    tags = read_photo_tags(jpeg(xmp=LIGHTROOM, iptc=iptc))
    assert tags.tags == ("France", "Marseille", "harbour", "sunset", "Places", "Subjects", "boats")
    assert tags.caption == "Sunset over the Vieux-Port"  # XMP's caption first, IPTC's when XMP has none


def test_placeholder_captions_and_whitespace() -> None:
    packet = xmp_packet(alt("dc:description", {"x-default": "OLYMPUS DIGITAL CAMERA"})
                        + bag("dc:subject", ["  two   words ", "", "   "]))
    assert read_photo_tags(jpeg(xmp=packet)) == PhotoTags(tags=("two words",), caption=None)


def test_photo_without_tags_and_bytes_that_are_not_an_image() -> None:
    assert read_photo_tags(jpeg()) == PhotoTags()
    assert PhotoTags().words is None
    assert read_photo_tags(b"not an image at all") == PhotoTags()
    assert read_photo_tags(b"") == PhotoTags()


# -- hostile input --------------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag><rdf:li>&lol9;</rdf:li>
</rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag><rdf:li>&secret;</rdf:li>
</rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>"""
GOOD_IPTC = iim([(2, 25, b"still read"), (2, 120, b"IPTC survives")])


@pytest.mark.parametrize("packet", [
    BILLION_LAUGHS, EXTERNAL_ENTITY, b"not xml at all", b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF",
    b"\xff\xfe\x00<\x00x", b"<?xml version='1.0' encoding='bogus-8'?><a/>", b"<a>" + b"\xc3\x28" * 10 + b"</a>",
    b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
    b"<rdf:Description>text only</rdf:Description></rdf:RDF></x:xmpmeta>",
], ids=["billion-laughs", "external-entity", "not-xml", "truncated", "utf16-garbage", "bad-encoding",
        "invalid-utf8", "text-description"])
def test_hostile_xmp_gives_no_xmp_tags_and_iptc_is_still_read(packet: bytes) -> None:
    assert read_photo_tags(jpeg(xmp=packet, iptc=GOOD_IPTC)) == PhotoTags(tags=("still read",),
                                                                           caption="IPTC survives")


def test_deeply_nested_xmp_does_not_crash() -> None:
    depth = 50_000
    packet = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>" + b"<a>" * depth + b"</a>" * depth + b"</x:xmpmeta>"
    assert read_photo_tags(png(packet)) == PhotoTags()


def test_xmp_over_the_size_cap_is_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    huge = xmp_packet(bag("dc:subject", ["kept"]) + "<!--" + "x" * (photo_tags.MAX_XMP_BYTES + 1) + "-->")
    assert read_photo_tags(png(huge)) == PhotoTags()

    def must_not_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("getxmp called on an oversized packet")

    monkeypatch.setattr(Image.Image, "getxmp", must_not_parse)
    assert read_photo_tags(png(huge)) == PhotoTags()


def test_thousands_of_keywords_are_capped() -> None:
    packet = xmp_packet(bag("dc:subject", [f"k{i}" for i in range(2500)]))
    tags = read_photo_tags(jpeg(xmp=packet)).tags
    assert len(tags) == photo_tags.MAX_TAGS
    assert tags[:3] == ("k0", "k1", "k2")


def test_overlong_tags_are_dropped_and_captions_cut() -> None:
    packet = xmp_packet(bag("dc:subject", ["x" * 5000, "short"]) + alt("dc:description", {"x-default": "y " * 5000}))
    tags = read_photo_tags(jpeg(xmp=packet))
    assert tags.tags == ("short",)
    assert tags.caption is not None and len(tags.caption) <= photo_tags.MAX_CAPTION_CHARS


def test_deep_hierarchies_are_capped() -> None:
    path = "|".join(f"level{i}" for i in range(1000))
    tags = read_photo_tags(jpeg(xmp=xmp_packet(bag("lr:hierarchicalSubject", [path])))).tags
    assert tags == tuple(f"level{i}" for i in range(photo_tags.MAX_HIERARCHY_LEVELS))


@pytest.mark.parametrize("iptc", [
    b"\x1d\x02\x19\x00\x04oops",  # not a dataset marker
    b"\x1c\x02\x19\x85\x00\x00\x00\x10abc",  # extended length longer than the field length allows
    b"\x1c\x02\x19\xff\xff",  # length past the end
    b"\x1c\x02",  # truncated header
    b"\x00" * 64,
    bytes(range(256)) * 4,
], ids=["bad-marker", "bad-extended-length", "length-past-end", "truncated", "zeros", "noise"])
def test_broken_iptc_gives_no_iptc_tags_and_xmp_is_still_read(iptc: bytes) -> None:
    tags = read_photo_tags(jpeg(xmp=DARKTABLE, iptc=iptc))
    assert tags.caption == "Matterhorn at dawn"
    assert tags.tags[:3] == ("mountains", "hiking", "Zermatt")


def test_iptc_over_the_size_cap_is_not_parsed() -> None:
    many = iim([(2, 25, f"keyword{i}".encode()) for i in range(40_000)])
    assert len(many) > photo_tags.MAX_IPTC_BYTES
    assert read_photo_tags(tiff_with_iptc(many)) == PhotoTags()


def test_many_iptc_keywords_are_capped() -> None:
    iptc = iim([(2, 25, f"kw{i}".encode()) for i in range(3000)])
    assert len(read_photo_tags(jpeg(iptc=iptc)).tags) == photo_tags.MAX_TAGS


def test_control_characters_in_iptc_become_spaces() -> None:
    iptc = iim([(2, 25, b"tab\there"), (2, 25, b"nul\x00byte"), (2, 120, b"line one\r\nline two\x07")])
    assert read_photo_tags(jpeg(iptc=iptc)) == PhotoTags(tags=("tab here", "nul byte"), caption="line one line two")
