"""Our pipeline (decode -> preprocess from config -> ONNX) against the reference implementation on
the same random-weight checkpoint: transformers CLIPModel + CLIPProcessor for the dynamic-batch test
model, and open_clip itself for the one exported as Immich's exporter does (batch fixed at 1).

Thresholds from the issue: mean cosine >= 0.999 for texts (with identical token ids), >= 0.995 for
images. int8-vs-fp32 agreement is recorded as a test property (and measured on ViT-B/32 shapes in
bench/bench_embed.py).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from shared.config import load_settings
from shared.dev.model_builder import ensure_test_model, openclip_reference
from shared.dev.open_clip_import import allow_torchvision_import
from shared.embedders.onnx_clip import OnnxClipEmbedder
from shared.embedders.text import canonicalize
from shared.images import decode
from tests.fixtures.model import synthetic_photo

torch = pytest.importorskip("torch")
allow_torchvision_import()  # before transformers' CLIPProcessor, which imports torchvision
transformers = pytest.importorskip("transformers")

TEXTS = [
    "a photo of a dog",
    "Two people walking on a beach at sunset",
    "ein rotes Auto vor dem Haus",
    "東京の夜景 🌃",
    "café, crème brûlée & naïve façade",
    "",
    " ".join(f"token{i}" for i in range(200)),  # far past the 77-token context
]
SIZES = [(640, 480), (480, 640), (1000, 250), (224, 224), (64, 64), (37, 91), (2000, 1500)]


@pytest.fixture(scope="module")
def reference(test_model_dir: Path) -> tuple[object, object]:
    torch.set_num_threads(2)
    model = transformers.CLIPModel.from_pretrained(test_model_dir / "hf").eval()
    processor = transformers.CLIPProcessor.from_pretrained(test_model_dir / "hf")
    return model, processor


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    # Through the real decode path: JPEG bytes -> RGB image.
    images = []
    for i, (w, h) in enumerate(SIZES):
        buffer = io.BytesIO()
        synthetic_photo(w, h, seed=100 + i).save(buffer, "JPEG", quality=90)
        images.append(decode(buffer.getvalue(), max_pixels=50_000_000, max_bytes=50_000_000))
    return images


def unit(features: object) -> np.ndarray:
    tensor = getattr(features, "pooler_output", features)  # transformers 5 returns an output object
    array = tensor.detach().numpy().astype(np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sum(a * b, axis=1)))


def test_texts_match_reference(test_model_dir: Path, reference: tuple, record_property: Callable) -> None:
    model, processor = reference
    ours = OnnxClipEmbedder(test_model_dir, load_settings())
    inputs = processor(text=TEXTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    np.testing.assert_array_equal(ours.tokenize(TEXTS)["text"], inputs["input_ids"].numpy())
    with torch.no_grad():
        expected = unit(model.get_text_features(**inputs))
    cosine = mean_cosine(ours.embed_texts(TEXTS), expected)
    record_property("text_mean_cosine", cosine)
    assert cosine >= 0.999


def test_images_match_reference(
    test_model_dir: Path, reference: tuple, photos: list[Image.Image], record_property: Callable
) -> None:
    model, processor = reference
    ours = OnnxClipEmbedder(test_model_dir, load_settings())
    with torch.no_grad():
        expected = unit(model.get_image_features(**processor(images=photos, return_tensors="pt")))
    cosines = np.sum(ours.embed_images(photos) * expected, axis=1)
    record_property("image_cosines", [round(float(c), 5) for c in cosines])
    assert float(cosines.mean()) >= 0.995
    assert float(cosines.min()) >= 0.98  # no single image badly off (e.g. the crop of an extreme aspect)


def test_preprocessing_and_visual_graph_match_reference_separately(
    test_model_dir: Path, reference: tuple, photos: list[Image.Image]
) -> None:
    # A random-weight visual tower is forgiving (different photos already score ~0.95 with each other),
    # so the end-to-end cosine alone would miss e.g. a wrong crop. Check each stage tightly instead.
    model, processor = reference
    ours = OnnxClipEmbedder(test_model_dir, load_settings())
    pixels = processor(images=photos, return_tensors="np")["pixel_values"]
    difference = np.abs(ours.preprocess(photos) - pixels)
    # Equal up to the rounding of Pillow's reducing_gap pre-shrink on big photos (1-2 levels of 255).
    assert float(difference.max()) <= 0.05
    assert float(difference.mean()) <= 0.005
    with torch.no_grad():
        expected = unit(model.get_image_features(pixel_values=torch.from_numpy(pixels)))
    raw = ours.run_visual(pixels)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), expected, atol=1e-4)


def test_int8_agrees_with_fp32(test_model_dir: Path, photos: list[Image.Image], record_property: Callable) -> None:
    fp32 = OnnxClipEmbedder(test_model_dir, load_settings())
    int8 = OnnxClipEmbedder(test_model_dir, load_settings(model_quantized=True))
    text_cosine = mean_cosine(fp32.embed_texts(TEXTS), int8.embed_texts(TEXTS))
    image_cosine = mean_cosine(fp32.embed_images(photos), int8.embed_images(photos))
    record_property("int8_text_mean_cosine", text_cosine)
    record_property("int8_image_mean_cosine", image_cosine)
    print(f"int8 vs fp32 mean cosine (tiny test model): texts {text_cosine:.4f}, images {image_cosine:.4f}")
    # Random weights quantise worse than trained ones; this guards against a broken int8 path.
    assert text_cosine >= 0.95
    assert image_cosine >= 0.95


# -- the Immich-exported (open_clip, fixed batch 1) test model against open_clip --------------------

END_OF_TEXT = 49407


@pytest.fixture(scope="module")
def openclip_ref(immich_model_dir: Path) -> tuple[object, str, object, object]:
    """(open_clip, model name, model, eval transform) on the weights the ONNX towers came from."""
    torch.set_num_threads(2)
    try:
        return openclip_reference(immich_model_dir)
    except ImportError as exc:
        pytest.skip(f"open_clip is not installed: {exc}")


@pytest.mark.parametrize("recipe", ["immich", "siglip2", "nllb", "mclip"])
def test_exports_have_immichs_interface(recipe: str) -> None:
    # What makes an export Immich-faithful: opset 19, the inputs Immich's exporter names, typed and shaped
    # as it declares them, output "embedding", and the batch dimension fixed at 1 (no dynamic_axes).
    model_dir = ensure_test_model("tiny", recipe)
    config = json.loads((model_dir / "config.json").read_text())
    size, dim = config["vision_cfg"]["image_size"], config["embed_dim"]
    context = config["text_cfg"].get("context_length", 77)
    text_inputs = ["input_ids", "attention_mask"] if recipe == "mclip" else ["text"]  # M-CLIP's exporter
    expected = {
        "visual": [("image", onnx.TensorProto.FLOAT, [1, 3, size, size])],
        "textual": [(name, onnx.TensorProto.INT32, [1, context]) for name in text_inputs],
    }
    for tower, inputs in expected.items():
        model = onnx.load(str(model_dir / tower / "model.onnx"), load_external_data=False)
        assert {o.domain: o.version for o in model.opset_import}[""] == 19
        initializers = {i.name for i in model.graph.initializer}
        declared = [i for i in model.graph.input if i.name not in initializers]
        assert [(i.name, i.type.tensor_type.elem_type, [d.dim_value for d in i.type.tensor_type.shape.dim])
                for i in declared] == inputs
        assert [o.name for o in model.graph.output] == ["embedding"]
        output = model.graph.output[0].type.tensor_type
        assert output.elem_type == onnx.TensorProto.FLOAT
        assert [d.dim_value for d in output.shape.dim] == [1, dim]


def test_immich_tokens_match_open_clip(immich_model_dir: Path, openclip_ref: tuple) -> None:
    open_clip, name, _, _ = openclip_ref
    ours = OnnxClipEmbedder(immich_model_dir, load_settings()).tokenize(TEXTS)["text"]
    theirs = open_clip.get_tokenizer(name)(TEXTS).numpy()
    assert ours.dtype == np.int32 and ours.shape == theirs.shape
    # open_clip pads with 0, the HF tokenizer Immich ships pads with <|endoftext|>. Padding cannot change
    # the embedding: the text tower pools at argmax(ids) - the first <|endoftext|>, the highest id - and
    # its causal mask keeps every later position out of that token's activations.
    for text, row, reference in zip(TEXTS, ours, theirs, strict=True):
        end = int(np.argmax(reference == END_OF_TEXT)) + 1
        assert row[:end].tolist() == reference[:end].tolist(), text
        assert int(np.argmax(row)) == end - 1


def test_immich_texts_match_open_clip(
    immich_model_dir: Path, openclip_ref: tuple, record_property: Callable
) -> None:
    open_clip, name, model, _ = openclip_ref
    ours = OnnxClipEmbedder(immich_model_dir, load_settings())
    with torch.no_grad():
        expected = unit(model.encode_text(open_clip.get_tokenizer(name)(TEXTS), normalize=True))
    cosine = mean_cosine(ours.embed_texts(TEXTS), expected)  # 7 texts through a batch-1 model
    record_property("immich_text_mean_cosine", cosine)
    assert cosine >= 0.999


def test_immich_images_match_open_clip(
    immich_model_dir: Path, openclip_ref: tuple, photos: list[Image.Image], record_property: Callable
) -> None:
    _, _, model, preprocess = openclip_ref
    ours = OnnxClipEmbedder(immich_model_dir, load_settings())
    with torch.no_grad():
        expected = unit(model.encode_image(torch.stack([preprocess(p) for p in photos]), normalize=True))
    cosines = np.sum(ours.embed_images(photos) * expected, axis=1)  # 7 images through a batch-1 model
    record_property("immich_image_cosines", [round(float(c), 5) for c in cosines])
    assert float(cosines.mean()) >= 0.995
    assert float(cosines.min()) >= 0.98


def test_immich_preprocessing_and_visual_graph_match_open_clip(
    immich_model_dir: Path, openclip_ref: tuple, photos: list[Image.Image]
) -> None:
    # Stage by stage, as for the transformers model: open_clip's eval transform (torchvision Resize +
    # CenterCrop + Normalize, built from the model's preprocess config) against our preprocess().
    _, _, model, preprocess = openclip_ref
    ours = OnnxClipEmbedder(immich_model_dir, load_settings())
    # Known gap these SIZES do not hit: for a half-pixel crop offset torchvision's CenterCrop rounds
    # half to even, we (like Immich's runtime) floor, so e.g. 640x870 (resized to 64x87) is cropped
    # one row apart.
    pixels = torch.stack([preprocess(p) for p in photos]).numpy()
    difference = np.abs(ours.preprocess(photos) - pixels)
    assert float(difference.max()) <= 0.05
    assert float(difference.mean()) <= 0.005
    with torch.no_grad():
        expected = unit(model.encode_image(torch.from_numpy(pixels), normalize=True))
    raw = np.concatenate([ours.run_visual(p[None]) for p in pixels])  # the graph takes one image a call
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), expected, atol=1e-4)


def test_immich_batches_of_any_size_match_one_at_a_time(
    immich_model_dir: Path, photos: list[Image.Image]
) -> None:
    # The towers take exactly one image/text per call; the embedder must still accept any number.
    ours = OnnxClipEmbedder(immich_model_dir, load_settings())
    images = ours.embed_images(photos)
    texts = ours.embed_texts(TEXTS)
    assert images.shape == (len(photos), 32) and texts.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(images, np.concatenate([ours.embed_images([p]) for p in photos]), atol=1e-5)
    np.testing.assert_allclose(texts, np.concatenate([ours.embed_texts([t]) for t in TEXTS]), atol=1e-5)


# -- the rest of Immich's catalogue: SigLIP2 (canonical text), NLLB-SigLIP (language prefix), M-CLIP ---------
# Random-weight exports made as Immich's exporter makes them (shared/dev/catalogue_models.py), against
# open_clip (or M-CLIP) itself on the same weights.

# Texts where Immich's cleaning shows: capitals and punctuation, underscores, curly quotes (ftfy), HTML
# entities, runs of whitespace.
CLEANED_TEXTS = [*TEXTS, "A Photo of a DOG!", "rock & roll -- the best", "snake_case_file IMG_2041.jpg",
                 "dog’s “red car”", "fish &amp; chips", "  two   spaces\tand\nnewlines  ", "!!!"]
# Immich's lookup: WEBLATE_TO_FLORES200 (immich_ml/models/constants.py), then the tag's language, then English.
LANGUAGES = {"en": "eng_Latn", "de": "deu_Latn", "pt-BR": "por_Latn", "de-CH": "deu_Latn", "zh-TW": "zho_Hant",
             "xx": "eng_Latn"}


def reference_of(recipe: str) -> tuple[Path, tuple]:
    torch.set_num_threads(2)
    model_dir = ensure_test_model("tiny", recipe)
    try:
        return model_dir, openclip_reference(model_dir)
    except ImportError as exc:
        pytest.skip(f"open_clip or timm is not installed: {exc}")


@pytest.fixture(scope="module")
def siglip2() -> tuple[Path, tuple]:
    return reference_of("siglip2")


@pytest.fixture(scope="module")
def nllb() -> tuple[Path, tuple]:
    return reference_of("nllb")


def immich_cleaned(tokenizer: object) -> object:
    """open_clip's tokenizer with the cleaning Immich gives models that do not canonicalize: whitespace
    collapsed, nothing else (open_clip's default "whitespace" clean also runs ftfy)."""
    from open_clip.tokenizer import whitespace_clean

    tokenizer.clean_fn = whitespace_clean  # type: ignore[attr-defined]
    return tokenizer


def test_canonicalize_is_open_clips() -> None:
    open_clip_tokenizer = pytest.importorskip("open_clip.tokenizer")
    tricky = [*CLEANED_TEXTS, "ﬁsh in ＦＵＬＬ width", "cafÃ© mojibake", "&amp;amp; twice", "e\u0301 combining",
              "no\u00a0break", "ALL_CAPS_FILE.JPG", "a-b/c\\d", "¿Qué tal?", "«guillemets» — dash"]
    assert [canonicalize(text) for text in tricky] == [open_clip_tokenizer._clean_canonicalize(t) for t in tricky]


def test_siglip2_tokens_match_open_clip(siglip2: tuple) -> None:
    model_dir, (open_clip, name, _, _) = siglip2
    theirs = open_clip.get_tokenizer(name)  # HFTokenizer with the config's clean="canonicalize"
    ours = OnnxClipEmbedder(model_dir, load_settings())
    ids = ours.tokenize(CLEANED_TEXTS)["text"]
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, theirs(CLEANED_TEXTS).numpy())  # padding too: the tower pools the last
    # The cleaning made them equal: the tokenizer alone keeps case and punctuation apart.
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(model_dir / "textual" / "tokenizer.json"))
    assert raw.encode("A DOG!").ids != raw.encode("a dog").ids
    same = ours.tokenize(["A DOG!", "a dog"])["text"]
    np.testing.assert_array_equal(same[0], same[1])
    np.testing.assert_array_equal(ours.tokenize(CLEANED_TEXTS, "de")["text"], ids)  # no language token here


