"""PostgreSQL connections: URL parsing, a small pool that recovers when its connections are dropped,
and what text PostgreSQL cannot store.

pg8000 connections are not thread-safe, so each caller borrows one from the pool for the length of a
statement or a transaction. A connection that dies under us (server restart, pg_terminate_backend,
a reset socket) invalidates the whole pool, as SQLAlchemy's pool does on a disconnect: whatever killed
it (a restart, a failover, an admin killing every backend) most likely killed its siblings too. Idle
connections are closed at once, connections checked out at that moment are closed when they come
back (a generation counter tells them apart), and the operation runs again on a new connection.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlparse

import pg8000.core
import pg8000.exceptions
import pg8000.native
from pg8000.converters import make_params
from pgvector.pg8000 import register_vector

T = TypeVar("T")
log = logging.getLogger(__name__)

# SQLSTATEs that mean the connection (not the statement) is gone: admin shutdown, crash shutdown,
# cannot connect now, connection failure and friends.
CONNECTION_LOST_CODES = {"57P01", "57P02", "57P03", "08000", "08003", "08006", "08001", "08004"}
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
ATTEMPTS = 3  # runs of an operation whose connection keeps dying: one pooled connection, then new ones


_to_statement = lru_cache(maxsize=1024)(pg8000.native.to_statement)
# Named statements a connection keeps (least recently used closed first): the hot search texts are a handful.
NAMED_PER_CONNECTION = 32


# The extended protocol's messages of one statement, sent at once (pg8000.core's own codes).
_DESCRIBE_PORTAL = pg8000.core._create_message(pg8000.core.DESCRIBE, pg8000.core.PORTAL + pg8000.core.NULL_BYTE)
_EXECUTE_AND_SYNC = pg8000.core.EXECUTE_MSG + pg8000.core.SYNC_MSG


class Connection(pg8000.native.Connection):
    """pg8000's native connection, with its `:name` -> `$n` rewrite cached per SQL text, and a statement
    sent in one round trip.

    The rewrite walks the SQL a character at a time (~100 µs for a search query); our queries are
    few distinct texts run many times, so it is done once per text.
    """

    generation = 0  # the pool's generation when this connection was opened (see Database.invalidate)
    vectors_registered = False  # pgvector's types registered (once, after the extension exists)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._named: OrderedDict[str, bytes] = OrderedDict()  # SQL text ($n form) -> its statement name
        self._to_close: list[bytes] = []  # names to close, sent with the next named statement
        self._serial = 0
        self._parses = 0  # ParseComplete answers to the statement being run (its setup's first)

    def run(self, sql: str, stream: Any = None, types: Any = None, **params: Any) -> Any:
        if not params or stream is not None or types is not None:
            # pg8000's own way: the simple protocol (one round trip, several statements allowed), COPY, types.
            return super().run(sql, stream=stream, types=types, **params)
        statement, make_vals = _to_statement(sql)
        self._context = self._execute(statement, make_vals(params))
        return self._context.rows

    def _execute(self, statement: str, values: Any, name: bytes = pg8000.core.NULL_BYTE, *,
                 parse: bool = True, setup: str | None = None) -> pg8000.core.Context:
        """Parse (unless the named statement `name` exists), Bind, Describe (the portal), Execute and Sync written at
        once, then the answers read. pg8000's execute_unnamed waits after Parse and again after Describe: three
        round trips, and three transactions on the server, for every statement. `setup` (a SELECT of one row, no
        parameters) runs first, before the same Sync: in the same round trip and the same transaction."""
        context = pg8000.core.Context(statement)
        if setup is not None:
            self.send_PARSE(pg8000.core.NULL_BYTE, setup)
            self.send_BIND(pg8000.core.NULL_BYTE, make_params(self.py_types, ()))
            pg8000.core._write(self._sock, _DESCRIBE_PORTAL + pg8000.core.EXECUTE_MSG)
        if parse:
            self.send_PARSE(name, statement)  # no parameter types: the server infers them, as before
        self.send_BIND(name, make_params(self.py_types, values))
        pg8000.core._write(self._sock, _DESCRIBE_PORTAL + _EXECUTE_AND_SYNC)
        pg8000.core._flush(self._sock)
        self.handle_messages(context)
        if setup is not None:
            context.rows = context.rows[1:]  # the setup's row: its rows come first
        return context

    def run_prepared(self, sql: str, *, setup: str | None = None, **params: Any) -> Any:
        """`run` as a named statement: parsed once per connection, then planned from PostgreSQL's plan cache (a
        generic plan once it costs no more than the custom ones). For the nearest-neighbour statements parsing and
        planning were ~0.5 ms of a 4 ms search. Still one round trip, `setup` included: a SELECT of one row whose
        `set_config(…, true)` settings hold while the statement is planned and run (the messages up to one Sync are
        one transaction), as searches choose how their plans are made (queries.plan_cache_mode)."""
        statement, make_vals = _to_statement(sql)
        values = make_vals(params)
        try:
            return self._run_named(statement, values, setup)
        except pg8000.exceptions.DatabaseError as exc:
            if not _is_stale_plan(exc):
                raise
            self._forget(statement)  # a table changed under the statement: parse it again, once
            return self._run_named(statement, values, setup)

    def _run_named(self, statement: str, values: Any, setup: str | None = None) -> Any:
        name = self._named.get(statement)
        new = name is None
        if new and len(self._named) >= NAMED_PER_CONNECTION:
            self._to_close.append(self._named.popitem(last=False)[1])
        for closed in self._to_close:  # in the same round trip; PostgreSQL answers CloseComplete even for a name
            self._send_message(pg8000.core.CLOSE, pg8000.core.STATEMENT + closed)  # it does not have
        self._to_close.clear()
        if name is None:
            self._serial += 1
            name = f"ib_{self._serial}".encode("ascii") + pg8000.core.NULL_BYTE
        else:
            self._named.move_to_end(statement)
        self._parses = 0
        try:
            context = self._execute(statement, values, name, parse=new, setup=setup)
        finally:
            # It exists on the server even if Bind or Execute failed; not if its setup failed first (skipped then).
            if new and self._parses == (1 if setup is None else 2):
                self._named[statement] = name
        self._context = context
        return context.rows

    def _forget(self, statement: str) -> None:
        name = self._named.pop(statement, None)
        if name is not None:
            self._to_close.append(name)

    def handle_PARSE_COMPLETE(self, data: bytes, context: Any) -> None:  # noqa: N802 (pg8000's handler name)
        self._parses += 1


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached now; a transient condition, retry later."""


