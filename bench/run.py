"""`make bench`: run every benchmark in one process, one after another, and write BENCHMARKS.md.

Sections come from bench/bench_embed.py (model throughput), bench/bench_ingest.py (end to end),
bench/bench_bulk.py (catch-up of an existing bucket through the queue, the AWS table),
bench/bench_search.py (vector search and HTTP), bench/bench_tradeoff.py (the HNSW settings),
bench/bench_ocr.py (the OCR stage),
bench/bench_duplicates.py (duplicate groups), bench/bench_reliability.py (input checks, pool recovery,
the local bucket copy), bench/bench_vectors.py (vector values to and from PostgreSQL)
and bench/bench_places.py (place lookups, /api/places and /api/discover).
`python -m bench.run --quick` is a fast smoke run that prints instead of writing the file;
`python -m bench.run --only bench_search` re-runs one section and puts it in place of its old figures.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

SECTIONS = ["bench.bench_embed", "bench.bench_ingest", "bench.bench_bulk", "bench.bench_search", "bench.bench_tradeoff",
            "bench.bench_ocr", "bench.bench_text", "bench.bench_duplicates", "bench.bench_reliability",
            "bench.bench_vectors", "bench.bench_places", "bench.bench_faces"]
OUTPUT = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
RERUN_SECTIONS = ", on the same machine: "  # a re-run's note, before the sections it names


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    return f"{os.cpu_count()} cores ({cpu}){memory}, {system}"


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes; print, do not write BENCHMARKS.md")
    parser.add_argument("--only", action="append", help="run only these modules (e.g. bench_search)")
    args = parser.parse_args()
    started = time.perf_counter()
    parts = []
    for name in SECTIONS:
        if args.only and name.rsplit(".", 1)[1] not in args.only:
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        module = importlib.import_module(name)
        section_start = time.perf_counter()
        parts.append(module.run(quick=args.quick).strip())
        print(f"   done in {time.perf_counter() - section_start:.0f} s", file=sys.stderr, flush=True)
    header = (
        "# Benchmarks\n\n"
        f"Written by `make bench` (`python -m bench.run`) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"commit {git_revision()}, in {time.perf_counter() - started:.0f} s.\n\n"
        f"Machine: {machine()}. Everything below ran in one process, one section after another, "
        "against real parts on 127.0.0.1 (embedded PostgreSQL 18 + pgvector 0.8.5, moto S3/SQS).\n"
        "Figures for the model are for the repo's random-weight test model with ViT-B/32 shapes, "
        "so compute cost carries over to `immich-app/ViT-B-32__openai`; its results are not meaningful.\n"
    )
    text = header + "\n" + "\n\n".join(parts) + "\n"
    if args.quick:
        print(text)
        return 0
    if args.only and OUTPUT.exists():  # the other sections stay as their last full run wrote them
        scale = f" with SCALE={os.environ['SCALE']}" if os.environ.get("SCALE") else ""
        text = merged(OUTPUT.read_text(), parts, f"Re-run by `python -m bench.run --only {' --only '.join(args.only)}`"
                      f"{scale} on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {git_revision()}{RERUN_SECTIONS}"
                      f"{'; '.join(part.splitlines()[0].removeprefix('## ') for part in parts)}.")
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


def merged(previous: str, parts: list[str], note: str) -> str:
    """`previous` (BENCHMARKS.md) with each of `parts` in place of the section of the same heading (a new one at the
    end), and `note` (what was re-run, when) after its header, in place of an earlier note on the same sections."""
    header, *sections = previous.split("\n## ")
    by_heading = {"## " + section.splitlines()[0]: "## " + section.strip() for section in sections}
    for part in parts:
        by_heading[part.splitlines()[0]] = part
    rerun = note.partition(RERUN_SECTIONS)[2]
    kept = [paragraph for paragraph in header.rstrip().split("\n\n")
            if not (paragraph.startswith("Re-run by") and paragraph.endswith(rerun))]
    return "\n\n".join([*kept, note, *by_heading.values()]) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