def test_siglip2_texts_and_images_match_open_clip(
    siglip2: tuple, photos: list[Image.Image], record_property: Callable
) -> None:
    model_dir, (open_clip, name, model, transform) = siglip2
    ours = OnnxClipEmbedder(model_dir, load_settings())
    pixels = torch.stack([transform(p) for p in photos]).numpy()  # squash to 64x64, mean and std 0.5
    difference = np.abs(ours.preprocess(photos) - pixels)
    assert float(difference.max()) <= 0.05 and float(difference.mean()) <= 0.005
    with torch.no_grad():
        texts = unit(model.encode_text(open_clip.get_tokenizer(name)(CLEANED_TEXTS), normalize=True))
        images = unit(model.encode_image(torch.from_numpy(pixels), normalize=True))
    text_cosine = mean_cosine(ours.embed_texts(CLEANED_TEXTS), texts)
    image_cosines = np.sum(ours.embed_images(photos) * images, axis=1)
    record_property("siglip2_text_mean_cosine", text_cosine)
    record_property("siglip2_image_cosines", [round(float(c), 5) for c in image_cosines])
    assert text_cosine >= 0.999
    assert float(image_cosines.mean()) >= 0.995 and float(image_cosines.min()) >= 0.98


@pytest.mark.parametrize("lang", LANGUAGES)
def test_nllb_tokens_carry_immichs_language_prefix(nllb: tuple, lang: str) -> None:
    from open_clip.tokenizer import whitespace_clean

    model_dir, (open_clip, name, _, _) = nllb
    theirs = immich_cleaned(open_clip.get_tokenizer(name))
    code = LANGUAGES[lang]
    ours = OnnxClipEmbedder(model_dir, load_settings()).tokenize(CLEANED_TEXTS, lang)["text"]
    # Immich's runtime: f"{flores_code}{clean_text(text)}", through the tokenizer it ships, whose template
    # ("eng_Latn $A </s>") NllbTokenizer wrote.
    expected = theirs([code + whitespace_clean(text) for text in CLEANED_TEXTS]).numpy()
    np.testing.assert_array_equal(ours, expected)
    assert (ours == theirs.tokenizer.convert_tokens_to_ids(code)).sum(axis=1).min() >= 1