def text_problem(value: str) -> str | None:
    """Why PostgreSQL cannot store `value` in a text column (it refuses NUL, and UTF-8 has no lone
    surrogates), or None when it can."""
    if "\x00" in value:
        return "contains a NUL character (\\x00), which PostgreSQL cannot store"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate, which is not valid Unicode"
    return None


def register_vectors(conn: Connection) -> bool:
    """pgvector-python's adapters on `conn` (numpy arrays and HalfVector out, halfvec in as HalfVector);
    False while the database has no `vector` extension yet (the catalog creates it), so a later borrow tries again."""
    try:
        register_vector(conn)
    except RuntimeError:  # "vector type not found in the database"
        return False
    return True


def fits_bigint(value: int) -> bool:
    return BIGINT_MIN <= value <= BIGINT_MAX


def quote_ident(name: str) -> str:
    """Quote an identifier we generated ourselves; anything unexpected is refused, never executed."""
    if not IDENTIFIER.match(name) or name.startswith("pg_"):
        raise ValueError(f"refusing unsafe SQL identifier {name!r}")
    return f'"{name}"'


def connect_params(url: str) -> dict[str, Any]:
    """pg8000 keyword arguments from a postgresql:// URL (`?host=/dir` selects a Unix socket)."""
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql", "postgresql+pg8000"}:
        raise ValueError(f"database URL must start with postgresql://, got {parsed.scheme or url!r}")
    query = {name: values[-1] for name, values in parse_qs(parsed.query).items()}
    params: dict[str, Any] = {
        "user": unquote(parsed.username or "postgres"),
        "database": unquote(parsed.path.lstrip("/")) or "postgres",
        # No socket timeout by default: index builds and big COPYs legitimately run for minutes.
        # `?timeout=SECONDS` in the URL sets one (it applies to connecting and to every read).
        "timeout": float(query["timeout"]) if query.get("timeout") else None,
    }
    if parsed.password:
        params["password"] = unquote(parsed.password)
    socket_dir = query.get("host") if query.get("host", "").startswith("/") else None
    if socket_dir:
        params["unix_sock"] = f"{socket_dir}/.s.PGSQL.{parsed.port or query.get('port') or 5432}"
    else:
        params["host"] = parsed.hostname or "localhost"
        params["port"] = parsed.port or 5432
    if query.get("sslmode") in {"require", "verify-ca", "verify-full"}:
        import ssl

        context = ssl.create_default_context()
        if query["sslmode"] == "require":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        params["ssl_context"] = context
    if query.get("application_name"):
        params["application_name"] = query["application_name"]
    return params


def error_fields(exc: BaseException) -> dict[str, str]:
    """The server's error fields of a pg8000 DatabaseError ("C": the SQLSTATE, "M": the message), else none."""
    if isinstance(exc, pg8000.exceptions.DatabaseError) and exc.args and isinstance(exc.args[0], dict):
        return exc.args[0]
    return {}


def _is_stale_plan(exc: BaseException) -> bool:
    """A named statement whose table changed its columns since it was parsed (PostgreSQL re-plans on its own, but
    refuses a changed result type)."""
    fields = error_fields(exc)
    return fields.get("C") == "0A000" and "cached plan" in fields.get("M", "")


def is_connection_lost(exc: BaseException) -> bool:
    if isinstance(exc, pg8000.exceptions.InterfaceError | ConnectionError | OSError):
        return True
    return error_fields(exc).get("C") in CONNECTION_LOST_CODES


