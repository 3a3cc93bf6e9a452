"""`image-browser`: sync a folder to the bucket, run the backfill, show status, move to another model.

    image-browser sync DIR --collection NAME [--prefix P] [--embed]
    image-browser backfill --collection NAME
    image-browser status [--collection NAME]
    image-browser reembed --collection NAME --model SPEC
    image-browser ocr --collection NAME
    image-browser faces --collection NAME [--regroup | --forget]
    image-browser smoke --api-url URL [--bucket NAME]     (after a deploy: upload, search, delete, timed)

The collection is the bucket's name. Settings come from IB_* variables (docs/configuration.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from shared.config import ConfigError, get_settings, use_local_stack

SYNC_CONCURRENCY = 8


@dataclass
class SyncSummary:
    uploaded: int = 0
    bytes: int = 0
    existing: int = 0  # already in the bucket
    not_images: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.uploaded / self.seconds if self.seconds else 0.0
        return (f"uploaded {self.uploaded} ({self.bytes / 1e6:.1f} MB, {rate:.1f}/s), "
                f"{self.existing} already in the bucket, {self.not_images} not images, {len(self.failed)} failed")


def local_files(root: Path, prefix: str = "") -> list[tuple[Path, str]]:
    """(path, key) of every file under `root`, keys with '/' separators, hidden files and folders skipped."""
    found: list[tuple[Path, str]] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            found.append((path, prefix + relative.as_posix()))
    return found


def sync(directory: Path, bucket: str, *, prefix: str = "", concurrency: int = SYNC_CONCURRENCY,
         progress: bool = True) -> SyncSummary:
    """Upload the folder's images that the bucket does not hold yet (events or a sweep embed them)."""
    from tqdm import tqdm

    from shared import runtime
    from shared.images import content_type_for, is_image_key

    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory: give the folder of images to upload")
    storage = runtime.storage()
    summary = SyncSummary()
    files = [(path, key) for path, key in local_files(directory, prefix) if is_image_key(key)]
    summary.not_images = len(local_files(directory, prefix)) - len(files)
    existing = {info.key for info in storage.list(bucket, prefix)}
    todo = [(path, key) for path, key in files if key not in existing]
    summary.existing = len(files) - len(todo)
    started = time.monotonic()
    lock = threading.Lock()

    def upload(path: Path, key: str) -> int:
        data = path.read_bytes()
        storage.put(bucket, key, data, content_type_for(key) or "application/octet-stream")
        return len(data)

    with ThreadPoolExecutor(max_workers=concurrency) as pool, tqdm(
        total=len(todo), unit="img", desc=f"sync to {bucket}", disable=not progress
    ) as bar:
        futures = {pool.submit(upload, path, key): key for path, key in todo}
        for future in as_completed(futures):
            try:
                size = future.result()
            except Exception as exc:  # one bad file must not stop the rest; listed at the end
                with lock:
                    summary.failed.append(f"{futures[future]}: {exc}")
            else:
                with lock:
                    summary.uploaded += 1
                    summary.bytes += size
            bar.update(1)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def _cmd_sync(args: argparse.Namespace) -> int:
    summary = sync(Path(args.directory), args.collection, prefix=args.prefix, concurrency=args.concurrency,
                   progress=not args.quiet)
    print(summary.line())
    for failure in summary.failed[:20]:
        print(f"  failed: {failure}", file=sys.stderr)
    if args.embed:
        return _run_backfill(args.collection) or (1 if summary.failed else 0)
    return 1 if summary.failed else 0


def _run_backfill(collection: str, *, follow: bool = False) -> int:
    from shared import runtime
    from shared.ingest.backfill import plan, sweep

    queue_url = get_settings().work_queue_url
    if not queue_url:  # no queue (a database and a bucket only): the work is done in this process
        summary = sweep(runtime.ingestor(), collection)
        print(f"embedded {summary.embedded}, failed {summary.failed}, removed {summary.removed}, "
              f"added from the listing {summary.added}, remaining {summary.remaining} ({summary.seconds:.1f} s)")
        for error in summary.errors:
            print(f"  retry later: {error}", file=sys.stderr)
        return 1 if summary.retry or summary.errors else 0
    planned = plan(runtime.ingestor(), collection, queue_url=queue_url)
    print(f"listed {planned.listed}, added {planned.added}, removed {planned.removed}, queued {planned.queued} "
          f"to embed, {planned.queued_ocr} to read and {planned.queued_faces} for faces ({planned.seconds:.1f} s)"
          + ("" if planned.listing_done else "; the listing goes on at the next run"))
    for error in planned.errors:
        print(f"  retry later: {error}", file=sys.stderr)
    if follow:
        follow_backlog(collection)
    return 1 if planned.errors else 0


