"""The one run store: runs, users and API keys in SQLite (WAL) by default, PostgreSQL when DATABASE_URL says so.

Every status change is a single conditional UPDATE, so two workers can never both claim a run and a
late writer can never move a finished run back. The tables are made and changed by migrations (taskqueue/schema.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError

from taskqueue.schema import SchemaChange, unusable_store_errors, upgrade_to_head

if TYPE_CHECKING:
    from pipeline.settings import Settings

log = logging.getLogger("taskqueue.store")

QUEUED, EXECUTING, COMPLETED, FAILED = "QUEUED", "EXECUTING", "COMPLETED", "FAILED"
CANCELED, CRASHED, TIMED_OUT = "CANCELED", "CRASHED", "TIMED_OUT"
EXPIRED = "EXPIRED"  # a COMPLETED run whose files OUTPUT_RETENTION_DAYS removed (the original's status)
STATUSES = (QUEUED, EXECUTING, COMPLETED, FAILED, CANCELED, CRASHED, TIMED_OUT, EXPIRED)
FINAL_STATUSES = frozenset({COMPLETED, FAILED, CANCELED, CRASHED, TIMED_OUT, EXPIRED})

# What the code reads and writes. A change here needs a revision in taskqueue/migrations (see its README.md).
metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("batch_id", String(40), nullable=False),
    Column("owner", String(64), nullable=False),
    Column("artist_account_id", String(36), nullable=False),
    Column("artist_slug", String(100), nullable=False),
    Column("template", String(100), nullable=True),
    Column("request", JSON, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("step", String(40), nullable=True),
    Column("progress", Float, nullable=False, default=0.0),
    Column("timeline", JSON, nullable=False),
    Column("output", JSON, nullable=True),
    Column("error", JSON, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("worker", String(200), nullable=True),
    Column("heartbeat_at", Float, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("not_before", Float, nullable=True),  # a retry waits until then (its queue message is delayed too)
    Index("ix_runs_owner_created", "owner", "created_at"),
    Index("ix_runs_status_heartbeat", "status", "heartbeat_at"),
    Index("ix_runs_owner_status", "owner", "status"),  # an account's active runs (quotas)
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("account_id", String(64), nullable=False),
    Column("label", String(200), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("id", String(40), nullable=True),  # what list-keys shows and revoke-key takes; set on every row
    Column("last_used_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),  # set: refused from the next request on, on every process
    Index("ix_api_keys_id", "id", unique=True),
    Index("ix_api_keys_account", "account_id"),
)

# When each account last had a run claimed: workers take queued runs in turn across accounts (claim_next).
account_turns = Table(
    "account_turns",
    metadata,
    Column("owner", String(64), primary_key=True),
    Column("claimed_at", Float, nullable=False),
)

# People who sign in to the UI; each has an account (what runs, keys and artists belong to).
users = Table(
    "users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("email", String(320), nullable=False),  # stored lower-cased
    Column("password_hash", String(200), nullable=False),  # argon2id, in its own encoded form
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("account_id", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("session_epoch", Integer, nullable=False, default=0),  # signing out ends every session made before
    Index("ix_users_email", "email", unique=True),
    Index("ix_users_account", "account_id"),
)

# A create request retried with the same Idempotency-Key gets the first answer back (response is NULL
# while the first request is still being handled).
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("owner", String(64), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("body_hash", String(64), nullable=False),
    Column("response", JSON(none_as_null=True), nullable=True),
    Column("created_at", Float, nullable=False),
)

IDEMPOTENCY_NEW, IDEMPOTENCY_REPLAY, IDEMPOTENCY_MISMATCH, IDEMPOTENCY_PENDING = "new", "replay", "mismatch", "pending"

# One row per worker process (host:pid), beating even when idle: what GET /api/health calls live workers.
workers = Table(
    "workers",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("current_run", String(40), nullable=True),
)

# One row per webhook delivery (a run's final event, or a batch's): written with the runs, made `pending` by the
# worker side when the run (or the whole batch) is final, then tried until delivered or out of attempts. The
# rows are the queue, so a restarted consumer picks up where the last one left off.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),  # X-Studio-Delivery: the same on every retry
    Column("owner", String(64), nullable=False),
    Column("batch_id", String(40), nullable=False),
    Column("run_id", String(40), nullable=True),  # NULL: the batch's own event
    Column("url", String(2048), nullable=False),
    Column("state", String(12), nullable=False),  # waiting | pending | delivered | failed
    Column("event", String(32), nullable=True),  # known once the run (or batch) is final
    Column("payload", JSON(none_as_null=True), nullable=True),  # frozen then, so every retry sends the same body
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", Float, nullable=True),  # pending: the next try (while one is sending: its lease)
    Column("history", JSON, nullable=False),  # [{attempt, at, status, error}]
    Column("created_at", Float, nullable=False),
    Index("ix_webhook_deliveries_state_next", "state", "next_at"),
    Index("ix_webhook_deliveries_run", "run_id"),
    Index("ix_webhook_deliveries_batch", "batch_id"),
)
WEBHOOK_WAITING, WEBHOOK_PENDING, WEBHOOK_DELIVERED, WEBHOOK_FAILED = "waiting", "pending", "delivered", "failed"

KEY_USE_RESOLUTION_SECONDS = 60.0  # how exactly a key's last_used_at is kept
KEY_ACCOUNT_NAMESPACE = uuid.UUID("6f1c5d1e-2b7a-4c52-9a43-5f0f3c8e7a11")


@dataclass
class Run:
    id: str
    batch_id: str
    owner: str
    artist_account_id: str
    artist_slug: str
    template: str | None
    request: dict
    seed: int
    status: str
    step: str | None
    progress: float
    timeline: list[dict]
    output: dict | None
    error: dict | None
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    worker: str | None
    heartbeat_at: float | None
    cancel_requested: bool

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class NewRun:
    artist_account_id: str
    artist_slug: str
    template: str | None
    request: dict
    seed: int
    id: str = field(default_factory=lambda: new_run_id())


@dataclass(frozen=True)
class User:
    id: str
    email: str
    password_hash: str
    is_admin: bool
    account_id: str
    created_at: float
    session_epoch: int = 0


@dataclass(frozen=True)
class KeyInfo:
    """An API key as it may be shown: never the secret, which only its maker saw once."""

    id: str
    account_id: str
    label: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


class AlreadyExists(Exception):
    """A user with that email exists."""


class QuotaExceeded(Exception):
    """A batch that would take an account past MAX_ACTIVE_RUNS_PER_ACCOUNT; nothing was written."""

    def __init__(self, active: int, limit: int):
        super().__init__(f"{active} active of {limit}")
        self.active = active
        self.limit = limit


@dataclass(frozen=True)
class ReapResult:
    crashed: list[str]
    requeued: list[str]


def new_run_id() -> str:
    return "run_" + secrets.token_hex(8)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def normal_email(email: str) -> str:
    return (email or "").strip().lower()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def account_for_configured_key(key: str) -> str:
    """A key from API_KEYS always maps to the same account id (derived from its hash, never stored)."""
    return str(uuid.uuid5(KEY_ACCOUNT_NAMESPACE, hash_key(key)))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is switched off so `_sqlite_begin` decides how to begin.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # Writers take the write lock up front: a read that later upgrades to a write can fail at once
    # with "database is locked" instead of waiting for the busy timeout.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


class RunInsert:
    """INSERT INTO runs, compiled once for the engine's dialect and fed plain values.

    SQLAlchemy's executemany sends every parameter of every row through its bind processors (a json.dumps
    per JSON column per row): 28-33 % of the server's Python time under batch-30 creates. Here a JSON value
    the rows share (the request, the empty timeline) is dumped once per batch, the way SQLAlchemy would.
    """

    def __init__(self, engine: Engine):
        compiled = insert(runs).compile(dialect=engine.dialect, column_keys=[c.key for c in runs.columns])
        self.sql = str(compiled)
        self.names: list[str] = list(compiled.positiontup or []) if compiled.positional else []
        self.json_names = frozenset(c.key for c in runs.columns if isinstance(c.type, JSON))

    def params(self, rows: list[dict[str, Any]]) -> list[Any]:
        dumped: dict[int, str] = {}

        def value(name: str, v: Any) -> Any:
            if name not in self.json_names:
                return v
            if id(v) not in dumped:  # rows are alive for the whole call, so ids are stable
                dumped[id(v)] = json.dumps(v)  # None too: SQLAlchemy's JSON stores it as 'null'
            return dumped[id(v)]

        if self.names:
            return [tuple(value(n, row[n]) for n in self.names) for row in rows]
        return [{n: value(n, v) for n, v in row.items()} for row in rows]


def _row_to_run(row: Any) -> Run:
    return _run_from(row._mapping)


def _run_from(m: Any) -> Run:
    """A Run from a row's mapping, or from the values about to be inserted."""
    return Run(
        id=m["id"], batch_id=m["batch_id"], owner=m["owner"], artist_account_id=m["artist_account_id"],
        artist_slug=m["artist_slug"], template=m["template"], request=m["request"] or {}, seed=int(m["seed"]),
        status=m["status"], step=m["step"], progress=float(m["progress"] or 0.0), timeline=m["timeline"] or [],
        output=m["output"], error=m["error"], attempts=int(m["attempts"] or 0), created_at=m["created_at"],
        started_at=m["started_at"], finished_at=m["finished_at"], worker=m["worker"],
        heartbeat_at=m["heartbeat_at"], cancel_requested=bool(m["cancel_requested"]),
    )