class Database:
    """A pool of pg8000 connections to one database."""

    def __init__(self, url: str, *, max_size: int = 8):
        self.url = url
        self._params = connect_params(url)
        self._idle: queue.LifoQueue[Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(max_size)
        self._generation = 0  # bumped on every lost connection; older connections are not reused
        self._lock = threading.Lock()
        self.lost_connections = 0  # how many times a connection was found dead (logs, tests, benchmarks)

    def _connect(self) -> Connection:
        generation = self._generation  # read first: a connection opened during an invalidation is suspect
        try:
            conn = Connection(**self._params)
        except Exception as exc:
            where = self._params.get("unix_sock") or f"{self._params.get('host')}:{self._params.get('port')}"
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {where}: {exc}. Check that the server is running "
                "and IB_DATABASE_URL is right."
            ) from exc
        conn.generation = generation
        return conn

    def _take_idle(self) -> Connection | None:
        """An idle connection of the current generation, closing stale ones on the way; None if none."""
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return None
            if conn.generation == self._generation:
                return conn
            _close_quietly(conn)

    @contextmanager
    def connection(self, *, fresh: bool = False) -> Iterator[Connection]:
        """Borrow a connection (`fresh`: a newly opened one); it goes back to the pool unless it broke
        or the pool was invalidated meanwhile."""
        self._slots.acquire()
        conn: Connection | None = None
        try:
            conn = (None if fresh else self._take_idle()) or self._connect()
            if not conn.vectors_registered:
                conn.vectors_registered = register_vectors(conn)
            yield conn
        except BaseException as exc:
            if conn is not None and is_connection_lost(exc):
                _close_quietly(conn)
                conn = None
            raise
        finally:
            if conn is not None:
                if conn.generation == self._generation:
                    self._idle.put(conn)
                else:
                    _close_quietly(conn)
            self._slots.release()

    def invalidate(self, reason: BaseException | None = None) -> None:
        """A connection was found dead: close the idle ones now and every one opened before this moment
        when it comes back, so no caller (a retry above all) gets a sibling that died in the same event."""
        with self._lock:
            self._generation += 1
            self.lost_connections += 1
        log.warning("database connection lost (%s); reconnecting", reason or "invalidated")
        self.discard_idle()

    def run_with_retry(self, operation: Callable[[Connection], T]) -> T:
        """Run `operation(conn)`; if the connection was lost, run it again on a new connection.

        Each retry is a separate event (the connections of the first one were all dropped), so a few
        are allowed: a server killing every backend again a moment later costs one more retry, not an error.
        """
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self.connection(fresh=attempt > 1) as conn:
                    return operation(conn)
            except DatabaseUnavailable:
                if attempt == ATTEMPTS:
                    raise
            except Exception as exc:
                if not is_connection_lost(exc):
                    raise
                self.invalidate(exc)
                if attempt == ATTEMPTS:
                    raise DatabaseUnavailable(f"database connection lost {ATTEMPTS} times in a row: {exc}") from exc
        raise AssertionError("unreachable")

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        """One statement in autocommit, run again on a new connection if its connection was lost."""
        return self.run_with_retry(lambda conn: conn.run(sql, **params))

    def run_prepared(self, sql: str, *, setup: str | None = None, **params: Any) -> list[list[Any]]:
        """`run` as a named statement on each connection, after `setup` in the same round trip
        (Connection.run_prepared): for the hot search statements."""
        return self.run_with_retry(lambda conn: conn.run_prepared(sql, setup=setup, **params))

    def ping(self) -> None:
        """Raise unless the database answers a trivial statement (the health check)."""
        self.run("SELECT 1")

    def transaction(self, operation: Callable[[Connection], T]) -> T:
        """Run `operation` inside BEGIN/COMMIT (rolled back on error), run again if the connection was lost."""

        def in_transaction(conn: Connection) -> T:
            conn.run("BEGIN")
            try:
                result = operation(conn)
            except BaseException as exc:
                if not is_connection_lost(exc):
                    conn.run("ROLLBACK")
                raise
            conn.run("COMMIT")
            return result

        return self.run_with_retry(in_transaction)

    def create_once(self, key: str, *statements: str) -> None:
        """Run `CREATE ... IF NOT EXISTS` statements under a transaction-level advisory lock on `key`: two sessions
        creating the same table at once do not both see it missing, and one fails on pg_type's unique index
        (a stack's API and worker starting together did)."""

        def run(conn: Connection) -> None:
            conn.run("SELECT pg_advisory_xact_lock(hashtext(:key))", key=key)
            for statement in statements:
                conn.run(statement)

        self.transaction(run)

    def discard_idle(self) -> None:
        while True:
            try:
                _close_quietly(self._idle.get_nowait())
            except queue.Empty:
                return

    def close(self) -> None:
        self.discard_idle()


def _close_quietly(conn: pg8000.native.Connection) -> None:
    with suppress(Exception):  # the socket may already be gone; nothing to do
        conn.close()