def test_nllb_texts_and_images_match_open_clip(
    nllb: tuple, photos: list[Image.Image], record_property: Callable
) -> None:
    from open_clip.tokenizer import whitespace_clean

    model_dir, (open_clip, name, model, transform) = nllb
    ours = OnnxClipEmbedder(model_dir, load_settings())
    theirs = immich_cleaned(open_clip.get_tokenizer(name))
    with torch.no_grad():
        texts = unit(model.encode_text(theirs(["deu_Latn" + whitespace_clean(t) for t in CLEANED_TEXTS]),
                                       normalize=True))
        images = unit(model.encode_image(torch.stack([transform(p) for p in photos]), normalize=True))
    text_cosine = mean_cosine(ours.embed_texts(CLEANED_TEXTS, lang="de"), texts)
    image_cosines = np.sum(ours.embed_images(photos) * images, axis=1)
    record_property("nllb_text_mean_cosine", text_cosine)
    assert text_cosine >= 0.999
    assert float(image_cosines.mean()) >= 0.995 and float(image_cosines.min()) >= 0.98


def test_mclip_inputs_and_texts_match_m_clip(record_property: Callable) -> None:
    from open_clip.tokenizer import whitespace_clean

    from shared.dev.catalogue_models import mclip_reference

    torch.set_num_threads(2)
    model_dir = ensure_test_model("tiny", "mclip")
    model = mclip_reference(model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir / "mclip")
    cleaned = [whitespace_clean(text) for text in CLEANED_TEXTS]  # Immich's clean_text; M-CLIP itself has none
    ours = OnnxClipEmbedder(model_dir, load_settings())
    feeds = ours.tokenize(CLEANED_TEXTS)
    padded = tokenizer(cleaned, padding="max_length", max_length=77, truncation=True, return_tensors="np")
    assert sorted(feeds) == ["attention_mask", "input_ids"]
    np.testing.assert_array_equal(feeds["input_ids"], padded["input_ids"])
    np.testing.assert_array_equal(feeds["attention_mask"], padded["attention_mask"])
    # M-CLIP pads a batch to its longest text; the mask makes the 77-long rows embed the same.
    longest = tokenizer(cleaned, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        expected = unit(model(longest["input_ids"], longest["attention_mask"]))
    cosine = mean_cosine(ours.embed_texts(CLEANED_TEXTS), expected)
    record_property("mclip_text_mean_cosine", cosine)
    assert cosine >= 0.999
