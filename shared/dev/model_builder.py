"""Build a random-weight test model in Immich's CLIP layout (no network, fixed seed).

    python -m shared.dev.model_builder OUT_DIR [--size tiny|b32] [--recipe transformers|immich|siglip2|nllb|mclip]...

`ensure_test_model(size, recipe)` (`ensure_test_models` for several, in one process) builds it once per
checkout into .cache/test-models/ (the directory name carries the recipe and a hash of the builder's files,
so editing them rebuilds) for the tests, `make dev MODEL=test` and the benchmarks.

The recipes write the same layout:

- `transformers` (default): a transformers CLIPModel exported with a dynamic batch (opset 17), as
  Immich's older uploads are; the reference checkpoint is kept in OUT_DIR/hf/.
- `immich`: an open_clip model exported exactly as Immich's current exporter does (opset 19, batch
  fixed at 1, `encode_*(normalize=True)`, open_clip's own config and preprocess config); the torch
  weights are kept in OUT_DIR/openclip/ (see `openclip_reference`).
- `siglip2`, `nllb`, `mclip` (tiny only): the other shapes of Immich's catalogue, exported the same way
  (shared/dev/catalogue_models.py).

Layout written (the same files Immich publishes for its models, so the loader has one code path):

    OUT_DIR/config.json                    open_clip-style config + "test_model": true + "model_id"
    OUT_DIR/visual/model.onnx              input "image" float32 [n,3,H,W] -> [n, embed_dim] (immich: n=1)
    OUT_DIR/visual/preprocess_cfg.json     size, mean, std, interpolation, resize_mode
    OUT_DIR/textual/model.onnx             input "text" int32 [n,77] -> [n, embed_dim] (immich: n=1)
    OUT_DIR/textual/tokenizer.json (+ tokenizer_config.json)
    OUT_DIR/hf/                            (transformers) the checkpoint + processor: the reference
    OUT_DIR/openclip/                      (immich) <name>.json + weights.safetensors: the reference

`tiny` builds in a few seconds for tests; `b32` has ViT-B/32 shapes so benchmark figures carry over
to the real model. The weights are random: embeddings are meaningless, only the arithmetic is real.
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from shared.dev.open_clip_import import allow_torchvision_import, import_open_clip

SIZES: dict[str, dict[str, Any]] = {
    # Small but not degenerate: a non-224 image size proves preprocessing is read from the config.
    "tiny": {
        "embed_dim": 32,
        "vision": {
            "image_size": 64,
            "patch_size": 16,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
        },
        "text": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
        },
    },
    # OpenAI ViT-B/32: the default model's shapes.
    "b32": {
        "embed_dim": 512,
        "vision": {
            "image_size": 224,
            "patch_size": 32,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
        },
        "text": {
            "hidden_size": 512,
            "intermediate_size": 2048,
            "num_hidden_layers": 12,
            "num_attention_heads": 8,
        },
    },
}
CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
SEED = 1234
PREPROCESS_FILE = "preprocess_cfg.json"
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "test-models"


RECIPES = ("transformers", "immich", "siglip2", "nllb", "mclip")
# What the built model depends on: editing any of these files rebuilds the cached models.
BUILDER_FILES = tuple(Path(__file__).with_name(name)
                      for name in ("model_builder.py", "open_clip_import.py", "catalogue_models.py"))


def model_cache_path(size: str = "tiny", recipe: str = "transformers") -> Path:
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in BUILDER_FILES)).hexdigest()[:12]
    return CACHE / f"{size}-{recipe}-{digest}"


def ensure_test_model(size: str = "tiny", recipe: str = "transformers") -> Path:
    """Path of the built test model, building it first if needed (atomically: temp dir + rename)."""
    return ensure_test_models(size, [recipe])[0]


def ensure_test_models(size: str, recipes: list[str]) -> list[Path]:
    """Paths of the built test models of `recipes`, the missing ones built in one child process: importing
    torch, transformers and open_clip is ~11 s of a build's ~13, so one process for several saves most of it."""
    targets = [model_cache_path(size, recipe) for recipe in recipes]
    if all((target / "config.json").exists() for target in targets):
        return targets
    CACHE.mkdir(parents=True, exist_ok=True)
    # One builder per model at a time (parallel test workers): the others wait and then find it built.
    # Locks are taken in one order, so two callers asking for overlapping sets cannot deadlock.
    with ExitStack() as locks:
        for target in sorted(targets):
            lock = locks.enter_context(open(CACHE / f".{target.name}.lock", "w"))
            fcntl.flock(lock, fcntl.LOCK_EX)
        missing = [(recipe, target) for recipe, target in zip(recipes, targets, strict=True)
                   if not (target / "config.json").exists()]
        if missing:
            _build(size, missing)
    return targets


