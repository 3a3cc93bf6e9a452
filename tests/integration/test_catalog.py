"""Catalog against the embedded PostgreSQL + pgvector: naming, ordering rules, model checks, reconnects."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pg8000.exceptions
import pytest

from shared.events import ObjectEvent
from shared.store import db as db_module
from shared.store import queries
from shared.store.catalog import Catalog, CatalogError, ModelMismatch, UnknownCollection
from shared.store.db import Database, quote_ident
from shared.store.hnsw import hnsw_session
from tests.fixtures.services import unique_name

MODEL, DIM = "test/model", 8
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def unit(seed: int, dim: int = DIM) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def created(key: str, etag: str = "e1", seq: str | None = None, t: int = 0) -> ObjectEvent:
    return ObjectEvent("b", key, "created", etag, 10, seq, T0 + timedelta(seconds=t))


def removed(key: str, seq: str | None = None, t: int = 0) -> ObjectEvent:
    return ObjectEvent("b", key, "removed", None, None, seq, T0 + timedelta(seconds=t))


@pytest.fixture()
def coll(catalog: Catalog):
    return catalog.ensure_collection(unique_name("c"), MODEL, DIM)






@pytest.mark.parametrize(
    "name", ['x"; DROP TABLE ib_collections; --', "pg_catalog", "фото 😀", "q" * 200, "a;b'c"]
)
def test_hostile_collection_names_are_stored_safely(catalog: Catalog, name: str) -> None:
    collection = catalog.ensure_collection(name + unique_name(""), MODEL, DIM)
    assert catalog.record_event(collection, created("k"))
    assert catalog.get_collection(collection.name).table == collection.table
    assert catalog.db.run("SELECT count(*) FROM ib_collections")[0][0] >= 1  # registry still there


def test_invalid_collection_names_are_refused(catalog: Catalog) -> None:
    for bad in ["", "   ", "x" * 256, "tab\there", "nul\x00"]:
        with pytest.raises(CatalogError):
            catalog.ensure_collection(bad, MODEL, DIM)


def test_unknown_collection_is_a_clear_error(catalog: Catalog) -> None:
    with pytest.raises(UnknownCollection, match="no collection named"):
        catalog.get_collection(unique_name("missing"))


def test_model_is_recorded_and_another_model_is_refused(catalog: Catalog, coll) -> None:
    assert catalog.get_collection(coll.name).model_id == MODEL
    with pytest.raises(ModelMismatch, match="test/model") as err:
        catalog.ensure_collection(coll.name, "other/model", 16)
    assert "other/model" in str(err.value)
    catalog.record_event(coll, created("k"))
    with pytest.raises(ModelMismatch):
        catalog.store_embedding(coll, "k", "e1", unit(1, 16), model_id="other/model")


def test_create_then_embed(catalog: Catalog, coll) -> None:
    assert catalog.record_event(coll, created("a.jpg"))
    assert queries.get_row(catalog, coll, "a.jpg").status == "pending"
    assert catalog.store_embedding(coll, "a.jpg", "e1", unit(1), model_id=MODEL, width=4, height=3)
    row = queries.get_row(catalog, coll, "a.jpg")
    assert (row.status, row.width, row.height, row.has_embedding) == ("embedded", 4, 3, True)
    assert queries.is_embedded(catalog, coll, "a.jpg") and queries.get_row(catalog, coll, "a.jpg").etag == "e1"
    assert not catalog.store_embedding(coll, "a.jpg", "e2", unit(1), model_id=MODEL)  # not that content
    assert queries.is_embedded(catalog, coll, "a.jpg") and not queries.is_embedded(catalog, coll, "b.jpg")
    assert queries.counts(catalog, coll) == {"embedded": 1, "pending": 0, "failed": 0}


def test_duplicate_event_is_a_no_op(catalog: Catalog, coll) -> None:
    event = created("a.jpg", seq="0A")
    assert catalog.record_event(coll, event)
    catalog.store_embedding(coll, "a.jpg", "e1", unit(1), model_id=MODEL)
    assert not catalog.record_event(coll, event)
    assert not catalog.record_event(coll, event)
    assert queries.get_row(catalog, coll, "a.jpg").status == "embedded"


def test_older_event_never_overwrites_newer(catalog: Catalog, coll) -> None:
    assert catalog.record_event(coll, created("a.jpg", etag="new", seq="0B"))
    assert not catalog.record_event(coll, created("a.jpg", etag="old", seq="0A"))
    assert queries.get_row(catalog, coll, "a.jpg").etag == "new"
    # sequencers of different length compare numerically after padding: "FF" < "100"
    assert catalog.record_event(coll, created("b.jpg", etag="x", seq="FF"))
    assert catalog.record_event(coll, created("b.jpg", etag="y", seq="100"))
    assert queries.get_row(catalog, coll, "b.jpg").etag == "y"


def test_delete_then_late_older_create_stays_deleted(catalog: Catalog, coll) -> None:
    catalog.record_event(coll, created("a.jpg", seq="01"))
    catalog.store_embedding(coll, "a.jpg", "e1", unit(1), model_id=MODEL)
    assert catalog.record_event(coll, removed("a.jpg", seq="03"))
    assert not catalog.record_event(coll, created("a.jpg", etag="e0", seq="02"))
    row = queries.get_row(catalog, coll, "a.jpg")
    assert row.status == "deleted" and not row.has_embedding
    # a delete that arrives before any create leaves a tombstone too
    assert catalog.record_event(coll, removed("z.jpg", t=10))
    assert not catalog.record_event(coll, created("z.jpg", t=5))
    assert queries.get_row(catalog, coll, "z.jpg").status == "deleted"
    # a genuinely newer create brings it back
    assert catalog.record_event(coll, created("z.jpg", etag="e9", t=20))
    assert queries.get_row(catalog, coll, "z.jpg").status == "pending"


def test_time_orders_events_without_sequencer(catalog: Catalog, coll) -> None:
    assert catalog.record_event(coll, created("a.jpg", etag="late", t=5))
    assert not catalog.record_event(coll, created("a.jpg", etag="early", t=1))
    assert queries.get_row(catalog, coll, "a.jpg").etag == "late"


def test_stale_embedding_is_not_written_over_newer_content(catalog: Catalog, coll) -> None:
    catalog.record_event(coll, created("a.jpg", etag="v1", seq="01"))
    catalog.record_event(coll, created("a.jpg", etag="v2", seq="02"))
    assert not catalog.store_embedding(coll, "a.jpg", "v1", unit(1), model_id=MODEL)
    assert queries.get_row(catalog, coll, "a.jpg").status == "pending"


def test_failures_count_attempts(catalog: Catalog, coll) -> None:
    catalog.record_event(coll, created("bad.jpg"))
    assert catalog.mark_failed(coll, "bad.jpg", "e1", "corrupt: cannot identify image")
    assert catalog.mark_failed(coll, "bad.jpg", "e1", "corrupt: cannot identify image")
    row = queries.get_row(catalog, coll, "bad.jpg")
    assert (row.status, row.attempts) == ("failed", 2)
    assert "corrupt" in row.error
    assert queries.counts(catalog, coll)["failed"] == 1


def test_a_dead_runs_claims_are_given_back_and_backoffs_kept(catalog: Catalog, coll) -> None:
    for key in ("claimed.jpg", "backoff.jpg"):
        catalog.record_event(coll, created(key))
    assert [key for key, _, _ in catalog.claim_keys(coll, ["claimed.jpg", "backoff.jpg"], max_attempts=5)] == [
        "claimed.jpg", "backoff.jpg"]
    assert catalog.mark_failed(coll, "backoff.jpg", "e1", "corrupt: cannot identify image")
    catalog.release_claims(coll, ["backoff.jpg"], retry_after_seconds=600)  # a failure's backoff, not a claim
    assert catalog.claim_keys(coll, ["claimed.jpg", "backoff.jpg"], max_attempts=5) == []  # both held
    assert catalog.release_unfinished_claims(coll) == 1
    assert [key for key, _, _ in catalog.claim_keys(coll, ["claimed.jpg", "backoff.jpg"], max_attempts=5)] == [
        "claimed.jpg"]


def test_concurrent_first_writers_create_one_collection(catalog: Catalog, pg_url: str) -> None:
    name, errors = unique_name("race"), []

    def create() -> None:
        try:
            Catalog.from_url(pg_url).ensure_collection(name, MODEL, DIM)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert catalog.db.run("SELECT count(*) FROM ib_collections WHERE name = :n", n=name)[0][0] == 1


def test_reconnects_after_backend_is_killed(catalog: Catalog, coll, pg_url: str) -> None:
    catalog.record_event(coll, created("before.jpg"))
    pids = [row[0] for row in catalog.db.run("SELECT pg_backend_pid()")]
    killer = Catalog.from_url(pg_url)
    assert killer.db.run("SELECT pg_terminate_backend(:pid)", pid=pids[0])[0][0] is True
    # the pooled connection is dead; the next operation reconnects and succeeds
    assert catalog.record_event(coll, created("after.jpg"))
    assert queries.get_row(catalog, coll, "after.jpg").status == "pending"
    assert catalog.db.run("SELECT pg_backend_pid()")[0][0] != pids[0]


def test_transaction_retried_once_when_killed_mid_work(catalog: Catalog, coll, pg_url: str) -> None:
    killer = Catalog.from_url(pg_url)
    calls = []

    def work(conn) -> str:
        calls.append(1)
        if len(calls) == 1:
            pid = conn.run("SELECT pg_backend_pid()")[0][0]
            killer.db.run("SELECT pg_terminate_backend(:pid)", pid=pid)
        return conn.run("SELECT 'done'")[0][0]

    assert catalog.db.transaction(work) == "done"
    assert len(calls) == 2


def test_a_retry_never_gets_a_connection_that_died_in_the_same_event(pg_url: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    db, killer = Database(pg_url, max_size=4), Database(pg_url, max_size=1)
    held = db.connection()
    busy = held.__enter__()  # another caller's connection, checked out when the server kills everything
    dead = {db.run("SELECT pg_backend_pid()")[0][0], busy.run("SELECT pg_backend_pid()")[0][0]}
    killer.run("SELECT pg_terminate_backend(pid, 5000) FROM unnest(CAST(:pids AS int[])) AS pid", pids=list(dead))
    clear = db.discard_idle

    def clear_then_the_other_caller_returns() -> None:  # the worst moment: between the failure and the retry
        clear()
        if not held_returned:
            held_returned.append(True)
            held.__exit__(None, None, None)

    held_returned: list[bool] = []
    monkeypatch.setattr(db, "discard_idle", clear_then_the_other_caller_returns)
    pid = db.run("SELECT pg_backend_pid()")[0][0]
    assert held_returned and pid not in dead and db.lost_connections == 1
    assert db.run("SELECT pg_backend_pid()")[0][0] == pid  # the stale one was closed, not pooled
    assert db.lost_connections == 1
    killer.close()
    db.close()


def test_a_statement_in_one_round_trip_carries_values_and_errors_and_leaves_its_connection_usable(
        pg_url: str) -> None:
    db = Database(pg_url, max_size=1)  # one connection: every statement below runs on the same one
    try:
        row = db.run("SELECT CAST(:a AS text), CAST(:b AS bigint), CAST(:c AS float8), CAST(:d AS text[]), "
                     "CAST(:e AS text) IS NULL", a="zoë/😀", b=2**62, c=0.25, d=["x", "y z"], e=None)
        assert row == [["zoë/😀", 2**62, 0.25, ["x", "y z"], True]]
        with pytest.raises(pg8000.exceptions.DatabaseError, match="division by zero"):  # fails while running
            db.run("SELECT 1 / CAST(:zero AS int)", zero=0)
        with pytest.raises(pg8000.exceptions.DatabaseError, match="syntax error"):  # fails to parse
            db.run("SELEC :x", x=1)
        with pytest.raises(pg8000.exceptions.DatabaseError, match="0x00"):  # fails to bind
            db.run("SELECT CAST(:a AS text)", a="a\x00b")
        table = unique_name("trip").replace("-", "_")
        db.run(f"CREATE TABLE {table} (v int)")
        assert db.run(f"INSERT INTO {table} VALUES (:v)", v=7) is None  # no rows: None, as pg8000 gives
        assert db.run(f"SELECT v FROM {table} WHERE v = :v", v=7) == [[7]]
        db.run(f"DROP TABLE {table}")
    finally:
        db.close()


def test_a_setup_statement_holds_its_settings_for_the_statement_in_the_same_round_trip(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(pg_url, max_size=1)
    writes: list[int] = []
    flush = db_module.pg8000.core._flush
    monkeypatch.setattr(db_module.pg8000.core, "_flush", lambda sock: (writes.append(1), flush(sock)))
    setup = "SELECT set_config('enable_seqscan', 'off', true), set_config('work_mem', '7MB', true)"
    select = "SELECT current_setting('enable_seqscan'), current_setting(CAST(:name AS text))"
    try:
        db.run_prepared(select, name="work_mem")  # the connection opened, the statement parsed
        before = len(writes)
        ((seqscan, work_mem),) = db.run_prepared(select, name="work_mem")
        assert seqscan == "on" and work_mem != "7MB"  # the server's own settings, whatever its work_mem
        alone, before = len(writes) - before, len(writes)
        rows = db.run_prepared(select, setup=setup, name="work_mem")
        assert rows == [["off", "7MB"]]  # the setup's own row is not among them
        assert len(writes) - before == alone  # setup and statement sent at once: as many writes as the statement
        # Local to that transaction: the next statement on the same connection has the defaults back.
        assert db.run_prepared("SELECT current_setting(CAST(:name AS text))", name="enable_seqscan") == [["on"]]
        with pytest.raises(pg8000.exceptions.DatabaseError, match="division by zero"):  # a failing setup: no rows
            db.run_prepared("SELECT CAST(:x AS int)", setup="SELECT 1 / 0", x=1)
        assert db.run_prepared("SELECT CAST(:x AS int)", x=1) == [[1]]
    finally:
        db.close()


def test_a_named_statement_is_parsed_once_per_connection_and_survives_errors_and_table_changes(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db_module, "NAMED_PER_CONNECTION", 3)
    db = Database(pg_url, max_size=1)  # one connection: every statement below runs on the same one
    table = unique_name("named").replace("-", "_")

    def named() -> list[str]:  # this connection's named statements, as the server has them
        return sorted(row[0] for row in db.run("SELECT statement FROM pg_prepared_statements"))

    try:
        db.run(f"CREATE TABLE {table} (v int)")
        db.run(f"INSERT INTO {table} VALUES (1), (2), (3)")
        select = f"SELECT * FROM {table} WHERE v >= :v ORDER BY v"
        for low in (1, 2, 3, 1, 2, 3, 1):  # past the plan cache's five custom plans
            assert db.run_prepared(select, v=low) == [[v] for v in range(low, 4)]
        assert named() == [f"SELECT * FROM {table} WHERE v >= $1 ORDER BY v"]

        db.run(f"ALTER TABLE {table} ADD COLUMN w text")  # the cached plan's result type changes: parsed again
        assert db.run_prepared(select, v=3) == [[3, None]]
        assert len(named()) == 1

        with pytest.raises(pg8000.exceptions.DatabaseError, match="division by zero"):  # parsed, fails running
            db.run_prepared("SELECT 1 / CAST(:zero AS int)", zero=0)
        assert db.run_prepared("SELECT 1 / CAST(:zero AS int)", zero=1) == [[1]]
        with pytest.raises(pg8000.exceptions.DatabaseError, match="syntax error"):  # never parsed
            db.run_prepared("SELEC :x", x=1)
        assert db.run_prepared("SELECT CAST(:x AS int) + 1", x=1) == [[2]]
        assert len(named()) == 3  # the select, the division, the sum: the syntax error left nothing behind

        assert db.run_prepared("SELECT CAST(:x AS int) + 2", x=1) == [[3]]  # a fourth: the oldest is closed
        assert db.run_prepared("SELECT CAST(:x AS int) + 3", x=1) == [[4]]
        assert named() == ["SELECT CAST($1 AS int) + 1", "SELECT CAST($1 AS int) + 2", "SELECT CAST($1 AS int) + 3"]
        assert db.run_prepared(select, v=2) == [[2, None], [3, None]]  # parsed again after its close
    finally:
        db.run(f"DROP TABLE IF EXISTS {table}")
        db.close()


@pytest.mark.parametrize(("rows", "ef"), [(1_000, "80"), (100_000, "80"), (1_000_000, "186"), (10**9, "1000")])
def test_ef_search_grows_with_the_rows_the_planner_counts(catalog: Catalog, coll, rows: int, ef: str) -> None:
    """The search statement's own settings read the table's size (pg_class.reltuples, as ANALYZE keeps it): the
    configured 80 up to 100,000 rows, grown above, never past pgvector's bound."""
    table = quote_ident(coll.table)
    catalog.db.run("UPDATE pg_class SET reltuples = :rows WHERE oid = CAST(:table AS regclass)", rows=rows, table=table)

    def ef_search_in_statement(conn) -> str:
        params: dict[str, object] = {}
        conn.run(f"WITH {hnsw_session(params, ef_search=80, iterative_scan='off', grow_with=table)} "
                 "SELECT ef FROM cfg", **params)
        return conn.run("SELECT current_setting('hnsw.ef_search')")[0][0]  # SET LOCAL: this transaction's

    assert catalog.db.transaction(ef_search_in_statement) == ef


