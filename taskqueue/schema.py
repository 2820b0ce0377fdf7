"""The run store's schema: brought to the newest Alembic revision (taskqueue/migrations) before a process uses it,
by one process at a time (a PostgreSQL advisory lock, or a file lock beside the SQLite file)."""

from __future__ import annotations

import contextlib
import fcntl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from pipeline.errors import StudioError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"  # Alembic's default name, which env.py keeps
BASELINE = "0001_baseline"  # the schema `metadata.create_all` made before migrations existed
# pg_advisory_lock's key: a fixed number nothing else on the database uses (sha256("studio run store migrations")).
PG_LOCK_KEY = 2591244660590087900
EXIT_UNUSABLE = 2  # the exit code of a process that cannot use its run store


class RunStoreUnusable(StudioError):
    """The run store cannot be reached, written, or brought to this code's schema; the message is one line."""

    status_code = 503


@dataclass(frozen=True)
class SchemaChange:
    """What bringing the schema to head did."""

    url: str  # password masked
    before: str | None  # the revision found (the baseline once stamped); None: no tables yet
    after: str
    stamped: bool = False  # tables made before migrations were recognised and stamped as the baseline

    @property
    def applied(self) -> bool:
        return self.stamped or self.before != self.after

    def describe(self) -> str:
        if not self.applied:
            return f"run store at {self.url}: already at head {self.after}"
        done = []
        if self.stamped:
            done.append(f"stamped the tables made before migrations as {BASELINE}")
        if self.before != self.after:
            done.append(f"upgraded {self.before or 'base'} -> {self.after}")
        return f"run store at {self.url}: " + "; ".join(done)


@dataclass(frozen=True)
class TableShape:
    columns: frozenset[tuple[str, bool]]  # (name, nullable)
    primary_key: tuple[str, ...]
    indexes: frozenset[tuple[str, tuple[str, ...], bool]]  # (name, columns, unique)


def masked(url: str) -> str:
    """The URL as it may be shown: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<DATABASE_URL that is not a URL>"  # it could be a password pasted in the wrong place


def _first_line(exc: BaseException) -> str:
    reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(reason).strip().splitlines()
    return lines[0].strip() if lines else type(reason).__name__


@contextlib.contextmanager
def unusable_store_errors(url: str) -> Iterator[None]:
    """Turn what a bad DATABASE_URL raises (no server, no such database, no permission) into RunStoreUnusable."""
    try:
        yield
    except RunStoreUnusable:
        raise
    except (DBAPIError, OSError) as exc:
        raise RunStoreUnusable(f"The run store at {masked(url)} cannot be used: {_first_line(exc)}") from exc
    except (ArgumentError, NoSuchModuleError) as exc:
        raise RunStoreUnusable(f"DATABASE_URL {masked(url)} is not a database this studio can use: "
                               f"{_first_line(exc)}") from exc


@contextlib.contextmanager
def exit_if_unusable() -> Iterator[None]:
    """At a process's edge (the CLI, uvicorn importing the app): the one-line reason and exit code 2, no traceback."""
    try:
        yield
    except RunStoreUnusable as exc:
        print(exc.message, file=sys.stderr, flush=True)
        raise SystemExit(EXIT_UNUSABLE) from None


# --- the lock -----------------------------------------------------------------------------------