def _build(size: str, missing: list[tuple[str, Path]]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{size}-", dir=CACHE))
    try:
        # A child process: the caller never imports torch just to build the models.
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        command = [sys.executable, "-m", "shared.dev.model_builder", str(tmp), "--size", size]
        for recipe, _ in missing:
            command += ["--recipe", recipe]
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=CACHE.parents[1])
        if result.returncode != 0:
            names = ", ".join(recipe for recipe, _ in missing)
            raise RuntimeError(f"building the {size} test models ({names}) failed:\n{result.stderr[-4000:]}")
        for recipe, target in missing:
            try:
                built_into(tmp, recipe, len(missing)).rename(target)
            except OSError:
                if not (target / "config.json").exists():  # lost a race is fine; anything else is not
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def built_into(out_dir: Path, recipe: str, count: int) -> Path:
    """Where one run of the builder writes `recipe`'s model: OUT_DIR itself, or OUT_DIR/<recipe> when it builds
    `count` > 1 models."""
    return out_dir / recipe if count > 1 else out_dir


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2/CLIP byte-level alphabet (as open_clip's tokenizer builds it).
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The real CLIP BPE vocabulary and merges, from the file open_clip_torch ships."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("open_clip_torch is not installed: it ships the CLIP BPE vocabulary this script needs.")
    bpe_path = Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe_path) as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [a + "</w>" for a in alphabet] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    assert len(tokens) == VOCAB_SIZE
    return {t: i for i, t in enumerate(tokens)}, merges  # type: ignore[return-value]


def _export(module: Any, example: Any, path: Path, input_name: str) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=[input_name],
        output_names=["embedding"],
        dynamic_axes={input_name: {0: "batch_size"}, "embedding": {0: "batch_size"}},
        opset_version=17,
        dynamo=False,
    )


def build(out_dir: Path, size: str = "tiny", recipe: str = "transformers") -> Path:
    """Write the test model into out_dir (created or overwritten) and return it."""
    if size not in SIZES:
        raise SystemExit(f"unknown size {size!r}: choose one of {', '.join(SIZES)}")
    if recipe == "immich":
        return build_immich(out_dir, size)
    if recipe in ("siglip2", "nllb", "mclip"):
        from shared.dev import catalogue_models

        if size != "tiny":
            raise SystemExit(f"the {recipe} recipe builds only the tiny size")
        return catalogue_models.BUILDERS[recipe](Path(out_dir))
    if recipe != "transformers":
        raise SystemExit(f"unknown recipe {recipe!r}: choose one of {', '.join(RECIPES)}")

    allow_torchvision_import()  # CLIPImageProcessor imports torchvision when it is installed
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    shape = SIZES[size]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)

    config = CLIPConfig(
        text_config={
            **shape["text"],
            "vocab_size": VOCAB_SIZE,
            "max_position_embeddings": CONTEXT_LENGTH,
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 49407,
        },
        vision_config={**shape["vision"]},
        projection_dim=shape["embed_dim"],
    )
    model = CLIPModel(config).eval()
    model.config._attn_implementation = "eager"  # plain ops export most predictably

    vocab, merges = clip_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CONTEXT_LENGTH)
    image_size = shape["vision"]["image_size"]
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=MEAN,
        image_std=STD,
        resample=3,  # 3 = PIL bicubic
    )
    hf_dir = out_dir / "hf"
    model.save_pretrained(hf_dir)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(hf_dir)

    _export_hf_towers(model, image_size, out_dir)
    tokenizer.save_pretrained(out_dir / "textual")
    # Keep only what Immich ships beside the textual model.
    for extra in ("vocab.json", "merges.txt"):
        (out_dir / "textual" / extra).unlink(missing_ok=True)
    _write_layout_configs(out_dir, size)
    return out_dir


def _export_hf_towers(model: Any, image_size: int, out_dir: Path) -> None:
    """Both towers of a transformers CLIPModel as ONNX, with Immich's input and output names."""
    import torch

    # The towers hold the model as a submodule so the exporter sees its weights as parameters.
    class Visual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.clip.visual_projection(self.clip.vision_model(pixel_values=image).pooler_output)

    class Textual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, text: torch.Tensor) -> torch.Tensor:
            # Immich's textual models take int32 ids; the graph casts them.
            pooled = self.clip.text_model(input_ids=text.to(torch.int64)).pooler_output
            return self.clip.text_projection(pooled)

    with torch.no_grad():
        _export(Visual(), torch.zeros(1, 3, image_size, image_size), out_dir / "visual" / "model.onnx", "image")
        _export(Textual(), torch.zeros(1, CONTEXT_LENGTH, dtype=torch.int32), out_dir / "textual" / "model.onnx",
                "text")


