"""Work messages (shared/ingest/work.py): the bodies the backfill's plan, model moves and the embed function
send, read back exactly, malformed ones refused with the reason, and the embed trigger letting in exactly the
jobs the embed function does."""

from __future__ import annotations

import json

import pytest

from shared.ingest import work
from shared.ingest.event_filter import WORK_MESSAGES, passes, trigger_filter


@pytest.mark.parametrize("job", work.JOBS)
def test_every_job_reads_back_as_it_was_sent(job: str) -> None:
    model = "immich-app/ViT-B-32__openai" if job == "reembed" else None
    message = work.WorkMessage(job, "photos", ("a.jpg", "dir/b c.png"), model)  # type: ignore[arg-type]
    assert work.is_work(message.body()) and work.parse(message.body()) == message


@pytest.mark.parametrize(("body", "reason"), [
    ("not json", "not JSON"),
    ('{"other": 1}', "no 'image_browser' object"),
    ('{"image_browser": {"job": "paint", "collection": "photos", "keys": []}}', "job must be one of"),
    ('{"image_browser": {"job": "embed", "collection": "", "keys": ["a.jpg"]}}', "collection must be"),
    ('{"image_browser": {"job": "embed", "collection": "photos", "keys": ["a.jpg", 3]}}', "keys must be"),
    ('{"image_browser": {"job": "reembed", "collection": "photos", "keys": ["a.jpg"]}}', "names its target model"),
])
def test_a_malformed_message_is_refused_with_the_reason(body: str, reason: str) -> None:
    with pytest.raises(work.BadWorkMessage, match=reason):
        work.parse(body)


def test_an_s3_event_is_not_a_work_message() -> None:
    s3_event = json.dumps({"Records": [{"eventSource": "aws:s3", "s3": {"object": {"key": "image_browser.jpg"}}}]})
    assert not work.is_work(s3_event)


def test_keys_are_chunked_in_order_without_losing_one() -> None:
    keys = [f"k{i}.jpg" for i in range(53)]
    messages = list(work.chunks("fill", "photos", keys))
    assert [len(m.keys) for m in messages] == [25, 25, 3]
    assert [key for m in messages for key in m.keys] == keys and {m.job for m in messages} == {"fill"}


def test_the_embed_trigger_lets_in_exactly_the_jobs_the_embed_function_does() -> None:
    assert WORK_MESSAGES["body"]["image_browser"]["job"] == list(work.EMBED_QUEUE_JOBS)
    for job in work.JOBS:
        body = work.WorkMessage(job, "photos", ("a.jpg",), "m" if job == "reembed" else None).body()  # type: ignore[arg-type]
        assert passes(trigger_filter(), body) == (job in work.EMBED_QUEUE_JOBS), job