@contextlib.contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Held while a process looks at the schema and upgrades it: the others wait here, then find it at head."""
    database = engine.url.database
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine):
            yield
    elif engine.dialect.name == "sqlite" and database and database != ":memory:":
        with _file_lock(Path(database).with_name(Path(database).name + ".migrate.lock")):
            yield
    else:  # an in-memory SQLite belongs to one process
        yield


@contextlib.contextmanager
def _advisory_lock(engine: Engine) -> Iterator[None]:
    # A connection of its own, in autocommit: the lock is the session's, whatever the migration's transaction does.
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
        try:
            yield
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
            except DBAPIError:
                conn.invalidate()  # a closed session holds no lock; never hand this one back to the pool


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:  # flock goes with the file: a killed migrator leaves no lock behind
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# --- revisions ----------------------------------------------------------------------------------

def _config(location: Path, connection: Connection | None = None) -> Config:
    config = Config()  # no alembic.ini: everything Alembic needs is set here (pyproject.toml serves its CLI)
    config.set_main_option("script_location", str(location))
    if connection is not None:
        config.attributes["connection"] = connection  # env.py runs on it, inside our lock and transaction
    return config


@lru_cache(maxsize=8)
def _script(location: Path) -> ScriptDirectory:
    try:
        return ScriptDirectory.from_config(_config(location))
    except CommandError as exc:  # MIGRATIONS_DIR pointing at no revisions
        raise RunStoreUnusable(f"No run store migrations in {location} (MIGRATIONS_DIR): Alembic found no "
                               "env.py and versions/ there") from exc


def head_revision(location: Path) -> str:
    heads = _script(location).get_heads()
    if len(heads) != 1:
        raise RunStoreUnusable(f"The migrations in {location} have {len(heads)} heads ({', '.join(heads)}); "
                               "merge them with `alembic merge heads`")
    return heads[0]


def current_revision(conn: Connection, url: str) -> str | None:
    # Read directly rather than through Alembic's MigrationContext, which logs two INFO lines on every start.
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    heads = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(heads) > 1:
        raise RunStoreUnusable(f"The run store at {url} is at several revisions ({', '.join(heads)}); "
                               "this code keeps one line of revisions")
    return heads[0] if heads else None


def _refuse_unknown(location: Path, revision: str | None, url: str) -> None:
    if revision is None:
        return
    try:
        known = _script(location).get_revision(revision) is not None
    except CommandError:
        known = False
    if not known:
        raise RunStoreUnusable(
            f"The run store at {url} is at revision {revision}, which this code does not know "
            f"(its newest is {head_revision(location)}): a newer release migrated it; run that release here")


# --- tables made before migrations ----------------------------------------------------------------

def _shape(conn: Connection) -> dict[str, TableShape]:
    found = inspect(conn)
    return {
        name: TableShape(
            columns=frozenset((c["name"], bool(c["nullable"])) for c in found.get_columns(name)),
            primary_key=tuple(found.get_pk_constraint(name)["constrained_columns"]),
            indexes=frozenset((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                              for i in found.get_indexes(name)),
        )
        for name in found.get_table_names()
    }


@lru_cache(maxsize=8)
def baseline_shape(location: Path) -> dict[str, TableShape]:
    """The baseline's tables as the baseline revision makes them (in a scratch in-memory SQLite)."""
    engine = create_engine("sqlite://")
    try:
        with engine.connect() as conn:
            command.upgrade(_config(location, conn), BASELINE)
            shape = _shape(conn)
    finally:
        engine.dispose()
    shape.pop(VERSION_TABLE, None)
    return shape


def _differences(expected: dict[str, TableShape], found: dict[str, TableShape]) -> list[str]:
    out = []
    for name, want in sorted(expected.items()):
        have = found.get(name)
        if have is None:
            out.append(f"no table {name}")
            continue
        for what, a, b in (("columns (name, nullable)", want.columns, have.columns),
                           ("indexes", want.indexes, have.indexes)):
            if a != b:
                out.append(f"{name} {what}: expected {sorted(a - b)}, found {sorted(b - a)}")
        if want.primary_key != have.primary_key:
            out.append(f"{name} primary key: expected {want.primary_key}, found {have.primary_key}")
    return out


def _is_made_before_migrations(conn: Connection, location: Path, url: str) -> bool:
    """True for the baseline's tables without alembic_version (today's `create_all`); False for an empty database.

    Anything else (some of the tables, or other columns) is refused: stamping it would hide a schema we do not know.
    """
    expected = baseline_shape(location)
    found = {name: shape for name, shape in _shape(conn).items() if name in expected}
    if not found:
        return False
    problems = _differences(expected, found)
    if problems:
        raise RunStoreUnusable(f"The run store at {url} has tables that no migration made and that are not the "
                               f"{BASELINE} schema ({'; '.join(problems)}); left untouched")
    return True


# --- upgrading ----------------------------------------------------------------------------------

def upgrade_to_head(engine: Engine, location: Path | None = None) -> SchemaChange:
    """Bring the store's schema to the newest revision, under the migration lock; a store already there costs
    one read and no lock. Raises RunStoreUnusable for a revision this code does not know."""
    location = (location or MIGRATIONS_DIR).resolve()
    url = engine.url.render_as_string(hide_password=True)
    head = head_revision(location)
    with engine.connect() as conn:
        current = current_revision(conn, url)
    if current == head:
        return SchemaChange(url, head, head)
    _refuse_unknown(location, current, url)
    try:
        # write=True: on SQLite the transaction takes the write lock at once (BEGIN IMMEDIATE)
        with migration_lock(engine), engine.connect().execution_options(write=True) as conn, conn.begin():
            return _upgrade_locked(conn, location, head, url)
    except DBAPIError as exc:  # e.g. a role that may read and write rows but not create tables
        raise RunStoreUnusable(f"The run store at {url} cannot be upgraded from {current or 'base'} to {head}: "
                               f"{_first_line(exc)}") from exc


def _upgrade_locked(conn: Connection, location: Path, head: str, url: str) -> SchemaChange:
    # Looked at again: the process that held the lock before us may have done it all.
    current = current_revision(conn, url)
    if current == head:
        return SchemaChange(url, head, head)
    _refuse_unknown(location, current, url)
    stamped = False
    if current is None and _is_made_before_migrations(conn, location, url):
        command.stamp(_config(location, conn), BASELINE)
        current, stamped = BASELINE, True
    command.upgrade(_config(location, conn), "head")
    return SchemaChange(url, current, head, stamped)
