"""Build a random-weight test model in Immich's CLIP layout (no network, fixed seed).

    python -m shared.dev.test_model OUT_DIR [--size tiny|b32]

`ensure_test_model(size)` builds it once per checkout into .cache/test-models/ (the directory name
carries a hash of this file, so editing it rebuilds) for the tests, `make dev MODEL=test` and the
benchmarks.

Layout written (the same files Immich publishes for its models, so the loader has one code path):

    OUT_DIR/config.json                    open_clip-style config + "test_model": true + "model_id"
    OUT_DIR/visual/model.onnx              input "image" float32 [n,3,H,W] -> [n, embed_dim]
    OUT_DIR/visual/preprocess_cfg.json     size, mean, std, interpolation, resize_mode
    OUT_DIR/textual/model.onnx             input "text" int32 [n,77] -> [n, embed_dim]
    OUT_DIR/textual/tokenizer.json (+ tokenizer_config.json, special_tokens_map.json)
    OUT_DIR/hf/                            the transformers checkpoint + processor: the reference

`tiny` builds in a few seconds for tests; `b32` has ViT-B/32 shapes so benchmark figures carry over
to the real model. The weights are random: embeddings are meaningless, only the arithmetic is real.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

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
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "test-models"


def model_cache_path(size: str = "tiny") -> Path:
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return CACHE / f"{size}-{digest}"


def ensure_test_model(size: str = "tiny") -> Path:
    """Path of the built test model, building it first if needed (atomically: temp dir + rename)."""
    target = model_cache_path(size)
    if (target / "config.json").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=CACHE))
    try:
        # A child process: the caller never imports torch just to build the model.
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        result = subprocess.run([sys.executable, "-m", "shared.dev.test_model", str(tmp), "--size", size],
                                capture_output=True, text=True, env=env, cwd=CACHE.parents[1])
        if result.returncode != 0:
            raise RuntimeError(f"building the {size} test model failed:\n{result.stderr[-4000:]}")
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").exists():  # lost a race is fine; anything else is not
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


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


def build(out_dir: Path, size: str = "tiny") -> Path:
    """Write the test model into out_dir (created or overwritten) and return it."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    if size not in SIZES:
        raise SystemExit(f"unknown size {size!r}: choose one of {', '.join(SIZES)}")
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
        _export(
            Textual(),
            torch.zeros(1, CONTEXT_LENGTH, dtype=torch.int32),
            out_dir / "textual" / "model.onnx",
            "text",
        )

    tokenizer.save_pretrained(out_dir / "textual")
    # Keep only what Immich ships beside the textual model.
    for extra in ("vocab.json", "merges.txt"):
        (out_dir / "textual" / extra).unlink(missing_ok=True)
    (out_dir / "visual" / "preprocess_cfg.json").write_text(
        json.dumps(
            {
                "size": [image_size, image_size],
                "mode": "RGB",
                "mean": MEAN,
                "std": STD,
                "interpolation": "bicubic",
                "resize_mode": "shortest",
                "fill_color": 0,
            },
            indent=2,
        )
    )
    (out_dir / "config.json").write_text(
        json.dumps(
            {
                "model_id": f"test/random-clip-{size}",
                "test_model": True,
                "description": "Random-weight test model: embeddings are meaningless.",
                "embed_dim": shape["embed_dim"],
                "vision_cfg": {
                    "image_size": image_size,
                    "layers": shape["vision"]["num_hidden_layers"],
                    "width": shape["vision"]["hidden_size"],
                    "patch_size": shape["vision"]["patch_size"],
                },
                "text_cfg": {
                    "context_length": CONTEXT_LENGTH,
                    "vocab_size": VOCAB_SIZE,
                    "width": shape["text"]["hidden_size"],
                    "heads": shape["text"]["num_attention_heads"],
                    "layers": shape["text"]["num_hidden_layers"],
                },
            },
            indent=2,
        )
    )
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build a random-weight test model in Immich's layout.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    args = parser.parse_args(argv)
    out = build(args.out_dir, args.size)
    print(f"random-weight test model ({args.size}) written to {out} - its embeddings are meaningless")


if __name__ == "__main__":
    main()