def migrate(url: str, migrations: Path | None = None) -> SchemaChange:
    """Bring the run store at `url` to the newest revision (`python -m taskqueue migrate`)."""
    with unusable_store_errors(url):
        engine = make_engine(url)
        try:
            return upgrade_to_head(engine, migrations)
        finally:
            engine.dispose()


class RunStore:
    """Runs, users and API keys; safe to share between threads, one instance per process.

    Opening it brings the schema to head first (`migrations`: another revisions folder than the bundled one);
    RunStoreUnusable when the database cannot be reached or written, or is newer than this code.
    """

    def __init__(self, url: str, *, clock: Any = time.time, migrations: Path | None = None):
        self.url = url
        with unusable_store_errors(url):
            self.engine = make_engine(url)
            try:
                self.schema = upgrade_to_head(self.engine, migrations)
            except BaseException:
                self.engine.dispose()
                raise
        if self.schema.applied:
            # WARNING, not INFO: a schema change must show in every process's log, and uvicorn configures none
            log.warning(self.schema.describe())
        self.clock = clock
        # SQLite has one writer. Threads of this process wait their turn here, in order, rather than in
        # SQLite's busy handler, which sleeps in growing steps: under 20 concurrent API clients a few writers
        # starved there for over a second (docs/PERFORMANCE.md). Other processes still meet the busy timeout.
        self._writer = threading.Lock() if self.engine.dialect.name == "sqlite" else contextlib.nullcontext()
        self._insert_runs = RunInsert(self.engine)
        # How many threads of a process should write at once: SQLite takes one writer at a time anyway (more
        # threads only fight over the GIL); a server database overlaps their round trips.
        self.concurrent_writers = 1 if self.engine.dialect.name == "sqlite" else 5
        self._admin_cache: dict[str, tuple[float, bool]] = {}

    @classmethod
    def for_settings(cls, settings: Settings) -> RunStore:
        return cls(settings.sqlalchemy_url, migrations=settings.migrations_dir)

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._writer, self.engine.connect().execution_options(write=True) as conn:
            yield conn

    # --- runs -----------------------------------------------------------------------------------

    def create_batch(self, owner: str, new_runs: Iterable[NewRun], *, webhook_url: str | None = None,
                     max_active: int | None = None) -> list[Run]:
        """Write the runs of one request as QUEUED, all or none (with a webhook: its delivery rows too).

        With `max_active`: QuotaExceeded, and nothing written, when the owner's queued and running runs plus
        these would pass it (counted in the same transaction as the insert, so racing requests cannot both pass).
        """
        batch_id = "batch_" + secrets.token_hex(8)
        now = self.clock()
        rows = [
            {
                "id": r.id, "batch_id": batch_id, "owner": owner, "artist_account_id": r.artist_account_id,
                "artist_slug": r.artist_slug, "template": r.template, "request": r.request, "seed": r.seed,
                "status": QUEUED, "step": None, "progress": 0.0, "timeline": [], "output": None, "error": None,
                "attempts": 0, "created_at": now, "started_at": None, "finished_at": None, "worker": None,
                "heartbeat_at": None, "cancel_requested": False, "not_before": None,
            }
            for r in new_runs
        ]
        if not rows:
            return []
        with self._write() as conn, conn.begin():
            if max_active is not None:
                self._check_quota(conn, owner, len(rows), max_active)
            conn.exec_driver_sql(self._insert_runs.sql, self._insert_runs.params(rows))
            if webhook_url:
                hooks = [{"id": "dlv_" + secrets.token_hex(10), "owner": owner, "batch_id": batch_id, "run_id": run_id,
                          "url": webhook_url, "state": WEBHOOK_WAITING, "event": None, "payload": None,
                          "attempts": 0, "next_at": None, "history": [], "created_at": now}
                         for run_id in [*(row["id"] for row in rows), None]]
                conn.execute(insert(webhook_deliveries), hooks)
        # What was written, not read back: the batch's read-back was a fifth of a batch-30 request
        return [_run_from(row) for row in rows]

    def _check_quota(self, conn: Connection, owner: str, adding: int, max_active: int) -> None:
        # SQLite: BEGIN IMMEDIATE already holds the one write lock. PostgreSQL: one account's creates take turns
        # on a transaction-scoped advisory lock (READ COMMITTED alone would let two of them count the same rows).
        if self.engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:owner))"), {"owner": "quota:" + owner})
        active = self.active_count(owner, conn)
        if active + adding > max_active:
            raise QuotaExceeded(active, max_active)

    def active_count(self, owner: str, conn: Connection | None = None) -> int:
        """The owner's runs that are queued or running."""
        query = select(func.count()).select_from(runs).where(runs.c.owner == owner,
                                                             runs.c.status.in_([QUEUED, EXECUTING]))
        if conn is not None:
            return int(conn.execute(query).scalar() or 0)
        with self.engine.connect() as own:
            return int(own.execute(query).scalar() or 0)

    def get(self, run_id: str, owner: str | None = None) -> Run | None:
        """The run, or None when it does not exist or (with `owner`) is someone else's."""
        query = select(runs).where(runs.c.id == run_id)
        if owner is not None:
            query = query.where(runs.c.owner == owner)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _row_to_run(row) if row else None

    def list_runs(self, owner: str | None, *, status: Iterable[str] | None = None, artist: str | None = None,
             limit: int = 20) -> list[Run]:
        """Newest first."""
        query = select(runs)
        if owner is not None:
            query = query.where(runs.c.owner == owner)
        statuses = list(status or [])
        if statuses:
            query = query.where(runs.c.status.in_(statuses))
        if artist:
            query = query.where((runs.c.artist_account_id == artist) | (runs.c.artist_slug == artist))
        query = query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_row_to_run(r) for r in conn.execute(query)]

    def completed_before(self, before: float) -> list[str]:
        """Runs that completed before `before` (epoch seconds) and still have their files."""
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(runs.c.id).where(runs.c.status == COMPLETED,
                                                                       runs.c.finished_at < before))]

    def expire(self, run_id: str, message: str) -> bool:
        """COMPLETED -> EXPIRED once its files are gone; the output says so and links nothing."""
        return self._update(run_id, runs.c.status == COMPLETED, status=EXPIRED,
                            output={"expired": True, "message": message},
                            error={"stage": "retention", "message": message})

    def ids_with_status(self, status: str) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(runs.c.id).where(runs.c.status == status))]

    def _update(self, run_id: str, where: Any, **values: Any) -> bool:
        with self._write() as conn, conn.begin():
            result = conn.execute(update(runs).where(runs.c.id == run_id, where).values(**values))
        return result.rowcount == 1

    def claim(self, run_id: str, worker: str) -> bool:
        """QUEUED -> EXECUTING for exactly one caller; False when the run is not (or no longer) queued."""
        now = self.clock()
        return self._update(
            run_id, (runs.c.status == QUEUED) & (runs.c.cancel_requested.is_(False)),
            status=EXECUTING, started_at=now, heartbeat_at=now, worker=worker, attempts=runs.c.attempts + 1,
            step=None, progress=0.0, timeline=[], error=None,
        )

    def claim_next(self, worker: str) -> str | None:
        """Claim a queued run, taking turns across accounts: the account whose last claim is oldest (or that never
        had one) goes first, and within it its oldest run. The id claimed, or None when no run can start now.

        A queue message is a turn, not a particular run: each queued run has one message, each message claims one
        run, so one account's batch of 30 waits behind another's single run instead of in front of it.
        """
        for _ in range(5):  # a server database's racing claim may take the pick first: pick again
            with self._write() as conn, conn.begin():
                now = self.clock()
                ready = ((runs.c.status == QUEUED) & runs.c.cancel_requested.is_(False)
                         & (runs.c.not_before.is_(None) | (runs.c.not_before <= now)))
                t = account_turns
                pick = conn.execute(
                    select(runs.c.id, runs.c.owner).select_from(runs.outerjoin(t, t.c.owner == runs.c.owner))
                    .where(ready).order_by(func.coalesce(t.c.claimed_at, 0.0), runs.c.created_at, runs.c.id)
                    .limit(1)).first()
                if pick is None:
                    return None
                run_id, owner = pick
                claimed = conn.execute(update(runs).where(runs.c.id == run_id, ready).values(
                    status=EXECUTING, started_at=now, heartbeat_at=now, worker=worker, attempts=runs.c.attempts + 1,
                    step=None, progress=0.0, timeline=[], error=None, not_before=None)).rowcount == 1
                if claimed:
                    self._took_turn(conn, owner, now)
                    return run_id
        return None

    def next_ready_in(self) -> float | None:
        """Seconds until the soonest delayed retry may start (None: no queued run is waiting out a delay)."""
        with self.engine.connect() as conn:
            soonest = conn.execute(select(func.min(runs.c.not_before)).where(
                runs.c.status == QUEUED, runs.c.cancel_requested.is_(False), runs.c.not_before > self.clock())).scalar()
        return None if soonest is None else max(0.0, soonest - self.clock())

    def _took_turn(self, conn: Connection, owner: str, now: float) -> None:
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert
        statement = upsert(account_turns).values(owner=owner, claimed_at=now)
        conn.execute(statement.on_conflict_do_update(index_elements=["owner"], set_={"claimed_at": now}))

    def progress(self, run_id: str, step: str, percent: float, timeline: list[dict]) -> bool:
        return self._update(run_id, runs.c.status == EXECUTING, step=step,
                            progress=round(max(0.0, min(100.0, percent)), 1), timeline=timeline,
                            heartbeat_at=self.clock())

    def heartbeat(self, run_id: str, worker: str) -> bool:
        return self._update(run_id, (runs.c.status == EXECUTING) & (runs.c.worker == worker),
                            heartbeat_at=self.clock())

    def finish(self, run_id: str, output: dict, timeline: list[dict] | None = None) -> bool:
        values: dict[str, Any] = {"status": COMPLETED, "output": output, "progress": 100.0,
                                  "finished_at": self.clock(), "step": "done", "error": None}
        if timeline is not None:
            values["timeline"] = timeline
        return self._update(run_id, runs.c.status == EXECUTING, **values)

    def fail(self, run_id: str, status: str, stage: str | None, message: str,
             timeline: list[dict] | None = None) -> bool:
        """Move a queued or executing run to a final failure status with {stage, message}."""
        if status not in FINAL_STATUSES or status == COMPLETED:
            raise ValueError(f"not a failure status: {status}")
        values: dict[str, Any] = {"status": status, "error": {"stage": stage, "message": message},
                                  "finished_at": self.clock()}
        if timeline is not None:
            values["timeline"] = timeline
        return self._update(run_id, runs.c.status.in_([QUEUED, EXECUTING]), **values)

    def requeue(self, run_id: str, *, error: dict | None = None, count_attempt: bool = True,
                worker: str | None = None, delay: float | None = None) -> bool:
        """EXECUTING -> QUEUED (a retry); `count_attempt=False` when the run was interrupted, not failed;
        with `worker`, only if that worker holds it; with `delay`, no claim takes it before that many seconds."""
        values: dict[str, Any] = {"status": QUEUED, "step": None, "progress": 0.0, "worker": None,
                                  "heartbeat_at": None, "started_at": None, "error": error,
                                  "not_before": self.clock() + delay if delay else None}
        if not count_attempt:
            values["attempts"] = runs.c.attempts - 1
        where = runs.c.status == EXECUTING
        if worker is not None:
            where = where & (runs.c.worker == worker)
        return self._update(run_id, where, **values)

    def request_cancel(self, run_id: str, owner: str | None) -> Run | None:
        """A queued run is CANCELED at once; an executing one is flagged for its worker to stop."""
        run = self.get(run_id, owner)
        if run is None:
            return None
        if run.status == QUEUED:
            self._update(run_id, runs.c.status == QUEUED, status=CANCELED, cancel_requested=True,
                         finished_at=self.clock(), error={"stage": "queue", "message": "Cancelled before it started"})
        if self.get(run_id, owner).status == EXECUTING:  # type: ignore[union-attr]
            self._update(run_id, runs.c.status == EXECUTING, cancel_requested=True)
        return self.get(run_id, owner)

    def cancel_requested(self, run_id: str) -> bool:
        with self.engine.connect() as conn:
            value = conn.execute(select(runs.c.cancel_requested).where(runs.c.id == run_id)).scalar()
        return bool(value)

    def reap_stale(self, older_than_seconds: float, max_crash_retries: int) -> ReapResult:
        """Runs EXECUTING without a heartbeat for `older_than_seconds`: queued again while they have
        crash retries left (attempts <= max_crash_retries), else CRASHED."""
        cutoff = self.clock() - older_than_seconds
        with self.engine.connect() as conn:
            stale = conn.execute(
                select(runs.c.id, runs.c.attempts, runs.c.cancel_requested)
                .where(runs.c.status == EXECUTING, runs.c.heartbeat_at < cutoff)
            ).all()
        crashed, requeued = [], []
        stale_where = (runs.c.status == EXECUTING) & (runs.c.heartbeat_at < cutoff)
        for run_id, attempts, cancel in stale:
            if not cancel and attempts <= max_crash_retries:
                if self._update(run_id, stale_where, status=QUEUED, step=None, progress=0.0, worker=None,
                                heartbeat_at=None, started_at=None,
                                error={"stage": "worker", "message": "The worker stopped; the run was queued again"}):
                    requeued.append(run_id)
            elif self._update(run_id, stale_where, status=CRASHED, finished_at=self.clock(),
                              error={"stage": "worker",
                                     "message": f"The worker stopped responding (no heartbeat for "
                                                f"{older_than_seconds:g} s)"}):
                crashed.append(run_id)
        return ReapResult(crashed=crashed, requeued=requeued)

    def recent_durations(self, *, lipsync: bool | None = None, limit: int = 20) -> list[float]:
        """Seconds from start to finish of the latest completed runs (for estimates)."""
        query = (select(runs.c.started_at, runs.c.finished_at, runs.c.request)
                 .where(runs.c.status == COMPLETED, runs.c.started_at.is_not(None))
                 .order_by(runs.c.finished_at.desc()).limit(limit * 4))
        out: list[float] = []
        with self.engine.connect() as conn:
            for started, finished, request in conn.execute(query):
                if lipsync is not None and bool((request or {}).get("lipsync")) != lipsync:
                    continue
                if finished and started and finished >= started:
                    out.append(finished - started)
                if len(out) >= limit:
                    break
        return out

    def count(self, status: str | None = None) -> int:
        query = select(func.count()).select_from(runs)
        if status:
            query = query.where(runs.c.status == status)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    # --- idempotency keys -----------------------------------------------------------------------

    def begin_idempotent(self, owner: str, key: str, body_hash: str, *, ttl: float = 24 * 3600.0,
                         pending_timeout: float = 300.0) -> tuple[str, dict | None]:
        """Reserve `key` for this request: (IDEMPOTENCY_NEW, None) for the first request, (IDEMPOTENCY_REPLAY,
        response) for a finished one with the same body, IDEMPOTENCY_MISMATCH for another body and
        IDEMPOTENCY_PENDING while the first is still being handled.

        A key older than `ttl` is forgotten, and one still pending after `pending_timeout` (its server died
        mid-request) is released: either is taken as new instead of answering 409 for ever.
        """
        for _ in range(2):
            try:
                with self._write() as conn, conn.begin():
                    conn.execute(insert(idempotency_keys).values(owner=owner, key=key, body_hash=body_hash,
                                                                 response=None, created_at=self.clock()))
                return IDEMPOTENCY_NEW, None
            except IntegrityError:
                pass
            with self.engine.connect() as conn:
                row = conn.execute(select(idempotency_keys.c.body_hash, idempotency_keys.c.response,
                                          idempotency_keys.c.created_at)
                                   .where(idempotency_keys.c.owner == owner, idempotency_keys.c.key == key)).first()
            if row is None:  # released between our insert and this read: the caller may simply try again
                return IDEMPOTENCY_PENDING, None
            age = self.clock() - row[2]
            if not (age > ttl or (row[1] is None and age > pending_timeout)):
                break
            with self._write() as conn, conn.begin():  # only that row: a newer holder of the key keeps it
                conn.execute(delete(idempotency_keys).where(idempotency_keys.c.owner == owner,
                                                            idempotency_keys.c.key == key,
                                                            idempotency_keys.c.created_at == row[2]))
        else:
            return IDEMPOTENCY_PENDING, None
        if row[0] != body_hash:
            return IDEMPOTENCY_MISMATCH, None
        if row[1] is None:
            return IDEMPOTENCY_PENDING, None
        return IDEMPOTENCY_REPLAY, row[1]

    def expire_idempotency(self, older_than: float) -> int:
        """Forget keys made more than `older_than` seconds ago (the periodic task); how many went."""
        with self._write() as conn, conn.begin():
            return conn.execute(delete(idempotency_keys)
                                .where(idempotency_keys.c.created_at < self.clock() - older_than)).rowcount

    def finish_idempotent(self, owner: str, key: str, response: dict) -> None:
        with self._write() as conn, conn.begin():
            conn.execute(update(idempotency_keys)
                         .where(idempotency_keys.c.owner == owner, idempotency_keys.c.key == key)
                         .values(response=response))

    def release_idempotent(self, owner: str, key: str) -> None:
        """The request failed before anything was created: the key may be used again."""
        with self._write() as conn, conn.begin():
            conn.execute(delete(idempotency_keys)
                         .where(idempotency_keys.c.owner == owner, idempotency_keys.c.key == key,
                                idempotency_keys.c.response.is_(None)))

    def count_by_status(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status)).all()
        return {status: int(n) for status, n in rows}

    # --- workers --------------------------------------------------------------------------------

    def worker_beat(self, name: str, host: str, pid: int, started_at: float, current_run: str | None) -> None:
        """Insert or refresh a worker's row (an UPDATE first: after the first beat that is all it takes)."""
        now = self.clock()
        with self._write() as conn, conn.begin():
            done = conn.execute(update(workers).where(workers.c.name == name)
                                .values(heartbeat_at=now, current_run=current_run)).rowcount
        if done:
            return
        try:
            with self._write() as conn, conn.begin():
                conn.execute(insert(workers).values(name=name, host=host, pid=pid, started_at=started_at,
                                                    heartbeat_at=now, current_run=current_run))
        except IntegrityError:  # a concurrent first beat of the same name: it is there now
            pass

    def worker_gone(self, name: str) -> None:
        with self._write() as conn, conn.begin():
            conn.execute(delete(workers).where(workers.c.name == name))

    def live_workers(self, within_seconds: float) -> list[dict[str, Any]]:
        """Workers whose last beat is at most `within_seconds` old, oldest first."""
        cutoff = self.clock() - within_seconds
        with self.engine.connect() as conn:
            rows = conn.execute(select(workers).where(workers.c.heartbeat_at >= cutoff)
                                .order_by(workers.c.started_at, workers.c.name)).all()
        return [dict(r._mapping) for r in rows]

    def forget_workers(self, older_than_seconds: float) -> int:
        """Drop rows of workers silent for this long (killed ones never say goodbye)."""
        with self._write() as conn, conn.begin():
            return conn.execute(delete(workers)
                                .where(workers.c.heartbeat_at < self.clock() - older_than_seconds)).rowcount

    # --- API keys -------------------------------------------------------------------------------

    def create_key(self, account_id: str | None = None, label: str = "") -> tuple[str, str]:
        """A new key: (plaintext, account id). Only the hash is stored; the plaintext is shown once."""
        plaintext, info = self.make_key(account_id, label)
        return plaintext, info.account_id

    def make_key(self, account_id: str | None = None, label: str = "") -> tuple[str, KeyInfo]:
        """A new key (for a new account when none is given): the plaintext, shown once, and what may be shown."""
        plaintext = "sk_" + secrets.token_urlsafe(32)
        info = KeyInfo(id=new_key_id(), account_id=account_id or str(uuid.uuid4()), label=label,
                       created_at=self.clock(), last_used_at=None, revoked_at=None)
        with self._write() as conn, conn.begin():
            conn.execute(insert(api_keys).values(key_hash=hash_key(plaintext), account_id=info.account_id,
                                                 label=label, created_at=info.created_at, id=info.id))
        return plaintext, info

    def verify_key(self, key: str) -> str | None:
        """The account of a stored key that is not revoked, or None. Read on every request (no cache), so a
        revocation holds from the next request on, in every process."""
        digest = hash_key(key)
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys.c.key_hash, api_keys.c.account_id, api_keys.c.last_used_at)
                               .where(api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None))).first()
        if row is None or not hmac.compare_digest(row[0], digest):
            return None
        if row[2] is None or self.clock() - row[2] > KEY_USE_RESOLUTION_SECONDS:
            # "last used" to the minute: one write a minute per key, not one per request
            with self._write() as conn, conn.begin():
                conn.execute(update(api_keys).where(api_keys.c.key_hash == digest).values(last_used_at=self.clock()))
        return row[1]

    def list_keys(self, account_id: str | None = None) -> list[KeyInfo]:
        """Keys of one account (every account's with None), oldest first, revoked ones included."""
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if account_id is not None:
            query = query.where(api_keys.c.account_id == account_id)
        with self.engine.connect() as conn:
            return [KeyInfo(id=r.id, account_id=r.account_id, label=r.label, created_at=r.created_at,
                            last_used_at=r.last_used_at, revoked_at=r.revoked_at) for r in conn.execute(query)]

    def revoke_key(self, key_id: str, account_id: str | None = None) -> bool:
        """Revoke a key (with `account_id`: only that account's); False when there is no such live key."""
        where = (api_keys.c.id == key_id) & api_keys.c.revoked_at.is_(None)
        if account_id is not None:
            where = where & (api_keys.c.account_id == account_id)
        with self._write() as conn, conn.begin():
            return conn.execute(update(api_keys).where(where).values(revoked_at=self.clock())).rowcount == 1

    # --- users ----------------------------------------------------------------------------------

    def create_user(self, email: str, password_hash: str, *, is_admin: bool = False,
                    account_id: str | None = None) -> User:
        """A new user with their own account (or `account_id`); AlreadyExists for a taken email."""
        user = User(id="usr_" + secrets.token_hex(8), email=normal_email(email), password_hash=password_hash,
                    is_admin=is_admin, account_id=account_id or str(uuid.uuid4()), created_at=self.clock())
        try:
            with self._write() as conn, conn.begin():
                conn.execute(insert(users).values(**user.__dict__))
        except IntegrityError:
            raise AlreadyExists(user.email) from None
        return user

    def _user_where(self, where: Any) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(where).order_by(users.c.created_at).limit(1)).first()
        return User(**row._mapping) if row else None

    def user_by_email(self, email: str) -> User | None:
        return self._user_where(users.c.email == normal_email(email))

    def get_user(self, user_id: str) -> User | None:
        return self._user_where(users.c.id == user_id)

    def has_users(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(users.c.id).limit(1)).first() is not None

    def is_admin_account(self, account_id: str) -> bool:
        """True when an admin user holds this account (admins may act for any account). Kept for a second per
        process: every run poll asks, and a user's admin flag is only ever set when the user is made."""
        now = self.clock()
        cached = self._admin_cache.get(account_id)
        if cached is not None and now - cached[0] < 1.0:
            return cached[1]
        with self.engine.connect() as conn:
            admin = conn.execute(select(users.c.id).where(users.c.account_id == account_id,
                                                          users.c.is_admin.is_(True)).limit(1)).first() is not None
        if len(self._admin_cache) > 10_000:
            self._admin_cache.clear()
        self._admin_cache[account_id] = (now, admin)
        return admin

    def end_sessions(self, user_id: str) -> None:
        """Sign-out: every session cookie issued to the user so far stops working, on every server."""
        with self._write() as conn, conn.begin():
            conn.execute(update(users).where(users.c.id == user_id).values(session_epoch=users.c.session_epoch + 1))

    def set_password(self, user_id: str, password_hash: str) -> None:
        """A re-hash with newer argon2 parameters after a sign-in (argon2's check_needs_rehash)."""
        with self._write() as conn, conn.begin():
            conn.execute(update(users).where(users.c.id == user_id).values(password_hash=password_hash))

    # --- webhook deliveries (sent by taskqueue/webhooks.py) ------------------------------------------------

    def webhooks_to_promote(self, limit: int = 50) -> list[dict[str, Any]]:
        """Waiting deliveries whose run is final, and batch deliveries whose runs all are."""
        d = webhook_deliveries
        unfinished = (select(runs.c.id).where(runs.c.batch_id == d.c.batch_id, runs.c.status.not_in(FINAL_STATUSES))
                      .exists())
        run_final = select(runs.c.id).where(runs.c.id == d.c.run_id, runs.c.status.in_(FINAL_STATUSES)).exists()
        query = (select(d).where(d.c.state == WEBHOOK_WAITING,
                                 ((d.c.run_id.is_not(None)) & run_final) | ((d.c.run_id.is_(None)) & ~unfinished))
                 .order_by(d.c.created_at, d.c.run_id.is_(None)).limit(limit))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def runs_of_batch(self, batch_id: str) -> list[Run]:
        with self.engine.connect() as conn:
            return [_row_to_run(r) for r in conn.execute(
                select(runs).where(runs.c.batch_id == batch_id).order_by(runs.c.created_at, runs.c.id))]

    def promote_webhook(self, delivery_id: str, event: str, payload: dict) -> bool:
        """waiting -> pending with its event and frozen body, due now; False when another worker did it."""
        d = webhook_deliveries
        with self._write() as conn, conn.begin():
            result = conn.execute(update(d).where(d.c.id == delivery_id, d.c.state == WEBHOOK_WAITING).values(
                state=WEBHOOK_PENDING, event=event, payload=payload, next_at=self.clock()))
        return result.rowcount == 1

    def due_webhooks(self, limit: int = 20) -> list[dict[str, Any]]:
        d = webhook_deliveries
        query = (select(d).where(d.c.state == WEBHOOK_PENDING, d.c.next_at <= self.clock())
                 .order_by(d.c.next_at).limit(limit))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def claim_webhook(self, delivery: dict[str, Any], lease_seconds: float) -> bool:
        """Take one due delivery for one try: its next_at moves to the lease's end, so a worker that dies while
        sending leaves it to be tried again then; only one of two racing workers gets it."""
        d = webhook_deliveries
        with self._write() as conn, conn.begin():
            result = conn.execute(update(d).where(
                d.c.id == delivery["id"], d.c.state == WEBHOOK_PENDING, d.c.next_at == delivery["next_at"],
                d.c.attempts == delivery["attempts"]).values(next_at=self.clock() + lease_seconds))
        return result.rowcount == 1

    def record_webhook_try(self, delivery_id: str, attempt: dict[str, Any], *, delivered: bool,
                           next_at: float | None) -> None:
        """One try's outcome: delivered, another try at `next_at`, or (next_at None) failed for good."""
        d = webhook_deliveries
        with self._write() as conn, conn.begin():
            row = conn.execute(select(d.c.history).where(d.c.id == delivery_id)).first()
            history = [*(row.history if row else []), attempt]
            state = WEBHOOK_DELIVERED if delivered else (WEBHOOK_PENDING if next_at is not None else WEBHOOK_FAILED)
            conn.execute(update(d).where(d.c.id == delivery_id).values(
                state=state, attempts=attempt["attempt"], next_at=next_at, history=history))

    def webhooks_for_runs(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Each run's delivery row (its url and history), by run id."""
        if not run_ids:
            return {}
        d = webhook_deliveries
        with self.engine.connect() as conn:
            rows = conn.execute(select(d.c.id, d.c.run_id, d.c.url, d.c.event, d.c.history)
                                .where(d.c.run_id.in_(run_ids)))
            return {r.run_id: dict(r._mapping) for r in rows}
