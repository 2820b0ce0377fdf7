"""Run store migrations on fresh SQLite files and fresh PostgreSQL databases: processes that start together,
a database made before migrations, a revision added later, a database newer than the code, bad DATABASE_URLs."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, insert, inspect, select, text

from pipeline.settings import PROJECT_ROOT
from taskqueue.schema import BASELINE, MIGRATIONS_DIR, PG_LOCK_KEY, RunStoreUnusable, head_revision
from taskqueue.store import FAILED, NewRun, RunStore, hash_key, metadata, migrate
from tests import legacy_store
from tests.conftest import PG_ADMIN_URL, throwaway_database
from tests.servers import ACCOUNT_A, KEY_A, free_port, studio_env

HEAD = head_revision(MIGRATIONS_DIR)  # the bundled revisions' newest
UPGRADED_FROM_BASE = f"upgraded base -> {HEAD}"
NOTE_REVISION = "9999_run_note"
NOTE_MIGRATION = f'''"""Runs get a note (a test's revision); the runs already there say where they come from."""

import sqlalchemy as sa
from alembic import op

revision = "{NOTE_REVISION}"
down_revision = "{HEAD}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("note", sa.String(200), nullable=True))
    op.execute("UPDATE runs SET note = 'made before {NOTE_REVISION}'")


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("note")
'''


# --- databases ----------------------------------------------------------------------------------

def _admin():
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    """A PostgreSQL database of this test's own, dropped afterwards."""
    with throwaway_database("mig_") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        (tmp_path / "store").mkdir()
        return f"sqlite:///{tmp_path / 'store' / 'runs.sqlite3'}"
    return request.getfixturevalue("fresh_pg")


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def _with_note_revision(tmp_path: Path) -> Path:
    """A copy of the bundled migrations with one revision more: a new column and its data migration."""
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "versions" / f"{NOTE_REVISION}.py").write_text(NOTE_MIGRATION)
    return folder


# --- processes ----------------------------------------------------------------------------------

@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Deployment:
    """Studio processes on one DATA_DIR against one run store, each with its own log."""

    root: Path
    url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    procs: list[Proc] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return studio_env(self.root / "data", self.port, DATABASE_URL=self.url, **self.extra_env)

    def start(self, name: str, module_args: list[str], *, together: int = 0) -> Proc:
        """`python -m MODULE ARGS`; with `together`, once that many processes started so are ready."""
        log = self.root / f"{name}.log"
        args = [sys.executable, "-m", *module_args]
        if together:
            args[2:2] = ["tests.start_together", str(self.root / "ready"), str(together)]
        with open(log, "wb") as out:
            popen = subprocess.Popen(args, cwd=PROJECT_ROOT, env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def api_args(self) -> list[str]:
        return ["uvicorn", "api.app:standalone_app", "--factory", "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "warning"]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (rc {p.popen.poll()}) ---\n{p.output()}" for p in self.procs)

    def wait_healthy(self, live_workers: int, timeout: float = 120.0) -> dict:
        """GET /api/health with a key until it answers 200 with this many live workers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.procs:
                assert proc.popen.poll() in (None, 0), f"{proc.name} exited\n{self.logs()}"
            try:
                r = httpx.get(f"http://127.0.0.1:{self.port}/api/health", headers={"x-api-key": KEY_A}, timeout=5)
                if r.status_code == 200 and r.json()["liveWorkers"] >= live_workers:
                    return r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"not healthy in {timeout} s\n{self.logs()}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                os.killpg(proc.popen.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()
        self.procs = []


@pytest.fixture
def deployment(tmp_path: Path, fresh_db: str) -> Iterator[Deployment]:
    (tmp_path / "ready").mkdir()
    d = Deployment(root=tmp_path, url=fresh_db)
    try:
        yield d
    finally:
        d.stop()


def _cli(url: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = studio_env(tmp_path / "data", free_port(), DATABASE_URL=url, **env)
    return subprocess.run([sys.executable, "-m", *args], cwd=PROJECT_ROOT, env=full_env, capture_output=True,
                          text=True, timeout=120)


# --- tests --------------------------------------------------------------------------------------

def test_migrate_makes_the_tables_then_finds_them_at_head(fresh_db: str, tmp_path: Path) -> None:
    first = _cli(fresh_db, tmp_path, "taskqueue", "migrate")
    assert first.returncode == 0, first.stderr
    shown = create_engine(fresh_db).url.render_as_string(hide_password=True)
    assert first.stdout.strip() == f"run store at {shown}: {UPGRADED_FROM_BASE}"
    again = _cli(fresh_db, tmp_path, "taskqueue", "migrate")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"run store at {shown}: already at head {HEAD}"
    assert _revision(fresh_db) == HEAD


def test_the_code_s_tables_are_exactly_what_the_migrations_make(fresh_db: str) -> None:
    """A change to taskqueue/store.py's tables without a revision fails here (Alembic's autogenerate compare)."""
    migrate(fresh_db)
    engine = create_engine(fresh_db)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    finally:
        engine.dispose()
    assert diff == []


@pytest.mark.slow
def test_four_processes_started_together_all_come_up_and_one_migrates(deployment: Deployment) -> None:
    """Two `migrate`s, the API server and a worker meet at the same instant on an empty database."""
    migrators = [deployment.start(f"migrate-{i}", ["taskqueue", "migrate"], together=4) for i in range(2)]
    deployment.start("server", deployment.api_args(), together=4)
    deployment.start("worker", ["taskqueue", "worker"], together=4)
    for proc in migrators:
        assert proc.popen.wait(timeout=120) == 0, deployment.logs()
    health = deployment.wait_healthy(live_workers=1)
    assert health["ok"] is True
    logs = deployment.logs()
    assert logs.count(UPGRADED_FROM_BASE) == 1, logs
    assert "Traceback" not in logs, logs
    # a migrator that did not migrate waited for the one that did, then found the schema at head
    for proc in migrators:
        assert proc.output().strip().endswith((UPGRADED_FROM_BASE, f"already at head {HEAD}")), logs
    assert _revision(deployment.url) == HEAD


@pytest.mark.postgres
def test_a_second_process_waits_for_the_advisory_lock(fresh_pg: str, tmp_path: Path) -> None:
    holder = create_engine(fresh_pg, isolation_level="AUTOCOMMIT")
    with holder.connect() as lock:
        lock.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_LOCK_KEY})
        env = studio_env(tmp_path / "data", free_port(), DATABASE_URL=fresh_pg)
        proc = subprocess.Popen([sys.executable, "-m", "taskqueue", "migrate"], cwd=PROJECT_ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        waiting = 0
        while not waiting and time.monotonic() < deadline and proc.poll() is None:
            waiting = lock.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                                        "AND database = (SELECT oid FROM pg_database WHERE datname = "
                                        "current_database())")).scalar()
            time.sleep(0.05)
        assert waiting == 1 and proc.poll() is None, proc.communicate()
        assert not inspect(lock).has_table("runs")  # nothing was made while another process held the lock
        lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
    holder.dispose()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert UPGRADED_FROM_BASE in out


def test_a_second_process_waits_for_the_sqlite_file_lock(tmp_path: Path) -> None:
    db = tmp_path / "store" / "runs.sqlite3"
    db.parent.mkdir()
    with open(db.parent / "runs.sqlite3.migrate.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        env = studio_env(tmp_path / "data", free_port(), DATABASE_URL=f"sqlite:///{db}")
        proc = subprocess.Popen([sys.executable, "-m", "taskqueue", "migrate"], cwd=PROJECT_ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        blocked = False
        while not blocked and time.monotonic() < deadline and proc.poll() is None:
            # the kernel lists a process waiting for a lock with "->" (proc(5), /proc/locks)
            blocked = any("->" in line and f" {proc.pid} " in f" {line} " for line in
                          Path("/proc/locks").read_text().splitlines())
            time.sleep(0.05)
        assert blocked and proc.poll() is None, proc.communicate()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert UPGRADED_FROM_BASE in out


def _fill_like_the_last_release(url: str, key: str, now: float) -> None:
    engine = create_engine(url)
    legacy_store.metadata.create_all(engine)
    run = {"batch_id": "batch_legacy", "owner": ACCOUNT_A, "artist_account_id": "artist-1", "artist_slug": "demo",
           "template": "artist-caption-stage", "request": {"batch": 2, "lipsync": False}, "seed": 7,
           "progress": 0.0, "timeline": [{"step": "image", "seconds": 1.5}], "output": None, "attempts": 1,
           "started_at": None, "finished_at": None, "worker": None, "heartbeat_at": None, "cancel_requested": False,
           "step": None}
    with engine.begin() as conn:
        conn.execute(insert(legacy_store.runs), [
            {**run, "id": "run_legacy_queued", "status": "QUEUED", "error": None, "created_at": now - 20},
            {**run, "id": "run_legacy_failed", "status": "FAILED", "created_at": now - 10, "finished_at": now - 5,
             "error": {"stage": "render", "message": "made by the last release"}},
        ])
        conn.execute(insert(legacy_store.api_keys).values(key_hash=hash_key(key), account_id="acct-legacy",
                                                          label="legacy", created_at=now))
        conn.execute(insert(legacy_store.idempotency_keys).values(owner=ACCOUNT_A, key="idem-1", body_hash="b" * 64,
                                                                  response={"status": "success"}, created_at=now))
        conn.execute(insert(legacy_store.workers).values(name="old-host:4242", host="old-host", pid=4242,
                                                         started_at=now - 60, heartbeat_at=now, current_run=None))
    engine.dispose()


@pytest.mark.slow
def test_a_database_made_before_migrations_is_stamped_and_serves_its_runs(deployment: Deployment) -> None:
    legacy_key = "sk_made_by_the_last_release_0123456789"
    _fill_like_the_last_release(deployment.url, legacy_key, time.time())
    done = _cli(deployment.url, deployment.root, "taskqueue", "migrate")
    assert done.returncode == 0, done.stderr
    stamped = f": stamped the tables made before migrations as {BASELINE}; upgraded {BASELINE} -> {HEAD}"
    assert done.stdout.strip().endswith(stamped), done.stdout
    assert _revision(deployment.url) == HEAD

    # the last release's worker row counts as live however long the server takes to start
    deployment.extra_env["CRASH_AFTER_SECONDS"] = "3600"
    deployment.start("server", deployment.api_args())
    health = deployment.wait_healthy(live_workers=1)
    assert [w["name"] for w in health["workers"]] == ["old-host:4242"]
    r = httpx.get(f"http://127.0.0.1:{deployment.port}/api/tasks/runs", headers={"x-api-key": KEY_A}, timeout=10)
    assert r.status_code == 200, r.text
    runs = {run["id"]: run for run in r.json()["runs"]}
    assert set(runs) == {"run_legacy_queued", "run_legacy_failed"}
    assert runs["run_legacy_failed"]["status"] == "FAILED"
    assert runs["run_legacy_failed"]["error"]["message"] == "made by the last release"
    assert runs["run_legacy_queued"]["status"] == "QUEUED"
    # the key the last release stored (hashed) still opens the API
    me = httpx.get(f"http://127.0.0.1:{deployment.port}/api/accounts/id", headers={"x-api-key": legacy_key}, timeout=10)
    assert me.status_code == 200 and "acct-legacy" in me.text, me.text
    engine = create_engine(deployment.url)
    with engine.connect() as conn:
        row = conn.execute(select(legacy_store.idempotency_keys)).one()
    engine.dispose()
    assert (row.key, row.body_hash, row.response) == ("idem-1", "b" * 64, {"status": "success"})


def test_processes_started_together_on_the_last_release_s_database_stamp_it_once(deployment: Deployment) -> None:
    _fill_like_the_last_release(deployment.url, "sk_made_by_the_last_release_0123456789", time.time())
    procs = [deployment.start(f"migrate-{i}", ["taskqueue", "migrate"], together=3) for i in range(3)]
    for proc in procs:
        assert proc.popen.wait(timeout=120) == 0, deployment.logs()
    outputs = [p.output().strip().splitlines()[-1] for p in procs]
    assert sum(f"stamped the tables made before migrations as {BASELINE}" in line for line in outputs) == 1
    assert sum(line.endswith(f"already at head {HEAD}") for line in outputs) == 2, outputs
    assert _revision(deployment.url) == HEAD
    engine = create_engine(deployment.url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar() == 2
    engine.dispose()


def test_tables_that_are_not_the_baseline_are_refused_and_left_alone(fresh_db: str) -> None:
    engine = create_engine(fresh_db)
    legacy_store.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_runs_status_heartbeat"))
    with pytest.raises(RunStoreUnusable, match=r"not the 0001_baseline schema \(runs indexes: expected "
                                                r"\[\('ix_runs_status_heartbeat'"):
        RunStore(fresh_db)
    assert not inspect(engine).has_table("alembic_version")
    engine.dispose()


@pytest.mark.slow
def test_a_revision_added_later_is_applied_by_a_restart(deployment: Deployment) -> None:
    migrations = deployment.root / "migrations"
    shutil.copytree(MIGRATIONS_DIR, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    deployment.extra_env["MIGRATIONS_DIR"] = str(migrations)
    deployment.start("server", deployment.api_args())
    deployment.start("worker", ["taskqueue", "worker"])
    deployment.wait_healthy(live_workers=1)
    store = RunStore(deployment.url, migrations=migrations)
    run = store.create_batch(ACCOUNT_A, [NewRun(artist_account_id="artist-1", artist_slug="demo", template=None,
                                                request={"batch": 1}, seed=1)])[0]
    assert store.fail(run.id, FAILED, "test", "made at 0001")
    store.close()
    deployment.stop()

    (migrations / "versions" / f"{NOTE_REVISION}.py").write_text(NOTE_MIGRATION)
    server = deployment.start("server-restarted", deployment.api_args(), together=2)
    worker = deployment.start("worker-restarted", ["taskqueue", "worker"], together=2)
    deployment.wait_healthy(live_workers=1)
    upgraded = f"upgraded {HEAD} -> {NOTE_REVISION}"
    assert (server.output() + worker.output()).count(upgraded) == 1, deployment.logs()
    assert _revision(deployment.url) == NOTE_REVISION
    engine = create_engine(deployment.url)
    with engine.connect() as conn:
        notes = conn.execute(text("SELECT id, note FROM runs")).all()
    engine.dispose()
    assert notes == [(run.id, f"made before {NOTE_REVISION}")]
    r = httpx.get(f"http://127.0.0.1:{deployment.port}/api/tasks/runs", params={"runId": run.id},
                  headers={"x-api-key": KEY_A}, timeout=10)
    assert r.status_code == 200 and r.json()["runs"][0]["error"]["message"] == "made at 0001", r.text


@pytest.mark.parametrize("command", [["taskqueue", "migrate"], ["taskqueue", "worker"], ["taskqueue", "serve"],
                                     ["uvicorn", "api.app:standalone_app", "--factory", "--port", "1"]],
                         ids=["migrate", "worker", "serve", "uvicorn"])
def test_a_database_newer_than_the_code_is_refused(command: list[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store' / 'runs.sqlite3'}"
    assert migrate(url, _with_note_revision(tmp_path)).after == NOTE_REVISION
    done = _cli(url, tmp_path, *command)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"The run store at {url} is at revision {NOTE_REVISION}, which this code does not know (its newest is "
        f"{HEAD}): a newer release migrated it; run that release here"]
    assert _revision(url) == NOTE_REVISION


@pytest.mark.parametrize("command", [["taskqueue", "migrate"], ["taskqueue", "worker"], ["taskqueue", "serve"],
                                     ["uvicorn", "api.app:standalone_app", "--factory", "--port", "1"]],
                         ids=["migrate", "worker", "serve", "uvicorn"])
def test_a_server_that_does_not_answer_is_one_line_without_the_password(command: list[str], tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://studio:s3cret-pw@127.0.0.1:{port}/studio"
    done = _cli(url, tmp_path, *command)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"The run store at postgresql+psycopg://studio:***@127.0.0.1:{port}/studio "
                               "cannot be used: connection failed"), lines[0]
    assert "s3cret-pw" not in done.stdout + done.stderr


@pytest.mark.postgres
def test_a_database_the_user_may_not_write_is_one_line(fresh_pg: str, tmp_path: Path) -> None:
    role = "mig_reader_" + uuid.uuid4().hex[:8]
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))  # PostgreSQL 15+: no CREATE on schema public
    try:
        name = fresh_pg.rsplit("/", 1)[1]
        url = f"postgresql+psycopg://{role}:pw@127.0.0.1:5432/{name}"
        done = _cli(url, tmp_path, "taskqueue", "migrate")
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.strip().splitlines() == [
            f"The run store at postgresql+psycopg://{role}:***@127.0.0.1:5432/{name} cannot be upgraded from base "
            f"to {HEAD}: permission denied for schema public"]
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()


def test_a_sqlite_path_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    url = f"sqlite:///{tmp_path / 'a-file' / 'runs.sqlite3'}"
    done = _cli(url, tmp_path, "taskqueue", "migrate")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"The run store at {url} cannot be used: [Errno "), lines
    assert lines[0].endswith(f"'{tmp_path / 'a-file'}'"), lines  # the file in the way
