"""Query text preparation: what Immich's cleaning adds to a text query, per model family.

Every model collapses whitespace; SigLIP/SigLIP2 models canonicalize as open_clip does (ftfy, HTML entities,
punctuation, case); NLLB models get a FLORES-200 language prefix (shared/embedders/text.py). Timed on
`OnnxClipEmbedder.prepare_text`, the step before the tokenizer, and the one-off import of ftfy a SigLIP
deployment pays on its first query.

    python -m bench.bench_text [--quick]      # prints the Markdown section
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_embed import QUERIES
from shared.config import load_settings
from shared.embedders.onnx_clip import OnnxClipEmbedder

# As people type them: capitals, punctuation, phone keyboards' curly quotes, stray spaces.
TYPED = [*QUERIES, "Mum’s 60th birthday!!", "  “Eiffel Tower” at night ", "IMG_2041 & friends", "Tom & Jerry???",
         "zwei Katzen im Schnee", "café crème, naïve façade", "東京の夜景"]
MODES = {
    "every model: whitespace collapsed": {},
    "SigLIP, SigLIP2: open_clip canonicalize": {"tokenizer_kwargs": {"clean": "canonicalize"}},
    "NLLB: whitespace + language prefix": {"hf_tokenizer_name": "facebook/nllb-200-distilled-600M"},
}


def _per_query_us(model: OnnxClipEmbedder, rounds: int) -> tuple[float, float]:
    """Median and p95 of the mean time per query over rounds of TYPED, in microseconds."""
    for text in TYPED:  # imports (ftfy) and caches out of the timing
        model.prepare_text(text, "de")
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for text in TYPED:
            model.prepare_text(text, "de")
        samples.append((time.perf_counter() - started) / len(TYPED) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def _ftfy_import_ms(repeats: int) -> float:
    """Median time to import ftfy in a fresh interpreter (what the first canonicalized query pays)."""
    code = "import time; t = time.perf_counter(); import ftfy; print(time.perf_counter() - t)"
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
            for _ in range(repeats)]
    return statistics.median(runs) * 1000


def run(quick: bool = False) -> str:
    rounds = 50 if quick else 500
    rows = []
    with tempfile.TemporaryDirectory(prefix="ib-bench-text-") as tmp:
        for index, (label, text_cfg) in enumerate(MODES.items()):
            folder = Path(tmp) / str(index)
            folder.mkdir()
            (folder / "config.json").write_text(json.dumps({"embed_dim": 4, "text_cfg": text_cfg}))
            median, p95 = _per_query_us(OnnxClipEmbedder(folder, load_settings()), rounds)
            rows.append(f"| {label} | {median:.1f} | {p95:.1f} |")
    ftfy_ms = _ftfy_import_ms(3 if quick else 7)
    return "\n".join([
        "## Query text preparation (Immich's cleaning)",
        "",
        f"`OnnxClipEmbedder.prepare_text` on {len(TYPED)} typed queries (`bench/bench_text.py`), mean per query "
        f"over {rounds} rounds; the step before the tokenizer, no model involved.",
        "",
        "| model family: preparation | median µs/query | p95 µs/query |",
        "| --- | ---: | ---: |",
        *rows,
        "",
        f"Importing ftfy (once per process, on the first query of a SigLIP-style model): {ftfy_ms:.0f} ms.",
    ])


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