def follow_backlog(collection: str, *, every: float = 1.0) -> None:
    """A progress bar of the collection's backlog until it is empty."""
    from tqdm import tqdm

    from shared import runtime
    from shared.store import plans

    catalog = runtime.catalog()
    coll = catalog.get_collection(collection)
    backlog = plans.backlog(catalog, coll, max_attempts=get_settings().max_attempts)
    if backlog is None:
        print("nothing waits to be embedded")
        return
    with tqdm(total=backlog["queued"], unit="image", desc=f"embedding {collection}") as bar:
        while backlog is not None:
            bar.update(backlog["done"] - bar.n)
            time.sleep(every)
            backlog = plans.backlog(catalog, coll, max_attempts=get_settings().max_attempts)
        bar.update(bar.total - bar.n)


def _cmd_backfill(args: argparse.Namespace) -> int:
    return _run_backfill(args.collection, follow=args.follow)


def _cmd_status(args: argparse.Namespace) -> int:
    from shared import runtime
    from shared.store import queries

    catalog = runtime.catalog()
    collections = [catalog.get_collection(args.collection)] if args.collection else catalog.list_collections()
    report = []
    for collection in collections:
        stats = queries.stats(catalog, collection)
        stats["remaining"] = catalog.count_todo(collection, max_attempts=get_settings().max_attempts)
        report.append(stats)
    print(json.dumps(report if not args.collection else report[0], indent=2))
    return 0


def _cmd_reembed(args: argparse.Namespace) -> int:
    from shared import runtime
    from shared.embedders import load
    from shared.ingest.model_move import reembed

    ingestor = runtime.ingestor()
    new = ingestor.models.find(args.model) or load(args.model, get_settings())

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} re-embedded", end="", file=sys.stderr, flush=True)

    summary = reembed(ingestor, args.collection, new, progress_callback=None if args.quiet else progress)
    print(file=sys.stderr)
    print(f"{summary.collection}: {summary.embedded} re-embedded with {summary.model}, {summary.failed} failed, "
          f"switched: {summary.switched}, set back to pending: {summary.reset_to_pending}")
    if summary.switched:
        print(f"Searches and uploads of {summary.collection} now use {summary.model} in every deployment that "
              "holds it (IB_MODEL); the old model can leave IB_MODEL at the next deploy.")
    return 0 if summary.switched else 1


def _cmd_ocr(args: argparse.Namespace) -> int:
    from shared import runtime

    summary = runtime.ocr_stage().run(args.collection)
    if summary.disabled:
        print("OCR is off (IB_OCR=false): set IB_OCR=true to read the words in pictures", file=sys.stderr)
        return 1
    print(f"{summary.collection}: read {summary.read} ({summary.with_text} with text), failed {summary.failed}, "
          f"still waiting {summary.remaining} ({summary.seconds:.1f} s)")
    for error in summary.errors:
        print(f"  {error}", file=sys.stderr)
    return 1 if summary.retry else 0


def _cmd_faces(args: argparse.Namespace) -> int:
    from shared import runtime
    from shared.store import faces

    catalog = runtime.catalog()
    collection = catalog.get_collection(args.collection)
    if args.forget:
        deleted = faces.forget(catalog, collection)
        print(f"{collection.name}: deleted {deleted} faces and every person (names included)"
              + ("; IB_FACES is on, so the faces stage finds them again: set IB_FACES=false to stop it"
                 if get_settings().faces else ""))
        return 0
    if args.regroup:
        grouped = faces.regroup(catalog, collection)
        print(f"{collection.name}: {grouped.assigned} faces in {len(grouped.people)} people "
              f"({grouped.new_people} new), {grouped.waiting} waiting; names kept")
        return 0
    summary = runtime.faces_stage().run(collection.name)
    if summary.disabled:
        print("Faces are off (IB_FACES=false): set IB_FACES=true to find faces", file=sys.stderr)
        return 1
    print(f"{summary.collection}: read {summary.read} ({summary.with_faces} with faces, {summary.faces} faces), "
          f"{summary.grouped} grouped, {summary.new_people} new people, failed {summary.failed}, "
          f"still waiting {summary.remaining} ({summary.seconds:.1f} s)")
    for error in summary.errors:
        print(f"  {error}", file=sys.stderr)
    return 1 if summary.retry else 0


