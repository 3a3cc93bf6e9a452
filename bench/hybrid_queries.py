"""Realistic photo keys, and the keyword and hybrid measurements bench_search.py runs on its tables.

Keys look like a camera roll synced over twelve years: dated folders, some named after what happened
that day (`photos/2019/2019-07-15 Beach Trip/IMG_2041.JPG`), camera file names whose counters wrap
(Canon `IMG_0001`…`IMG_9999`, Sony `DSC00001`…), phone names with the time in them (`PXL_20210614_101512345`).
The query mix is what people type into a name search: a file name, the start of one, an event, a day, a year.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from shared.config import DEFAULT_HNSW_EF_SEARCH
from shared.search import hybrid
from shared.search.query_language import parse
from shared.store.catalog import Catalog, Collection

START = datetime(2013, 1, 1, tzinfo=UTC)
YEARS = 12
EVENTS = ["Beach Trip", "Birthday", "Große Mauer", "Hiking", "Christmas", "Wedding", "Paris", "Garden",
          "Tax return", "School play", "Ski week", "Zoo", "Graduation", "Road trip", "Concert", "Museum",
          "Camping", "Lake", "Football", "New Year", "Easter", "Barbecue", "Kyoto", "Café Müller"]
# Query kinds and their share of the mix.
KINDS = {"file name": 0.30, "name prefix": 0.15, "event": 0.25, "day": 0.20, "year": 0.10}


def photo_keys(n: int) -> tuple[list[str], list[datetime]]:
    """n keys in time order over YEARS years, and when each photo was taken."""
    days = YEARS * 365
    counters = {"IMG": 0, "DSC": 0}
    keys, times = [], []
    for i in range(n):
        day = i * days // n
        moment = START + timedelta(days=day, seconds=32_400 + (i * 7_919) % 43_200, milliseconds=i % 1000)
        event = f" {EVENTS[(day * 7) % len(EVENTS)]}" if day % 5 == 0 else ""
        if moment.year >= 2019 and i % 10 < 7:
            name = f"PXL_{moment:%Y%m%d_%H%M%S}{moment.microsecond // 1000:03d}.jpg"
        elif i % 5 < 3:
            counters["IMG"] += 1
            name = f"IMG_{counters['IMG'] % 10_000:04d}.JPG"
        else:
            counters["DSC"] += 1
            name = f"DSC{counters['DSC'] % 100_000:05d}.JPG"
        keys.append(f"photos/{moment:%Y}/{moment:%Y-%m-%d}{event}/{name}")
        times.append(moment)
    return keys, times


def word_queries(keys: list[str], count: int, *, seed: int = 3) -> list[tuple[str, str]]:
    """(kind, q) pairs drawn from the keys, in the KINDS mix."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(list(KINDS), size=count, p=list(KINDS.values()))
    found: list[tuple[str, str]] = []
    while len(found) < count:
        kind = str(kinds[len(found)])
        folder, _, file_name = keys[int(rng.integers(len(keys)))].rpartition("/")
        stem = file_name.rsplit(".", 1)[0]
        day, _, event = folder.rpartition("/")[2].partition(" ")
        text = {"file name": stem, "name prefix": stem[:-1], "event": event.replace("ß", "ss").lower(),
                "day": day, "year": day[:4]}[kind]
        if text:  # an event only from a folder that has one
            found.append((kind, text))
    return found


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def measure(catalog: Catalog, coll: Collection, mix: list[tuple[str, str]], vectors: np.ndarray, *,
            mode: hybrid.Mode, sort: hybrid.Sort = "relevance", floor: float = 0.2) -> dict[str, object]:
    """Server-side time of a first page of 30 as the route runs it, text encoding excepted: the registry
    read and `hybrid.search` (the newest row id, both lists, fusion, cutoff, the page's rows)."""
    samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
    results = []
    for rounds in (1, 2):  # the first round warms the caches and is not counted
        for (kind, text), vector in zip(mix, vectors, strict=True):
            plan = hybrid.plan(parse(text), mode)
            started = time.perf_counter()
            current = catalog.get_collection(coll.name)
            # A first page (no bound yet), with the server's default ef_search.
            request = hybrid.SearchRequest(sort=sort, floor=floor, ef_search=DEFAULT_HNSW_EF_SEARCH)
            page = hybrid.search(catalog, current, plan, vector if plan.needs_vector else None, request)
            if rounds == 2:
                samples[kind].append((time.perf_counter() - started) * 1000)
                results.append(len(page.rows))
    every = [sample for kind_samples in samples.values() for sample in kind_samples]
    return {"all": percentiles(every), "kinds": {kind: percentiles(s) for kind, s in samples.items() if s},
            "found": float(np.mean([count > 0 for count in results]))}