def _write_layout_configs(out_dir: Path, size: str) -> None:
    """visual/preprocess_cfg.json and config.json as Immich publishes them (plus our test markers)."""
    shape = SIZES[size]
    image_size = shape["vision"]["image_size"]
    preprocess = {"size": [image_size, image_size], "mode": "RGB", "mean": MEAN, "std": STD,
                  "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0}
    (out_dir / "visual" / "preprocess_cfg.json").write_text(json.dumps(preprocess, indent=2))
    config = {
        "model_id": f"test/random-clip-{size}",
        "test_model": True,
        "description": "Random-weight test model: embeddings are meaningless.",
        "embed_dim": shape["embed_dim"],
        "vision_cfg": {"image_size": image_size, "layers": shape["vision"]["num_hidden_layers"],
                       "width": shape["vision"]["hidden_size"], "patch_size": shape["vision"]["patch_size"]},
        "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": VOCAB_SIZE,
                     "width": shape["text"]["hidden_size"], "heads": shape["text"]["num_attention_heads"],
                     "layers": shape["text"]["num_hidden_layers"]},
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))


def openclip_config(size: str) -> tuple[str, dict[str, Any]]:
    """The open_clip model name and config for a size: the same shapes as the transformers recipe."""
    shape = SIZES[size]
    vision, text = shape["vision"], shape["text"]
    return f"random-openclip-{size}", {
        "embed_dim": shape["embed_dim"],
        "vision_cfg": {
            "image_size": vision["image_size"],
            "layers": vision["num_hidden_layers"],
            "width": vision["hidden_size"],
            "head_width": vision["hidden_size"] // vision["num_attention_heads"],
            "mlp_ratio": vision["intermediate_size"] / vision["hidden_size"],
            "patch_size": vision["patch_size"],
        },
        "text_cfg": {
            "context_length": CONTEXT_LENGTH,
            "vocab_size": VOCAB_SIZE,
            "width": text["hidden_size"],
            "heads": text["num_attention_heads"],
            "layers": text["num_hidden_layers"],
            "mlp_ratio": text["intermediate_size"] / text["hidden_size"],
        },
    }


def save_json(config: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))


def build_immich(out_dir: Path, size: str = "tiny") -> Path:
    """Write an open_clip test model exported as Immich's exporter does (fixed batch 1, opset 19).

    Mirrors machine-learning/export/immich_model_exporter/exporters/onnx/models/openclip.py; the
    deviations: random weights (pretrained=None), the tokenizer built from the bundled CLIP BPE
    vocabulary instead of downloaded (AutoTokenizer "openai/clip-vit-base-patch32"), the TorchScript
    exporter named explicitly (dynamo=False: torch 2.13 defaults to the dynamo exporter, slower and
    noisy; the interface - names, dtypes, fixed shapes, opset - is the same), two extra config keys.
    """
    from transformers import CLIPTokenizerFast

    out_dir = Path(out_dir)
    name, model_config = openclip_config(size)
    # Registered from its file under openclip/, which the tests register again to load the reference.
    save_json(model_config, out_dir / "openclip" / f"{name}.json")
    model = create_openclip_model(out_dir / "openclip")

    vocab, merges = clip_vocab()
    tokenizer = CLIPTokenizerFast(vocab=vocab, merges=merges, model_max_length=CONTEXT_LENGTH)
    assert tokenizer.pad_token == "<|endoftext|>"  # as openai/clip-vit-base-patch32's tokenizer
    tokenizer.save_pretrained(out_dir / "textual")
    export_openclip_model(model, model_config, out_dir, f"test/random-openclip-{size}-fixed")
    return out_dir


def register_openclip_config(folder: Path) -> str:
    """Register the model config in `folder` (an open_clip recipe's openclip/) with open_clip; its name.

    A config may name its Hugging Face text model and tokenizer by folders beside it (no hub here): those
    names become absolute paths in the registered copy, so open_clip finds them from any working directory.
    """
    open_clip = import_open_clip()
    config_path = next(p for p in folder.glob("*.json") if p.name != PREPROCESS_FILE)
    config = json.loads(config_path.read_text())
    text_cfg = config["text_cfg"]
    for key in ("hf_model_name", "hf_tokenizer_name"):
        if key in text_cfg and (folder / text_cfg[key]).is_dir():
            text_cfg[key] = str(folder / text_cfg[key])
    if "timm_model_name" in config["vision_cfg"]:
        from shared.dev.catalogue_models import register_tiny_siglip_vit

        register_tiny_siglip_vit()
    with tempfile.TemporaryDirectory() as scratch:
        save_json(config, Path(scratch) / config_path.name)
        open_clip.add_model_config(Path(scratch) / config_path.name)
    return config_path.stem


