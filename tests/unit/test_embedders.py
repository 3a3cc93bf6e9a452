"""Local ONNX embedder on the random-weight test model: loading, laziness, batching, texts, errors."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from shared.config import load_settings
from shared.embedders import Embedder, EmbedderError, Models, ModelUnavailable
from shared.embedders.onnx_clip import OnnxClipEmbedder, Preprocessor
from tests.fixtures.model import synthetic_photo

EOT = 49407


@pytest.fixture()
def embedder(test_model_dir: Path) -> OnnxClipEmbedder:
    return OnnxClipEmbedder(test_model_dir, load_settings(embed_batch_size=4))


def test_metadata_without_loading(test_model_dir: Path) -> None:
    models = Models([str(test_model_dir)], load_settings())
    model = models.default
    assert model.model_id == "test/random-clip-tiny"
    assert model.dim == 32
    assert model.is_test_model is True
    assert model.loaded() == {"visual": False, "textual": False}
    assert models.find("test/random-clip-tiny") is model  # one instance per spec in a deployment


def test_text_query_loads_only_the_textual_tower(embedder: OnnxClipEmbedder) -> None:
    vector = embedder.embed_text("a red bicycle")
    assert vector.shape == (32,)
    assert embedder.loaded() == {"visual": False, "textual": True}


def test_images_load_only_the_visual_tower(embedder: OnnxClipEmbedder) -> None:
    vectors = embedder.embed_images([synthetic_photo(90, 60)])
    assert vectors.shape == (1, 32)
    assert embedder.loaded() == {"visual": True, "textual": False}


def test_image_batches_match_single_images(embedder: OnnxClipEmbedder) -> None:
    images = [synthetic_photo(40 + 13 * i, 90 - 5 * i, seed=i) for i in range(10)]  # batch 4: 4+4+2
    together = embedder.embed_images(images)
    one_by_one = np.concatenate([embedder.embed_images([image]) for image in images])
    assert together.dtype == np.float32
    assert together.shape == (10, 32)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(together, one_by_one, atol=1e-4)
    assert np.abs(together[0] - together[1]).max() > 1e-3  # different images, different vectors


def test_non_rgb_images_are_accepted(embedder: OnnxClipEmbedder) -> None:
    vectors = embedder.embed_images([Image.new("L", (70, 70), 128), Image.new("RGBA", (30, 80))])
    assert np.isfinite(vectors).all()


def test_texts_unicode_and_long(embedder: OnnxClipEmbedder) -> None:
    long_text = " ".join(f"word{i}" for i in range(200))
    texts = ["a dog", "ein Hund im Schnee 🐕", "東京の夜景", "", long_text, "A DOG"]
    vectors = embedder.embed_texts(texts)
    assert vectors.shape == (6, 32)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[5], atol=1e-6)  # the tokenizer lowercases
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-3
    ids = embedder.tokenize([long_text])["text"]
    assert ids.shape == (1, 77)
    assert ids.dtype == np.int32  # as the model declares
    assert ids[0, 0] == 49406 and ids[0, -1] == EOT  # cut to the context, end token kept


def test_empty_inputs(embedder: OnnxClipEmbedder) -> None:
    assert embedder.embed_texts([]).shape == (0, 32)
    assert embedder.embed_images([]).shape == (0, 32)
    assert embedder.loaded() == {"visual": False, "textual": False}


def test_preprocessing_follows_the_config() -> None:
    cfg = {"size": [8, 8], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bilinear"}
    wide = Image.new("RGB", (40, 8), (255, 255, 255))
    wide.paste((0, 0, 0), (0, 0, 16, 8))  # black left 40%: cropped away by "shortest"
    shortest = Preprocessor({**cfg, "resize_mode": "shortest"})(wide)
    assert shortest.shape == (3, 8, 8)
    assert shortest.max() == pytest.approx(1.0)
    assert shortest.min() > 0.9  # only white survives the centre crop
    squash = Preprocessor({**cfg, "resize_mode": "squash"})(wide)
    assert squash[:, :, 0].max() < -0.9  # black kept on the left
    longest = Preprocessor({**cfg, "resize_mode": "longest", "fill_color": 0})(Image.new("RGB", (40, 20), "white"))
    assert longest[:, 0, :].max() == pytest.approx(-1.0)  # padded rows
    assert longest[:, 4, :].min() == pytest.approx(1.0)
    with pytest.raises(EmbedderError):
        Preprocessor({**cfg, "resize_mode": "stretch"})


def test_model_input_size_comes_from_preprocess_cfg(embedder: OnnxClipEmbedder) -> None:
    assert embedder.preprocess([synthetic_photo(300, 200)]).shape == (1, 3, 64, 64)


@pytest.mark.parametrize(
    ("text_cfg", "lang", "expected"),
    [
        ({}, "de", "A Dog's toy!"),  # every model: whitespace collapsed, nothing else
        ({"tokenizer_kwargs": {"clean": "canonicalize"}}, "de", "a dogs toy"),  # SigLIP, SigLIP2
        ({"hf_tokenizer_name": "facebook/nllb-200-distilled-600M"}, "de", "deu_LatnA Dog's toy!"),  # NLLB
        ({"hf_tokenizer_name": "facebook/nllb-200-distilled-600M"}, "pt-BR", "por_LatnA Dog's toy!"),
    ],
)
def test_query_text_is_prepared_as_the_config_says(tmp_path: Path, text_cfg: dict, lang: str, expected: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"embed_dim": 4, "text_cfg": text_cfg}))
    model = OnnxClipEmbedder(tmp_path, load_settings())  # reads config.json only: no tower is loaded
    assert model.prepare_text("  A \t Dog's\n\ntoy!  ", lang) == expected


def test_embed_text_hands_the_language_to_embed_texts() -> None:
    seen: list[str] = []

    class Recording(Embedder):
        model_id, dim = "test/recording", 2

        def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
            raise AssertionError("not used")

        def embed_texts(self, texts: Sequence[str], lang: str = "en") -> np.ndarray:
            seen.append(lang)
            return np.ones((len(texts), self.dim), dtype=np.float32)

        def loaded(self) -> dict[str, bool]:
            return {"visual": False, "textual": True}

    Recording().embed_text("ein Hund", lang="de")
    Recording().embed_text("a dog")
    assert seen == ["de", "en"]


def write_mclip_model(directory: Path, tokenizer_from: Path, table: np.ndarray) -> None:
    """A textual model with XLM-R-style inputs (input_ids + attention_mask): masked mean of an embedding."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["input_ids"], ["ids64"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "ids64"], ["rows"]),
            helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
            helper.make_node("Mul", ["rows", "mask3"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", "axis1"], ["total"], keepdims=0),
            helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),
            helper.make_node("Div", ["total", "count"], ["embedding"]),
        ],
        "mclip",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["n", 77]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT32, ["n", 77]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", table.shape[1]])],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    textual = directory / "textual"
    textual.mkdir(parents=True)
    onnx.save(model, textual / "model.onnx")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_from / "textual" / name, textual / name)
    (directory / "config.json").write_text(json.dumps({"embed_dim": table.shape[1], "text_cfg": {}}))


