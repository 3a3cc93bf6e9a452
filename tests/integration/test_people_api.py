"""People through HTTP: real portraits (tests/fixtures/faces/) and copies of them standing in for "the same person
in other photos" are uploaded to moto S3, embedded by the real pipeline with the test model, handed to the faces
queue and read by the faces stage with dlib's real models; people form once three faces are close, are named,
searched (person:"Name", person=), merged, re-grouped with their names kept and forgotten."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from shared import runtime
from shared.api import create_app
from shared.cli.main import main
from shared.dev.local_services import MotoServer, aws_client
from shared.ingest import work
from shared.ingest.backfill import plan
from shared.ingest.pipeline import Ingestor
from shared.people.faces import FaceFinder
from shared.people.stage import FacesStage
from shared.store import faces, queries, stage_rows, tables
from shared.store.catalog import Collection
from shared.store.db import quote_ident
from tests.fixtures.photos import encode
from tests.fixtures.portraits import BADGE_CROP, photo, rescaled
from tests.fixtures.services import Pipeline

EILEEN, GRACE = "eileen_collins", "grace_hopper"


def together() -> Image.Image:
    """Both portraits side by side in one photo: two faces."""
    left, right = rescaled(photo(EILEEN), 600), rescaled(photo(GRACE), 600)
    both = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), (90, 90, 90))
    both.paste(left, (0, 0))
    both.paste(right, (left.width, 0))
    return both


def badge() -> Image.Image:
    suit = photo(EILEEN)
    width, height = suit.size
    left, top, right, bottom = BADGE_CROP
    crop = suit.crop((round(left * width), round(top * height), round(right * width), round(bottom * height)))
    return crop.rotate(15, expand=True)  # HOG proposes the name tag (1.03); the CNN finds no face


FIRST = {  # one photo of each: a face alone waits for its person
    "people/eileen-1.jpg": lambda: photo(EILEEN),
    "people/grace-1.jpg": lambda: photo(GRACE),
}
LATER = {
    "people/eileen-2.jpg": lambda: ImageOps.mirror(photo(EILEEN)),
    "people/eileen-3.jpg": lambda: rescaled(photo(EILEEN), 1024),
    "people/grace-2.jpg": lambda: ImageOps.mirror(photo(GRACE)),
    "people/grace-3.jpg": lambda: rescaled(photo(GRACE), 1024),
    "people/together.jpg": together,
    "nobody/coffee.jpg": lambda: photo("coffee"),
    "nobody/cat.jpg": lambda: photo("chelsea_cat"),
    "nobody/cameraman.jpg": lambda: photo("cameraman"),  # a head turned aside: no face
    "nobody/badge.jpg": badge,
}
EILEENS = {"people/eileen-1.jpg", "people/eileen-2.jpg", "people/eileen-3.jpg", "people/together.jpg"}
GRACES = {"people/grace-1.jpg", "people/grace-2.jpg", "people/grace-3.jpg", "people/together.jpg"}
NOBODY = {key for key in LATER if key.startswith("nobody/")}


@dataclass
class World(Pipeline):
    collection: Collection
    client: TestClient
    stage: FacesStage
    after_first: dict[str, Any]  # what the first photos left: faces per key, people
    messages: int  # faces work messages the hand-off sent for the later photos
    sqs: Any
    queue_url: str  # the faces queue


def ingest(pipeline: Pipeline, photos: dict[str, Any]) -> list[str]:
    report = pipeline.ingestor.process_events([pipeline.put(key, encode(make(), "JPEG", quality=92))
                                               for key, make in photos.items()])
    embedded = report.keys("embedded")
    assert sorted(embedded) == sorted(photos), report.outcomes
    return embedded


@pytest.fixture(scope="module")
def world(pg_url: str, moto_server: MotoServer, test_model_dir: Path) -> Iterator[World]:
    pipeline = Pipeline.start(pg_url, moto_server, test_model_dir, "people")
    sqs = aws_client("sqs", moto_server.endpoint)
    queue_url = sqs.create_queue(QueueName=f"{pipeline.settings.bucket}-faces")["QueueUrl"]
    settings = pipeline.settings.model_copy(update={"faces_queue_url": queue_url, "ocr": False})
    stage = FacesStage(settings, pipeline.catalog, pipeline.storage, FaceFinder())
    bucket = settings.bucket
    embedded = ingest(pipeline, FIRST)
    before = pipeline.catalog.get_collection(bucket)
    first = stage.read_keys(bucket, embedded)
    collection = pipeline.catalog.get_collection(bucket)
    after_first = {"summary": first, "people": faces.list_people(pipeline.catalog, collection, min_faces=1, limit=10),
                   "faces": {key: faces.faces_of_image(pipeline.catalog, collection, key) for key in FIRST},
                   "before": before}
    # The later photos go the deployed way: the embed function's hand-off queues them, the faces function reads.
    sent = work.hand_off(settings, {bucket: ingest(pipeline, LATER)}, lambda url: sqs)
    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    assert len(received) == sent
    for message in received:
        parsed = work.parse(message["Body"])
        assert parsed.job == "faces"
        stage.read_keys(parsed.collection, parsed.keys)
    with TestClient(create_app(settings, catalog=pipeline.catalog, models=pipeline.embedder)) as client:
        yield World(**vars(pipeline), collection=collection, client=client, stage=stage, after_first=after_first,
                    messages=sent, sqs=sqs, queue_url=queue_url)
    pipeline.catalog.db.close()


def get(world: World, path: str, status: int = 200, **params: Any) -> dict[str, Any]:
    response = world.client.get(path, params=params)
    assert response.status_code == status, response.text
    return response.json()


def keys(body: dict[str, Any]) -> list[str]:
    return [item["key"] for item in body["items"]]


def people_by_size(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Eileen, Grace): the person whose faces are in Eileen's portraits, and the other."""
    listed = get(world, "/api/people")["people"]
    assert len(listed) == 2, listed
    eileen = next(e for e in listed if set(keys(get(world, f"/api/people/{e['id']}"))) == EILEENS)
    grace = next(e for e in listed if e is not eileen)
    return eileen, grace