def create_openclip_model(folder: Path) -> Any:
    """The model of `folder`'s config with seeded random weights (saved there), as Immich's exporter
    creates it (`create_model(name, pretrained, jit=False)`, eval, no gradients)."""
    import torch
    from safetensors.torch import save_file

    open_clip = import_open_clip()
    name = register_openclip_config(folder)
    preprocess = _read_preprocess(folder)
    torch.manual_seed(SEED)
    torch.backends.mha.set_fastpath_enabled(False)
    # pretrained_text=False: a Hugging Face text tower starts random too, from its config alone.
    model = open_clip.create_model(name, pretrained=None, jit=False, pretrained_text=False,
                                   force_preprocess_cfg=preprocess or None)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    save_file(model.state_dict(), str(folder / "weights.safetensors"))
    return model


def export_openclip_model(model: Any, config: dict[str, Any], out_dir: Path, model_id: str) -> None:
    """What Immich's exporter writes besides the tokenizer: visual/preprocess_cfg.json, config.json (the
    open_clip config, plus our test markers) and both towers, `encode_*(normalize=True)`, batch fixed at 1."""
    import torch

    open_clip = import_open_clip()
    save_json(open_clip.get_model_preprocess_cfg(model), out_dir / "visual" / "preprocess_cfg.json")
    save_json({**config, "model_id": model_id, "test_model": True}, out_dir / "config.json")
    image_size = config["vision_cfg"]["image_size"]
    context_length = config["text_cfg"].get("context_length", 77)
    model.forward = lambda image: model.encode_image(image, normalize=True)
    export_fixed(model, {"image": torch.randn(1, 3, image_size, image_size)}, out_dir / "visual" / "model.onnx")
    model.forward = lambda text: model.encode_text(text, normalize=True)
    export_fixed(model, {"text": torch.ones(1, context_length, dtype=torch.int32)},
                  out_dir / "textual" / "model.onnx")


def _read_preprocess(folder: Path) -> dict[str, Any]:
    """The preprocessing a pretrained tag would bring (SigLIP's), kept beside the config; {} for the default."""
    path = folder / PREPROCESS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def export_fixed(model: Any, inputs: dict[str, Any], path: Path) -> None:
    """Immich's torch.onnx.export call: no dynamic_axes, so the batch dimension is fixed at 1.
    `inputs`: the example of each input, by the input's name, in the order `forward` takes them."""
    import warnings

    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # as Immich's exporter
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy TorchScript-based ONNX export"
        torch.onnx.export(
            model,
            tuple(inputs.values()),
            path.as_posix(),
            input_names=list(inputs),
            output_names=["embedding"],
            opset_version=19,
            dynamo=False,
        )


def openclip_reference(model_dir: Path) -> tuple[Any, str, Any, Any]:
    """(open_clip, model name, model, eval transform) from an open_clip recipe's openclip/ folder:
    the same weights the ONNX towers were exported from, loaded as open_clip itself would.
    `open_clip.get_tokenizer(name)` then gives the model's own tokenizer, with its `clean` setting."""
    open_clip = import_open_clip()
    folder = Path(model_dir) / "openclip"
    name = register_openclip_config(folder)
    preprocess = {f"image_{key}": value for key, value in _read_preprocess(folder).items()}
    model, _, transform = open_clip.create_model_and_transforms(
        name, pretrained=str(folder / "weights.safetensors"), **preprocess
    )
    return open_clip, name, model.eval(), transform


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build a random-weight test model in Immich's layout.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--recipe", choices=RECIPES, action="append",
                        help="transformers (default): dynamic batch, opset 17; immich: open_clip, Immich's exporter "
                        "(batch 1). Given more than once, each model goes to OUT_DIR/<recipe>.")
    args = parser.parse_args(argv)
    recipes = args.recipe or ["transformers"]
    for recipe in recipes:
        out = build(built_into(args.out_dir, recipe, len(recipes)), args.size, recipe)
        print(f"random-weight test model ({args.size}, {recipe}) written to {out} - its embeddings are meaningless")


if __name__ == "__main__":
    main()
