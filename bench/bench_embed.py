"""Embedding throughput on this CPU: fp32 and int8, batch 1 and 16, raw ONNX beside the whole pipeline.

"Pipeline" = JPEG bytes -> decode (shared.images.decode, with JPEG draft scaling) -> preprocess -> ONNX
for images, and tokenize -> ONNX for texts. Runs on the random-weight test model with ViT-B/32 shapes
(built on first use), so the figures carry over to immich-app/ViT-B-32__openai.

    python -m bench.bench_embed          # prints the Markdown section
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import onnxruntime
from PIL import Image

from shared.config import load_settings
from shared.embedders.onnx_clip import OnnxClipEmbedder
from shared.images import decode
from tests.fixtures.model import ensure_test_model, synthetic_photo

PHOTO_SIZES = [(1600, 1200), (1200, 1600), (1024, 768), (2000, 1125)]
QUERIES = [
    "a dog running on the beach",
    "birthday cake with candles",
    "snowy mountains at sunrise",
    "red car parked in front of a house",
    "two people hiking in the forest",
    "a cat sleeping on a sofa",
    "city skyline at night",
    "plate of pasta",
    "children playing football",
    "old black and white portrait",
]


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.1f}"


def _timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Best of `repeats` runs: the other processes on a shared 2-core machine only ever add time."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _chunks(items: Sequence, size: int) -> list[Sequence]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _decode(data: bytes) -> Image.Image:
    return decode(data, max_pixels=10**8, max_bytes=10**8, min_side=224)


def _decode_all(photos: list[bytes]) -> list[Image.Image]:
    return [_decode(data) for data in photos]


def _row(
    model: OnnxClipEmbedder, precision: str, batch: int, photos: list[bytes], texts: list[str], repeats: int
) -> str:
    images = [_decode(data) for data in photos]
    pixels = [model.preprocess(chunk) for chunk in _chunks(images, batch)]
    raw_images = _timed(lambda: [model.run_visual(p) for p in pixels], repeats)
    whole_images = _timed(
        lambda: [model.embed_images([_decode(d) for d in chunk]) for chunk in _chunks(photos, batch)], repeats
    )
    feeds = [model.tokenize(chunk) for chunk in _chunks(texts, batch)]
    raw_texts = _timed(lambda: [model.run_textual(f) for f in feeds], repeats)
    whole_texts = _timed(lambda: [model.embed_texts(chunk) for chunk in _chunks(texts, batch)], repeats)
    return (
        f"| {precision} | {batch} | {_rate(len(photos), raw_images)} | {_rate(len(photos), whole_images)} "
        f"| {_rate(len(texts), raw_texts)} | {_rate(len(texts), whole_texts)} |"
    )


def run(quick: bool = False) -> str:
    model_dir = ensure_test_model("b32")
    n_images = 16 if quick else 64
    n_texts = 32 if quick else 128
    n_queries = 10 if quick else 50
    photos = []
    for i in range(n_images):
        buffer = io.BytesIO()
        synthetic_photo(*PHOTO_SIZES[i % len(PHOTO_SIZES)], seed=i).save(buffer, "JPEG", quality=90)
        photos.append(buffer.getvalue())
    texts = [f"{QUERIES[i % len(QUERIES)]}, picture number {i}" for i in range(n_texts)]
    queries = [f"{QUERIES[i % len(QUERIES)]} {i}" for i in range(n_queries)]

    repeats = 1 if quick else 3
    rows: list[str] = []
    latency: list[str] = []
    loads: list[str] = []
    vectors: dict[str, dict[str, np.ndarray]] = {}
    decode_seconds = 0.0
    for precision in ("fp32", "int8"):
        # One call at a time on all cores; ingestion instead runs one single-threaded call per core side
        # by side (IB_EMBED_PARALLEL), measured in its own section.
        settings = load_settings(model_quantized=precision == "int8", embed_batch_size=16, embed_parallel=1)
        if precision == "int8":  # build the int8 files outside the timings (cached beside the model)
            from shared.embedders.quantize import quantized_path

            for tower in ("visual", "textual"):
                quantized_path(model_dir / tower / "model.onnx", settings.model_cache_dir)
        model = OnnxClipEmbedder(model_dir, settings)
        load_times = {tower: _timed(partial(model.load_tower, tower)) for tower in ("textual", "visual")}
        loads.append(f"{precision}: textual {load_times['textual']:.2f} s, visual {load_times['visual']:.2f} s")
        images = [_decode(data) for data in photos]
        decode_seconds = _timed(partial(_decode_all, photos), repeats)
        model.embed_images(images[:2])  # warm-up
        model.embed_texts(texts[:2])
        rows.extend(_row(model, precision, batch, photos, texts, repeats) for batch in (1, 16))
        times = []
        for query in queries:
            start = time.perf_counter()
            model.embed_text(query)
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        latency.append(f"| {precision} | {statistics.median(times):.1f} | {p95:.1f} |")
        vectors[precision] = {"images": model.embed_images(images), "texts": model.embed_texts(texts)}

    # Immich's current exporter fixes the batch at 1: a batch of 16 becomes 16 single calls.
    fixed = OnnxClipEmbedder(ensure_test_model("b32", "immich"), load_settings(embed_batch_size=16, embed_parallel=1))
    fixed.embed_images([_decode(photos[0])])  # warm-up (loads the towers)
    fixed.embed_texts(texts[:1])
    rows.append(_row(fixed, "fp32, export with batch fixed at 1", 16, photos, texts, repeats))

    def agreement(kind: str) -> float:
        return float(np.mean(np.sum(vectors["fp32"][kind] * vectors["int8"][kind], axis=1)))

    threads = "one call at a time, each on all cores (IB_EMBED_PARALLEL=1)"
    return "\n".join(
        [
            "## Embedding (bench/bench_embed.py)",
            "",
            "Model: the repo's random-weight test model `test/random-clip-b32`, built by "
            "`shared/dev/model_builder.py --size b32` with the layer sizes of `immich-app/ViT-B-32__openai` "
            "(ViT-B/32 visual at 224 px, 12-layer 512-wide text tower, 512-d output). Compute cost carries "
            "over; its vectors are meaningless. The last row is the same shapes exported as Immich's current "
            "exporter does (open_clip, opset 19, batch fixed at 1: `--recipe immich`), run 16 at a time.",
            f"ONNX Runtime {onnxruntime.__version__}, CPU execution provider, threads: {threads}. "
            f"{n_images} synthetic JPEG photos ({', '.join(f'{w}x{h}' for w, h in PHOTO_SIZES)}), "
            f'{n_texts} texts. "ONNX only" times the model call on ready inputs; "pipeline" adds JPEG decode '
            "(draft-scaled to >= 224 px), preprocessing from preprocess_cfg.json, tokenising and normalising.",
            "",
            "| Precision | Batch | Images/s ONNX only | Images/s pipeline | Texts/s ONNX only | Texts/s pipeline |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"Decoding alone: {decode_seconds / n_images * 1000:.1f} ms per photo (draft-scaled JPEG).",
            "",
            "Single text query (the search path, tokenize + textual model, one at a time):",
            "",
            "| Precision | p50 ms | p95 ms |",
            "|---|---:|---:|",
            *latency,
            "",
            f"int8 vs fp32 agreement (mean cosine, same inputs): images {agreement('images'):.4f}, "
            f"texts {agreement('texts'):.4f} (random weights; trained weights usually agree at least as well).",
            f"Tower load time: {'; '.join(loads)}.",
        ]
    )


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv[1:]))
