"""Moving a collection to another model without downtime.

1. `begin`: the registry records the next model; `embedding_next` takes its dimension.
2. The move's own pass (`reembed`) writes the next model's vector beside the live one for every
   embedded row, through the ingest pipeline; meanwhile new uploads get both vectors from any
   deployment that holds both models (`Ingestor.writes_for`).
3. `switch`: one short transaction renames the columns and records the new model. Searches use the
   old model until then and the new one after; every process reads the registry per request or batch.

The pass is resumable: rows are claimed with a lease, and a run cut short by its deadline (the backfill
function's `reembed` flag) goes on where it stopped the next time. Each step's SQL is shared/store/moves.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from shared.embedders import Embedder
from shared.ingest.pipeline import Ingestor, IngestReport, ModelTargets, WorkItem
from shared.jobs import Deadline
from shared.store.catalog import CatalogError, Collection
from shared.store.moves import begin, build_next_index, claim, release, switch
from shared.store.queries import move_progress

log = logging.getLogger(__name__)

SWITCH_TRIES = 3  # passes over rows embedded by the old model meanwhile, before the switch forces


@dataclass
class ReembedSummary:
    collection: str
    model: str
    embedded: int = 0
    failed: int = 0
    switched: bool = False
    reset_to_pending: int = 0
    stopped_early: bool = False

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def reembed(ingestor: Ingestor, collection_name: str, new_embedder: Embedder, *,
            progress_callback: Callable[[int, int], None] | None = None,
            deadline: Deadline | None = None) -> ReembedSummary:
    """Move a collection to `new_embedder`'s model while searches keep using the old vectors.

    Rows that change while this runs are caught by the loop; any left at the last switch go back to
    `pending`, for a sweep with the new model. `deadline` stops the pass early; the next
    run resumes it.
    """
    catalog = ingestor.catalog
    collection = catalog.get_collection(collection_name)
    summary = ReembedSummary(collection.name, new_embedder.model_id)
    if collection.model_id == new_embedder.model_id and collection.dim == new_embedder.dim:
        summary.switched = True
        return summary
    begin(catalog, collection, new_embedder.model_id, new_embedder.dim)
    collection = catalog.get_collection(collection_name)
    writes = ModelTargets(live=None, next=new_embedder, thumbnails=False)  # thumbnails exist already
    batch = ingestor.settings.backfill_batch_size
    for attempt in range(SWITCH_TRIES + 1):
        while not (stopped := deadline is not None and deadline.seconds_left() <= 0) and (
            claimed := claim(catalog, collection, batch)
        ):
            _embed_claimed(ingestor, collection, writes, claimed, summary)
            if progress_callback is not None:
                progress_callback(*move_progress(catalog, collection))
        if stopped:
            summary.stopped_early = True
            return summary
        build_next_index(catalog, collection)
        done, total = move_progress(catalog, collection)
        if switch(catalog, collection, force=attempt == SWITCH_TRIES):
            summary.switched, summary.reset_to_pending = True, total - done
            break
    log.info("reembed %s: %s", collection.name, summary.as_dict())
    return summary


def _embed_claimed(ingestor: Ingestor, collection: Collection, writes: ModelTargets,
                   claimed: list[tuple[str, str | None]], summary: ReembedSummary) -> None:
    report = IngestReport()
    ingestor.embed_items([WorkItem(collection, key, etag, 0, "reembed") for key, etag in claimed], writes,
                         report, missing="skip")
    counts = report.summary()
    summary.embedded += counts["embedded"]
    summary.failed += counts["failed"]
    if report.errors and len(report.errors) == len(claimed):
        raise next(iter(report.errors.values()))  # all transient (database or storage down): stop here


def reembed_keys(ingestor: Ingestor, collection_name: str, keys: list[str], model_id: str) -> IngestReport:
    """A re-embedding work message: the next model's vector for those of `keys` this call claims (a key queued
    twice is embedded once); the move switches once the last row has it. Keys of a move that is over (or
    replaced by a move to another model) are skipped: the message is moot."""
    catalog = ingestor.catalog
    collection = catalog.get_collection(collection_name)
    report = IngestReport()
    if collection.next_model_id != model_id:
        for key in keys:
            report.add(collection.bucket, key, "reembed", "skipped", f"the collection is not moving to {model_id}")
        return report
    writes = ModelTargets(live=None, next=ingestor.models.get(model_id, collection.name), thumbnails=False)
    claimed = claim(catalog, collection, len(keys), keys=keys)
    ingestor.embed_items([WorkItem(collection, key, etag, 0, "reembed") for key, etag in claimed], writes,
                         report, missing="skip")
    failed = [key for _, key in report.errors]
    if failed:  # given back at once: the message's retry claims them again
        release(catalog, collection, failed)
    elif claimed:
        finish_if_done(ingestor, collection.name)
    return report


def finish_if_done(ingestor: Ingestor, collection_name: str) -> bool:
    """Build the next model's index and switch once every embedded row has its vector; rows embedded by
    the old model meanwhile are queued (or, with no queue, left for `reembed`)."""
    catalog = ingestor.catalog
    collection = catalog.get_collection(collection_name)
    if not collection.next_model_id:
        return True
    done, total = move_progress(catalog, collection)
    if done < total:
        return False
    build_next_index(catalog, collection)
    try:
        return switch(catalog, collection)
    except CatalogError:  # another worker switched a moment ago
        return True