def test_answers_read_people_once_a_face_is_stored(world: World) -> None:
    """Until its first face, a collection's answers skip the people subquery; the face's write turns it on."""
    before = world.after_first["before"]
    assert before.faces_found is False and world.collection.faces_found is True
    faces_table = quote_ident(tables.faces_table(before.table))
    assert faces_table not in queries.hit_sql(before) and faces_table in queries.hit_sql(world.collection)
    hits = queries.search(world.catalog, before, similar_to="people/grace-1.jpg", limit=5)
    assert hits and all(hit.people == () for hit in hits)


def test_a_face_alone_waits_for_its_person(world: World) -> None:
    assert world.after_first["summary"].faces == 2 and world.after_first["people"] == []
    assert all(len(found) == 1 and found[0][3] is None for found in world.after_first["faces"].values())


def test_the_embed_hand_off_queues_faces_work(world: World) -> None:
    assert world.messages == 1  # 9 keys: one message of at most 25
    assert get(world, "/api/stats")["faces_waiting"] == 0


def test_portraits_have_their_faces_and_photos_without_people_none(world: World) -> None:
    for key in EILEENS | GRACES:
        found = faces.faces_of_image(world.catalog, world.collection, key)
        assert len(found) == (2 if key == "people/together.jpg" else 1), key
        for _, box, score, person in found:
            assert 0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1 and score >= 0
            assert person is not None  # every face has found its person
    for key in NOBODY:  # no people, a head turned aside, and a badge HOG proposes: a weak detection, no face
        assert faces.faces_of_image(world.catalog, world.collection, key) == [], key


def test_people_form_from_three_faces_biggest_first(world: World) -> None:
    listed = get(world, "/api/people")["people"]
    assert [entry["faces"] for entry in listed] == [4, 4]
    for entry in listed:
        assert entry["name"] is None
        cover = entry["cover"]
        assert cover["key"] in EILEENS | GRACES and len(cover["box"]) == 4 and cover["thumbnail_url"]
    eileen, grace = people_by_size(world)
    assert set(keys(get(world, f"/api/people/{grace['id']}"))) == GRACES
    everyone = get(world, "/api/people", all="true")["people"]
    assert [(entry["id"], entry["faces"]) for entry in everyone] == [(entry["id"], entry["faces"]) for entry in listed]
    # (only ids and counts: the covers' presigned URLs carry the second they were signed in)


def test_items_carry_their_people_with_boxes(world: World) -> None:
    items = {item["key"]: item for item in get(world, "/api/recent", limit=50)["items"]}
    both = items["people/together.jpg"]["people"]
    assert len(both) == 2 and both[0]["box"][0] < both[1]["box"][0]  # left to right: Eileen, then Grace
    assert {person["id"] for person in both} == {entry["id"] for entry in people_by_size(world)}
    assert items["nobody/coffee.jpg"]["people"] == [] and len(items["people/grace-2.jpg"]["people"]) == 1