def _cmd_smoke(args: argparse.Namespace) -> int:
    from shared.cli.smoke import SmokeFailed, SmokeRun, smoke
    from shared.storage import Storage

    settings = get_settings()
    if args.endpoint_url:
        settings = settings.model_copy(update={"s3_endpoint_url": args.endpoint_url})
    bucket = args.bucket or settings.bucket
    run = SmokeRun(api_url=args.api_url, bucket=bucket, collection=args.smoke_collection or bucket,
                   storage=Storage(settings), api_key=args.api_key or settings.api_key, prefix=args.prefix,
                   timeout=args.timeout)
    print(f"Smoke test of {run.api_url} with s3://{bucket}/{run.key}")
    try:
        smoke(run)
    except SmokeFailed as exc:
        print(f"image-browser smoke: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"passed in {sum(run.timings.values()):.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="image-browser", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sync", help="upload a folder's images to the bucket (skips keys already there)")
    p.add_argument("directory")
    p.add_argument("--collection", default=None, help="bucket/collection (default: IB_BUCKET)")
    p.add_argument("--prefix", default="", help="key prefix for the uploads, e.g. 'trips/2024/'")
    p.add_argument("--concurrency", type=int, default=SYNC_CONCURRENCY, help="parallel uploads (default 8)")
    p.add_argument("--embed", action="store_true", help="embed in this process (when no events are wired)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_sync)

    p = sub.add_parser("backfill", help="reconcile with the bucket and embed what is missing (queued, with a queue)")
    p.add_argument("--collection", default=None, help="bucket/collection (default: IB_BUCKET)")
    p.add_argument("--follow", action="store_true", help="show a progress bar until the queued work is done")
    p.set_defaults(func=_cmd_backfill)

    p = sub.add_parser("status", help="counts per status, bytes, last update (JSON)")
    p.add_argument("--collection", default=None, help="one collection (default: all)")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("reembed", help="move a collection to another model without downtime")
    p.add_argument("--collection", default=None, help="bucket/collection (default: IB_BUCKET)")
    p.add_argument("--model", required=True,
                   help="model id held by IB_MODEL, or a spec: directory, Hugging Face repo or replicate:…")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=_cmd_reembed)

    p = sub.add_parser("ocr", help="read the words in embedded pictures that have none yet (OCR)")
    p.add_argument("--collection", default=None, help="bucket/collection (default: IB_BUCKET)")
    p.set_defaults(func=_cmd_ocr)

    p = sub.add_parser("faces", help="find faces in embedded pictures that have none yet; re-group or forget them")
    p.add_argument("--collection", default=None, help="bucket/collection (default: IB_BUCKET)")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--regroup", action="store_true", help="group every face again (names are kept)")
    action.add_argument("--forget", action="store_true", help="delete every face and person of the collection")
    p.set_defaults(func=_cmd_faces)

    p = sub.add_parser("smoke", help="after a deploy: upload a test image, wait until searchable, delete it (timed)")
    p.add_argument("--api-url", required=True, help="the API (HttpApiUrl) or the gallery (GalleryUrl)")
    p.add_argument("--bucket", default=None, help="the watched bucket (default: IB_BUCKET)")
    p.add_argument("--collection", dest="smoke_collection", default=None, help="collection (default: the bucket)")
    p.add_argument("--prefix", default="", help="key prefix of the test image (R2: the notification rule's)")
    p.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint (default: IB_S3_ENDPOINT_URL; AWS)")
    p.add_argument("--api-key", default=None, help="the API key (default: IB_API_KEY)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for each step (default 180)")
    p.set_defaults(func=_cmd_smoke)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from shared.embedders import EmbedderError, EmbedderTemporaryError
    from shared.ocr.reader import OcrUnavailable
    from shared.people.faces import FacesUnavailable
    from shared.storage import StorageError, StorageUnavailable
    from shared.store.catalog import CatalogError
    from shared.store.db import DatabaseUnavailable

    use_local_stack()  # a running `make dev` fills in what the environment leaves unset
    try:
        if getattr(args, "collection", None) is None and args.command != "status":
            args.collection = get_settings().bucket
        return int(args.func(args))
    except (ConfigError, CatalogError, StorageError, StorageUnavailable, DatabaseUnavailable, EmbedderError,
            EmbedderTemporaryError, OcrUnavailable, FacesUnavailable, FileNotFoundError) as exc:
        print(f"image-browser {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