def test_multilingual_style_inputs_get_ids_and_mask(tmp_path: Path, test_model_dir: Path) -> None:
    table = np.random.default_rng(0).normal(size=(49408, 8)).astype(np.float32)
    write_mclip_model(tmp_path / "mclip", test_model_dir, table)
    model = OnnxClipEmbedder(tmp_path / "mclip", load_settings())
    assert model.model_id == "mclip"  # no model_id in config.json: the directory name
    assert model.is_test_model is False
    text = "zwei Katzen"
    feeds = model.tokenize([text])
    assert set(feeds) == {"input_ids", "attention_mask"}
    real = feeds["attention_mask"][0].astype(bool)
    expected = table[feeds["input_ids"][0][real]].mean(axis=0)
    expected /= np.linalg.norm(expected)
    # Only the unpadded tokens count: the mask reached the model.
    np.testing.assert_allclose(model.embed_texts([text])[0], expected, atol=1e-5)


def test_quantized_model_is_built_once_and_used(tmp_path: Path, test_model_dir: Path) -> None:
    copy = shutil.copytree(test_model_dir, tmp_path / "model", ignore=shutil.ignore_patterns("hf", "*.int8.onnx"))
    settings = load_settings(model_quantized=True, model_cache_dir=tmp_path / "cache")
    model = OnnxClipEmbedder(copy, settings)
    vectors = model.embed_texts(["a quantised query"])
    assert (copy / "textual" / "model.int8.onnx").exists()
    assert not (copy / "visual" / "model.int8.onnx").exists()  # lazily, per tower
    fp32 = OnnxClipEmbedder(copy, load_settings()).embed_texts(["a quantised query"])
    assert float(vectors[0] @ fp32[0]) > 0.9