def test_a_person_page_lists_their_photos_newest_first(world: World) -> None:
    eileen, _ = people_by_size(world)
    page = get(world, f"/api/people/{eileen['id']}", limit=2)
    assert page["faces"] == 4 and len(page["items"]) == 2 and page["next_cursor"]
    rest = get(world, f"/api/people/{eileen['id']}", limit=10, cursor=page["next_cursor"])
    listed = page["items"] + rest["items"]
    assert {item["key"] for item in listed} == EILEENS
    times = [item["last_modified"] for item in listed]
    assert times == sorted(times, reverse=True)
    get(world, "/api/people/999999", 404)
    get(world, "/api/people/abc", 400)


def name(world: World, person: int, value: str | None, status: int = 200) -> dict[str, Any]:
    response = world.client.patch(f"/api/people/{person}", json={"name": value})
    assert response.status_code == status, response.text
    return response.json()


def test_search_by_person_name_and_filter(world: World) -> None:
    eileen, grace = people_by_size(world)
    assert name(world, eileen["id"], "Eileen Collins")["name"] == "Eileen Collins"
    name(world, grace["id"], "Grace Hopper")
    alone = get(world, "/api/search", q='person:"Eileen Collins"', limit=10)
    assert set(keys(alone)) == EILEENS and alone["query"]["terms"][0]["kind"] == "person"
    assert keys(alone) == keys(get(world, "/api/recent", person=eileen["id"], limit=10))  # newest first
    both = get(world, "/api/search", q='person:"eileen collins" + person:"Grace Hopper"')
    assert keys(both) == ["people/together.jpg"]
    narrowed = get(world, "/api/search", q='person:"Grace Hopper" + portrait', cutoff="none", limit=50)
    assert keys(narrowed) and set(keys(narrowed)) <= GRACES
    # A date sort (ranked in SQL) and a similar: term (one statement) take the person filter too.
    by_date = get(world, "/api/search", q='person:"Grace Hopper" + portrait', cutoff="none", sort="oldest", limit=50)
    assert set(keys(by_date)) == set(keys(narrowed))
    like = get(world, "/api/search", q='similar:people/grace-1.jpg + person:"Grace Hopper"', cutoff="none", limit=50)
    assert set(keys(like)) == GRACES - {"people/grace-1.jpg"}
    filtered = get(world, "/api/search", q="portrait", person=grace["id"], cutoff="none", limit=50)
    assert set(keys(filtered)) == GRACES
    unknown = get(world, "/api/search", 400, q='person:"Ada Lovelace" + beach')
    assert "Ada Lovelace" in unknown["error"]["message"]
    assert get(world, "/api/recent", person=999999)["items"] == []


def test_names_are_checked(world: World) -> None:
    eileen, _ = people_by_size(world)
    name(world, eileen["id"], 'Ei"leen', 400)
    name(world, eileen["id"], "Eileen\x00", 400)
    name(world, 999999, "Nobody", 404)
    assert world.client.patch(f"/api/people/{eileen['id']}", json={"nom": "x"}).status_code == 400
    assert get(world, f"/api/people/{eileen['id']}")["name"] == "Eileen Collins"


def test_writes_need_the_api_key_when_one_is_set(world: World) -> None:
    eileen, _ = people_by_size(world)
    settings = world.settings.model_copy(update={"api_key": "k-people"})
    with TestClient(create_app(settings, catalog=world.catalog, models=world.embedder)) as client:
        assert client.patch(f"/api/people/{eileen['id']}", json={"name": "X"}).status_code == 401
        assert client.post(f"/api/people/{eileen['id']}/merge", json={"into": 1}).status_code == 401
        answer = client.patch(f"/api/people/{eileen['id']}", json={"name": "Eileen Collins"},
                              headers={"x-api-key": "k-people"})
        assert answer.status_code == 200


def test_names_survive_a_regroup(world: World) -> None:
    before = {entry["id"]: entry["name"] for entry in get(world, "/api/people")["people"]}
    grouped = faces.regroup(world.catalog, world.collection)
    assert grouped.assigned == 8 and grouped.new_people == 0 and grouped.waiting == 0
    assert {entry["id"]: entry["name"] for entry in get(world, "/api/people")["people"]} == before