def test_queries_go_on_while_every_backend_is_killed_again_and_again(pg_url: str) -> None:
    name = unique_name("killed").replace("-", "_")
    db = Database(f"{pg_url}&application_name={name}", max_size=6)
    killer = Database(pg_url, max_size=1)
    stop, errors, answers = threading.Event(), [], []

    def client(number: int) -> None:
        while not stop.is_set():
            try:
                if number % 2:
                    answers.append(db.run("SELECT :n + 0 FROM pg_sleep(0.002)", n=number)[0][0] == number)
                else:
                    answers.append(db.transaction(lambda conn: conn.run("SELECT count(*) FROM pg_class")[0][0] > 0))
            except Exception as exc:  # any failure at all is what this test looks for
                errors.append(exc)

    threads = [threading.Thread(target=client, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    killed = 0
    try:
        for _ in range(12):  # a round every ~0.25 s: a retry on a new connection outlives each one
            stop.wait(0.25)
            killed += killer.run(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE application_name = :name) AS t", name=name)[0][0]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == [] and all(answers)
    assert killed > 0 and db.lost_connections > 0  # the kills really hit connections in use
    killer.close()
    db.close()






def test_stats(catalog: Catalog, coll) -> None:
    catalog.record_event(coll, created("a.jpg"))
    catalog.record_event(coll, created("b.jpg"))
    catalog.store_embedding(coll, "a.jpg", "e1", unit(1), model_id=MODEL)
    stats = queries.stats(catalog, coll)
    assert stats["counts"] == {"embedded": 1, "pending": 1, "failed": 0}
    assert stats["bytes"] == 20 and stats["model"] == MODEL and stats["last_update"]
    assert stats["move"] is None  # no model move under way


def test_search_settings_are_local_to_the_query(catalog: Catalog, coll) -> None:
    """ef_search / iterative scan are set for the query's own transaction only (SET LOCAL semantics):
    a pooled connection, or a transaction-mode pooler, never keeps them."""
    for i in range(40):
        catalog.record_event(coll, created(f"k{i}.jpg"))
        catalog.store_embedding(coll, f"k{i}.jpg", "e1", unit(i), model_id=MODEL)
    catalog.db.discard_idle()
    settings = "SELECT current_setting('hnsw.ef_search', true), current_setting('hnsw.iterative_scan', true)"
    hits = queries.search(catalog, coll, unit(3), limit=30, ef_search=7)
    assert len(hits) == 30 and hits[0].key == "k3.jpg" and abs(hits[0].score - 1.0) < 1e-2
    with catalog.db.connection() as conn:  # the same pooled connection (LIFO pool, one caller)
        assert conn.run(settings)[0] == ["40", "off"]  # pgvector's defaults, not 7 / relaxed_order


def test_old_tombstones_are_purged_recent_ones_kept(catalog: Catalog, coll) -> None:
    from shared.store.db import quote_ident

    catalog.record_event(coll, removed("old.jpg", t=1))
    catalog.record_event(coll, removed("new.jpg", t=2))
    catalog.record_event(coll, created("live.jpg"))
    catalog.db.run(f"UPDATE {quote_ident(coll.table)} SET updated_at = now() - interval '15 days' "
                   "WHERE key = 'old.jpg'")
    assert catalog.purge_tombstones(coll) == 1
    assert queries.get_row(catalog, coll, "old.jpg") is None
    assert queries.get_row(catalog, coll, "new.jpg").status == "deleted"  # still guards against late creates
    assert queries.get_row(catalog, coll, "live.jpg").status == "pending"


def test_older_tables_get_the_columns_added_since(catalog: Catalog, coll, pg_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.store import tables

    monkeypatch.setattr(tables, "ADDED_COLUMNS", [*tables.ADDED_COLUMNS, ("probe_note", "text")])
    monkeypatch.setattr(tables, "added_indexes_sql",
                        lambda table: [f"CREATE INDEX IF NOT EXISTS {quote_ident(table + '_probe')} "
                                       f"ON {quote_ident(table)} (probe_note)"])
    fresh = Catalog.from_url(pg_url)  # a new process: its first use brings every table up to date
    try:
        fresh.ensure_schema()
        columns = {row[0] for row in fresh.db.run(
            "SELECT column_name FROM information_schema.columns WHERE table_name = :t", t=coll.table)}
        assert "probe_note" in columns
        indexes = {row[0] for row in fresh.db.run("SELECT indexname FROM pg_indexes WHERE tablename = :t",
                                                  t=coll.table)}
        assert coll.table + "_probe" in indexes
        new = fresh.ensure_collection(unique_name("c"), MODEL, DIM)  # and a new table is created with it
        assert fresh.db.run(f"SELECT probe_note FROM {quote_ident(new.table)}") == []
    finally:
        for table in {coll.table}:
            fresh.db.run(f"ALTER TABLE {quote_ident(table)} DROP COLUMN probe_note")
        fresh.db.close()




def test_an_older_registry_gets_the_faces_flag_on_so_its_people_still_show(catalog: Catalog, coll,
                                                                          pg_url: str) -> None:
    """A registry of a release before the flag may hold collections with faces: they start with it on; a new
    collection starts with it off (no face stored yet)."""
    assert coll.faces_found is False
    catalog.db.run("ALTER TABLE ib_collections DROP COLUMN faces_found")
    fresh = Catalog.from_url(pg_url)  # a new process of the new release
    try:
        assert fresh.get_collection(coll.name).faces_found is True
        assert fresh.ensure_collection(unique_name("c"), MODEL, DIM).faces_found is False
    finally:
        fresh.db.close()


def test_an_embedded_server_takes_the_shared_buffers_it_is_given(tmp_path: Path) -> None:
    from shared.dev.local_services import EmbeddedPostgres

    for _ in range(2):  # set, restarted to take it; then started with it as it is
        server = EmbeddedPostgres(tmp_path / "pg")
        catalog = Catalog.from_url(server.start(shared_buffers_mb=256))
        try:
            assert catalog.db.run("SHOW shared_buffers") == [["256MB"]]
        finally:
            catalog.db.close()
            server.stop()


def test_sessions_creating_the_same_table_at_once_all_succeed(pg_url: str) -> None:
    """CREATE TABLE IF NOT EXISTS in two sessions at once fails one of them on pg_type's unique index (a stack's API
    and worker starting together did: a 500 from /api/stats); `create_once` serialises them."""
    table = quote_ident(unique_name("race").replace("-", "_"))
    sql = f"CREATE TABLE IF NOT EXISTS {table} (id bigint PRIMARY KEY, note text)"
    databases = [Database(pg_url, max_size=1) for _ in range(6)]
    for db in databases:
        db.ping()  # connected before the race starts
    start, errors = threading.Barrier(len(databases)), []

    def create(db: Database) -> None:
        start.wait()
        try:
            db.create_once(table, sql)
        except Exception as exc:  # noqa: BLE001 - the test reports any
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(db,)) for db in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert errors == []
        assert databases[0].run(f"SELECT count(*) FROM {table}") == [[0]]
    finally:
        databases[0].run(f"DROP TABLE IF EXISTS {table}")
        for db in databases:
            db.close()