def test_quantized_copy_goes_to_the_cache_when_model_dir_is_read_only(
    tmp_path: Path, test_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.embedders.quantize as quantize

    copy = shutil.copytree(test_model_dir, tmp_path / "model", ignore=shutil.ignore_patterns("hf", "*.int8.onnx"))
    monkeypatch.setattr(quantize.os, "access", lambda path, mode: False)  # as for a read-only mount
    model = OnnxClipEmbedder(copy, load_settings(model_quantized=True, model_cache_dir=tmp_path / "cache"))
    model.embed_texts(["x"])
    assert not (copy / "textual" / "model.int8.onnx").exists()
    assert len(list((tmp_path / "cache" / "quantized").glob("textual-*.int8.onnx"))) == 1


def test_hub_repo_is_read_from_the_local_cache(tmp_path: Path, test_model_dir: Path) -> None:
    # The layout huggingface_hub keeps: refs/main names a snapshot directory holding the files.
    repo = tmp_path / "hub" / "models--immich-app--Tiny-Test"
    shutil.copytree(test_model_dir, repo / "snapshots" / "abc123", ignore=shutil.ignore_patterns("hf", "*.int8*"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    model = OnnxClipEmbedder.from_spec("immich-app/Tiny-Test", load_settings(model_cache_dir=tmp_path / "hub"))
    assert model.model_id == "immich-app/Tiny-Test"
    assert model.embed_texts(["cached"]).shape == (1, 32)


def test_bad_specs(tmp_path: Path) -> None:
    settings = load_settings(model_cache_dir=tmp_path)
    with pytest.raises(EmbedderError, match="config.json"):
        OnnxClipEmbedder.from_spec(str(tmp_path), settings)
    with pytest.raises(ModelUnavailable, match="neither an existing directory"):
        OnnxClipEmbedder.from_spec("./no/such/model", settings)
    (tmp_path / "incomplete").mkdir()
    (tmp_path / "incomplete" / "config.json").write_text('{"embed_dim": 4}')
    model = OnnxClipEmbedder.from_spec(str(tmp_path / "incomplete"), settings)
    with pytest.raises(EmbedderError, match="model.onnx is missing"):
        model.embed_texts(["x"])


def test_unreachable_hub_says_how_to_use_a_local_directory(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", IB_MODEL_CACHE_DIR=str(tmp_path))
    code = (
        "from shared.config import load_settings\n"
        "from shared.embedders import load, ModelUnavailable\n"
        "try:\n"
        "    load('immich-app/ViT-B-32__openai', load_settings())\n"
        "except ModelUnavailable as exc:\n"
        "    print('UNAVAILABLE', exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "UNAVAILABLE" in result.stdout, result.stderr
    assert "IB_MODEL=" in result.stdout
    assert "immich-app/ViT-B-32__openai" in result.stdout


def test_baked_models_keep_their_order_and_hub_ids(tmp_path: Path, test_model_dir: Path,
                                                   immich_model_dir: Path) -> None:
    """The image's /opt/models: one folder per model in the order given, each recording its hub id."""
    import shutil

    from shared.embedders.bake import bake

    sources = {"immich-app/ViT-B-16-SigLIP2__webli": immich_model_dir, "immich-app/ViT-B-32__openai": test_model_dir}
    fetched: list[str] = []

    def fake_download(repo_id: str, revision: str, folder: Path) -> None:  # the hub is not reachable here
        fetched.append(f"{repo_id}@{revision}")
        shutil.copytree(sources[repo_id], folder)

    folders = bake("immich-app/ViT-B-16-SigLIP2__webli, replicate:krthr/clip-embeddings,immich-app/ViT-B-32__openai",
                   "v1", tmp_path / "models", download=fake_download)
    assert fetched == ["immich-app/ViT-B-16-SigLIP2__webli@v1", "immich-app/ViT-B-32__openai@v1"]
    assert [f.name for f in folders] == ["00-ViT-B-16-SigLIP2__webli", "01-ViT-B-32__openai"]
    models = Models.from_settings(load_settings(model=str(tmp_path / "models")))
    assert models.ids() == ["immich-app/ViT-B-16-SigLIP2__webli", "immich-app/ViT-B-32__openai"]
    assert models.default.model_id == "immich-app/ViT-B-16-SigLIP2__webli"  # the first is the default
    assert models.find("immich-app/ViT-B-32__openai") is not None and models.find("other/model") is None
    with pytest.raises(SystemExit, match="is missing"):
        bake("immich-app/ViT-B-32__openai", "v1", tmp_path / "broken", download=lambda *_: None)