def test_merge_then_regroup_splits_them_keeping_the_name(world: World) -> None:
    eileen, grace = people_by_size(world)
    get(world, "/api/search", q='person:"Grace Hopper"')
    response = world.client.post(f"/api/people/{grace['id']}/merge", json={"into": eileen["id"]})
    assert response.status_code == 200, response.text
    merged = response.json()
    assert merged["id"] == eileen["id"] and merged["name"] == "Eileen Collins" and merged["faces"] == 8
    get(world, f"/api/people/{grace['id']}", 404)
    assert "Grace Hopper" in get(world, "/api/search", 400, q='person:"Grace Hopper"')["error"]["message"]
    assert world.client.post(f"/api/people/{eileen['id']}/merge", json={"into": eileen["id"]}).status_code == 400
    assert world.client.post(f"/api/people/{eileen['id']}/merge", json={"into": 999999}).status_code == 404
    faces.regroup(world.catalog, world.collection)  # the faces are still two people
    after = get(world, "/api/people")["people"]
    assert sorted((entry["faces"], entry["name"] or "") for entry in after) == [(4, ""), (4, "Eileen Collins")]
    kept, other = sorted(after, key=lambda entry: entry["name"] is None)
    assert kept["id"] == eileen["id"] and other["id"] not in (eileen["id"], grace["id"])
    # A tie (4 faces each, all of them the merged person's): the group made first keeps the person and its name.
    assert {frozenset(keys(get(world, f"/api/people/{entry['id']}"))) for entry in after} == {
        frozenset(EILEENS), frozenset(GRACES)}


@pytest.fixture()
def env(world: World, pg_url: str, test_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """IB_* variables for the command line, which builds its own runtime."""
    for variable, value in {"IB_DATABASE_URL": pg_url, "IB_S3_ENDPOINT_URL": str(world.settings.s3_endpoint_url),
                            "IB_S3_ACCESS_KEY_ID": "test", "IB_S3_SECRET_ACCESS_KEY": "test",
                            "IB_BUCKET": world.settings.bucket, "IB_MODEL": str(test_model_dir),
                            "IB_FACES": "false"}.items():
        monkeypatch.setenv(variable, value)
    runtime.reset()
    yield world
    runtime.reset()


def test_faces_forget_deletes_every_face_record(env: World, capsys: pytest.CaptureFixture[str]) -> None:
    world = env
    assert main(["faces", "--regroup", "--collection", world.settings.bucket]) == 0
    assert "names kept" in capsys.readouterr().out
    assert main(["faces", "--forget", "--collection", world.settings.bucket]) == 0
    assert "deleted 8 faces" in capsys.readouterr().out
    assert get(world, "/api/people", all="true")["people"] == []
    assert all(item["people"] == [] for item in get(world, "/api/recent", limit=50)["items"])
    assert world.catalog.db.run(f"SELECT count(*) FROM {faces._faces(world.collection)}") == [[0]]
    assert main(["faces", "--collection", world.settings.bucket]) == 1  # IB_FACES=false: the stage is off
    assert "IB_FACES=false" in capsys.readouterr().err


def test_the_backfill_plan_queues_the_pictures_whose_faces_wait(world: World) -> None:
    """After forgetting, every picture waits again: the plan queues them on the faces queue, and reading them
    brings the people back (unnamed: their names went with them)."""
    assert stage_rows.count_waiting(world.catalog, world.collection, stage_rows.FACES) == len(FIRST) + len(LATER)
    work_url = world.sqs.create_queue(QueueName=f"{world.settings.bucket}-work")["QueueUrl"]
    settings = world.stage.settings.model_copy(update={"work_queue_url": work_url})
    ingestor = Ingestor(settings, world.catalog, world.storage, world.embedder, queues=lambda url: world.sqs)
    planned = plan(ingestor, world.settings.bucket, queue_url=work_url)
    assert planned.queued == 0 and planned.queued_faces == len(FIRST) + len(LATER)
    messages = world.sqs.receive_message(QueueUrl=world.queue_url, MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        parsed = work.parse(message["Body"])
        world.stage.read_keys(parsed.collection, parsed.keys)
    assert stage_rows.count_waiting(world.catalog, world.collection, stage_rows.FACES) == 0
    assert sorted((entry["faces"], entry["name"]) for entry in get(world, "/api/people")["people"]) == [
        (4, None), (4, None)]


def test_faces_of_a_removed_picture_leave_their_person(world: World) -> None:
    world.storage.delete(world.settings.bucket, "people/grace-3.jpg")
    work_url = world.sqs.create_queue(QueueName=f"{world.settings.bucket}-work")["QueueUrl"]
    ingestor = Ingestor(world.stage.settings, world.catalog, world.storage, world.embedder,
                        queues=lambda url: world.sqs)
    planned = plan(ingestor, world.settings.bucket, queue_url=work_url)  # the listing tombstones it, then prunes
    assert planned.removed == 1
    assert sorted(entry["faces"] for entry in get(world, "/api/people")["people"]) == [3, 4]
