"""The run store on SQLite and on PostgreSQL: the same code, the same tests."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, select, text

from pipeline.settings import Settings
from taskqueue.keys import account_for_key, ensure_local_key, signing_secret
from taskqueue.store import (
    CANCELED,
    COMPLETED,
    CRASHED,
    EXECUTING,
    FAILED,
    QUEUED,
    TIMED_OUT,
    NewRun,
    RunStore,
    account_for_configured_key,
    api_keys,
    hash_key,
    metadata,
    runs,
)


class Clock:
    """Wall time the test can move (heartbeats, reaping, durations)."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.sqlite3'}"
        return
    url = request.getfixturevalue("postgres_url")
    _drop_tables(url)  # each test starts from empty tables (other modules share the session database)
    yield url
    _drop_tables(url)


def _drop_tables(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {', '.join(metadata.tables)}, alembic_version"))
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db_url: str, clock: Clock) -> Iterator[RunStore]:
    s = RunStore(db_url, clock=clock)
    yield s
    s.close()


def new_runs(n: int, artist: str = "a1", lipsync: bool = False) -> list[NewRun]:
    return [NewRun(artist_account_id=artist, artist_slug=f"slug-{artist}", template="artist-caption-stage",
                   request={"lipsync": lipsync, "batch": n}, seed=i) for i in range(n)]


def test_a_batch_is_written_queued_with_every_field(store: RunStore) -> None:
    runs = store.create_batch("owner-a", new_runs(3))
    assert len({r.id for r in runs}) == 3 and all(r.id.startswith("run_") for r in runs)
    assert len({r.batch_id for r in runs}) == 1
    run = store.get(runs[0].id)
    assert run is not None
    assert (run.status, run.owner, run.artist_account_id, run.artist_slug, run.template) == (
        QUEUED, "owner-a", "a1", "slug-a1", "artist-caption-stage")
    assert run.request == {"lipsync": False, "batch": 3} and run.seed == 0
    assert (run.step, run.progress, run.timeline, run.output, run.error, run.attempts) == (None, 0.0, [], None, None, 0)
    assert run.started_at is None and run.finished_at is None and run.worker is None and not run.cancel_requested


def test_a_batch_is_stored_exactly_as_sqlalchemy_would_store_it(store: RunStore) -> None:
    # create_batch feeds a compiled INSERT plain values, bypassing SQLAlchemy's bind processors; the same
    # runs written through SQLAlchemy's own insert must leave the very same column text behind
    written = store.create_batch("owner-a", [*new_runs(2), NewRun("a2", "slug-a2", None, {"songs": ["x"]}, 2**40)])
    twins = {run.id: dataclasses.replace(run, id=run.id.replace("run_", "twin")) for run in written}
    with store.engine.begin() as conn:
        conn.execute(insert(runs), [dataclasses.asdict(twin) for twin in twins.values()])
    as_text = ", ".join(f"CAST({c.name} AS TEXT)" for c in runs.columns if c.name != "id")
    with store.engine.connect() as conn:
        def stored(run_id: str) -> tuple:
            return tuple(conn.execute(text(f"SELECT {as_text} FROM runs WHERE id = :id"), {"id": run_id}).one())
        for run_id, twin in twins.items():
            assert stored(run_id) == stored(twin.id)
    assert store.get(written[2].id) == written[2]


def test_get_and_list_are_scoped_to_the_owner_newest_first(store: RunStore, clock: Clock) -> None:
    first = store.create_batch("owner-a", new_runs(2, artist="a1"))
    clock.now += 10
    later = store.create_batch("owner-a", new_runs(1, artist="a2"))
    store.create_batch("owner-b", new_runs(1))
    assert store.get(first[0].id, owner="owner-b") is None
    assert store.get(first[0].id, owner="owner-a") is not None
    listed = store.list_runs("owner-a")
    assert len(listed) == 3 and listed[0].id == later[0].id
    assert [r.id for r in store.list_runs("owner-a", limit=1)] == [later[0].id]
    assert {r.id for r in store.list_runs("owner-a", artist="a1")} == {r.id for r in first}
    assert {r.id for r in store.list_runs("owner-a", artist="slug-a2")} == {later[0].id}
    store.claim(first[0].id, "w")
    assert [r.id for r in store.list_runs("owner-a", status=[EXECUTING])] == [first[0].id]
    assert len(store.list_runs("owner-a", status=[QUEUED, EXECUTING])) == 3
    assert len(store.list_runs("owner-b")) == 1


def test_a_run_is_claimed_once_even_by_racing_threads(store: RunStore) -> None:
    run = store.create_batch("o", new_runs(1))[0]
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def claim(name: str) -> None:
        barrier.wait()
        if store.claim(run.id, name):
            wins.append(name)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    claimed = store.get(run.id)
    assert claimed is not None and claimed.status == EXECUTING and claimed.worker == wins[0] and claimed.attempts == 1
    assert not store.claim(run.id, "late")


def _claim_all(url: str, run_ids: list[str], out: multiprocessing.Queue) -> None:
    s = RunStore(url)
    out.put([rid for rid in run_ids if s.claim(rid, f"pid{os.getpid()}")])
    s.close()


def test_processes_racing_for_the_same_runs_claim_each_exactly_once(store: RunStore, db_url: str) -> None:
    ids = [r.id for r in store.create_batch("o", new_runs(15))]
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(db_url, ids, out)) for _ in range(3)]
    for p in procs:
        p.start()
    claimed = [rid for _ in procs for rid in out.get(timeout=60)]
    for p in procs:
        p.join(timeout=30)
    assert sorted(claimed) == sorted(ids)


def test_progress_finish_and_no_way_back_from_a_final_status(store: RunStore, clock: Clock) -> None:
    run = store.create_batch("o", new_runs(1))[0]
    assert not store.progress(run.id, "song", 5, [])  # not executing yet
    store.claim(run.id, "w")
    timeline = [{"step": "song", "started_at": clock.now, "finished_at": None}]
    assert store.progress(run.id, "song", 5.04, timeline)
    got = store.get(run.id)
    assert got is not None and (got.step, got.progress, got.timeline) == ("song", 5.0, timeline)
    assert store.progress(run.id, "render", 250, timeline)  # clamped
    assert store.get(run.id).progress == 100.0  # type: ignore[union-attr]
    clock.now += 42
    assert store.finish(run.id, {"captionText": "hi"}, timeline)
    done = store.get(run.id)
    assert done is not None and done.status == COMPLETED and done.output == {"captionText": "hi"}
    assert done.finished_at - done.started_at == pytest.approx(42)  # type: ignore[operator]
    assert not store.progress(run.id, "render", 10, timeline)
    assert not store.fail(run.id, FAILED, "render", "late")
    assert not store.finish(run.id, {})
    assert store.get(run.id).status == COMPLETED  # type: ignore[union-attr]


def test_fail_records_stage_and_message(store: RunStore) -> None:
    a, b = store.create_batch("o", new_runs(2))
    store.claim(a.id, "w")
    assert store.fail(a.id, TIMED_OUT, "render", "too slow")
    assert store.fail(b.id, FAILED, "queue", "could not queue")  # straight from QUEUED
    assert store.get(a.id).error == {"stage": "render", "message": "too slow"}  # type: ignore[union-attr]
    assert store.get(b.id).status == FAILED  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        store.fail(a.id, COMPLETED, None, "no")


def test_cancel_a_queued_run_at_once_and_flag_a_running_one(store: RunStore) -> None:
    queued, running, done = store.create_batch("o", new_runs(3))
    store.claim(running.id, "w")
    store.claim(done.id, "w")
    store.finish(done.id, {})
    assert store.request_cancel(queued.id, "someone-else") is None
    cancelled = store.request_cancel(queued.id, "o")
    assert cancelled is not None and cancelled.status == CANCELED
    assert not store.claim(queued.id, "w")  # its queue message will be skipped
    flagged = store.request_cancel(running.id, "o")
    assert flagged is not None and flagged.status == EXECUTING and flagged.cancel_requested
    assert store.cancel_requested(running.id)
    assert store.request_cancel(done.id, "o").status == COMPLETED  # type: ignore[union-attr]


def test_stale_runs_are_queued_again_once_then_crashed(store: RunStore, clock: Clock) -> None:
    alive, dead = store.create_batch("o", new_runs(2))
    store.claim(alive.id, "w1")
    store.claim(dead.id, "w2")
    clock.now += 30
    store.heartbeat(alive.id, "w1")
    assert not store.heartbeat(alive.id, "someone-else")  # only its own worker beats
    clock.now += 40  # dead: 70 s without a beat; alive: 40 s
    result = store.reap_stale(60, max_crash_retries=1)
    assert (result.requeued, result.crashed) == ([dead.id], [])
    again = store.get(dead.id)
    assert again is not None and again.status == QUEUED and again.error["stage"] == "worker"  # type: ignore[index]
    assert store.get(alive.id).status == EXECUTING  # type: ignore[union-attr]
    assert store.claim(dead.id, "w3") and store.get(dead.id).attempts == 2  # type: ignore[union-attr]
    clock.now += 61
    result = store.reap_stale(60, max_crash_retries=1)
    assert (result.crashed, result.requeued) == ([dead.id], [alive.id])  # alive's beat is now 101 s old
    crashed = store.get(dead.id)
    assert crashed is not None and crashed.status == CRASHED and crashed.finished_at is not None
    assert "heartbeat" in crashed.error["message"]  # type: ignore[index]
    assert store.reap_stale(60, 1).crashed == []  # nothing left EXECUTING without a beat


def test_reaper_never_requeues_a_run_its_owner_cancelled(store: RunStore, clock: Clock) -> None:
    run = store.create_batch("o", new_runs(1))[0]
    store.claim(run.id, "w")
    store.request_cancel(run.id, "o")
    clock.now += 100
    assert store.reap_stale(60, 5).crashed == [run.id]


def test_requeue_after_an_interruption_does_not_count_as_a_try(store: RunStore) -> None:
    run = store.create_batch("o", new_runs(1))[0]
    store.claim(run.id, "w")
    assert store.requeue(run.id, count_attempt=False)
    back = store.get(run.id)
    assert back is not None and back.status == QUEUED and back.attempts == 0 and back.worker is None
    store.claim(run.id, "w")
    assert store.requeue(run.id, error={"stage": "image", "message": "busy (retrying)"})
    assert store.get(run.id).attempts == 1  # type: ignore[union-attr]


def test_recent_durations_feed_the_estimate(store: RunStore, clock: Clock) -> None:
    plain, lip = store.create_batch("o", new_runs(1)), store.create_batch("o", new_runs(1, lipsync=True))
    for run, seconds in ((plain[0], 30), (lip[0], 50)):
        store.claim(run.id, "w")
        clock.now += seconds
        store.finish(run.id, {})
    assert store.recent_durations(lipsync=False) == [pytest.approx(30)]
    assert store.recent_durations(lipsync=True) == [pytest.approx(50)]
    assert sorted(store.recent_durations()) == [pytest.approx(30), pytest.approx(50)]


def test_keys_are_stored_hashed_and_verified(store: RunStore, db_url: str) -> None:
    key, account = store.create_key(label="ci")
    key2, account2 = store.create_key(account_id="acct-fixed")
    assert key != key2 and account2 == "acct-fixed"
    assert store.verify_key(key) == account and store.verify_key(key2) == "acct-fixed"
    assert store.verify_key(key + "x") is None and store.verify_key("") is None
    with store.engine.connect() as conn:
        stored = [r[0] for r in conn.execute(select(api_keys.c.key_hash))]
    assert hash_key(key) in stored and key not in stored


def test_configured_keys_map_to_a_stable_account(tmp_path: Path, store: RunStore) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "d", api_keys=["alpha-key", "beta-key"])
    a = account_for_key("alpha-key", settings, store)
    assert a == account_for_configured_key("alpha-key") == str(uuid.UUID(a))  # type: ignore[arg-type]
    assert account_for_key("beta-key", settings, store) != a
    assert account_for_key("alpha-key ", settings, store) is None
    assert account_for_key("", settings, store) is None
    stored_key, stored_account = store.create_key()
    assert account_for_key(stored_key, settings, store) == stored_account


def test_the_install_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "d")
    s = RunStore(settings.sqlalchemy_url)
    key, account = ensure_local_key(settings, s)
    assert ensure_local_key(settings, s) == (key, account)
    path = settings.data_dir / "api-key.txt"
    assert path.read_text().strip() == key and (path.stat().st_mode & 0o777) == 0o600
    secret = signing_secret(settings)
    assert len(secret) > 40 and signing_secret(settings) == secret
    assert (settings.data_dir / "secret.key").stat().st_mode & 0o777 == 0o600
    s.close()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    s = RunStore(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    s.close()


# --- webhook deliveries: made with the runs, promoted when final, claimed once ---------------------------------

HOOK = "https://example.com/hook"


def test_rows_wait_until_their_run_and_then_the_whole_batch_is_final(store: RunStore, clock: Clock) -> None:
    first, second = store.create_batch("owner-a", new_runs(2), webhook_url=HOOK)
    assert store.webhooks_to_promote() == []  # queued runs: nothing to say yet
    assert store.claim(first.id, "w1") and store.finish(first.id, {"ok": True})
    [ready] = store.webhooks_to_promote()
    assert ready["run_id"] == first.id and ready["url"] == HOOK and ready["state"] == "waiting"
    store.fail(second.id, FAILED, "render", "boom")
    ready = store.webhooks_to_promote()
    assert [r["run_id"] for r in ready] == [first.id, second.id, None]  # the batch's own row comes last
    assert store.promote_webhook(ready[0]["id"], "run.completed", {"type": "run.completed"})
    assert not store.promote_webhook(ready[0]["id"], "run.completed", {"type": "run.completed"})  # once only
    assert [r["run_id"] for r in store.webhooks_to_promote()] == [second.id, None]


def test_a_due_delivery_is_claimed_by_one_worker_and_retried_until_it_runs_out(store: RunStore,
                                                                            clock: Clock) -> None:
    [run] = store.create_batch("owner-a", new_runs(1), webhook_url=HOOK)
    store.fail(run.id, FAILED, "render", "boom")
    row = next(r for r in store.webhooks_to_promote() if r["run_id"] == run.id)
    store.promote_webhook(row["id"], "run.failed", {"type": "run.failed"})
    [due] = store.due_webhooks()
    assert due["payload"] == {"type": "run.failed"} and due["attempts"] == 0
    assert store.claim_webhook(due, 15) and not store.claim_webhook(due, 15)  # a racing worker gets nothing
    assert store.due_webhooks() == []  # leased
    store.record_webhook_try(due["id"], {"attempt": 1, "at": clock.now, "status": 500, "error": "HTTP 500"},
                             delivered=False, next_at=clock.now + 30)
    assert store.due_webhooks() == []
    clock.now += 31
    [again] = store.due_webhooks()
    assert again["id"] == due["id"] and again["attempts"] == 1 and store.claim_webhook(again, 15)
    store.record_webhook_try(due["id"], {"attempt": 2, "at": clock.now, "status": None, "error": "timeout"},
                             delivered=False, next_at=None)  # out of tries
    clock.now += 1000
    assert store.due_webhooks() == []
    hook = store.webhooks_for_runs([run.id])[run.id]
    assert hook["url"] == HOOK and [h["status"] for h in hook["history"]] == [500, None]
    assert store.webhooks_for_runs([]) == {} and store.webhooks_for_runs(["run_none"]) == {}


def test_a_worker_that_dies_while_sending_leaves_the_delivery_to_be_tried_again(store: RunStore,
                                                                              clock: Clock) -> None:
    [run] = store.create_batch("owner-a", new_runs(1), webhook_url=HOOK)
    store.fail(run.id, FAILED, "render", "boom")
    row = next(r for r in store.webhooks_to_promote() if r["run_id"] == run.id)
    store.promote_webhook(row["id"], "run.failed", {})
    [due] = store.due_webhooks()
    assert store.claim_webhook(due, 15)  # ...and the worker is killed before it records the try
    clock.now += 16
    [back] = store.due_webhooks()
    assert back["id"] == due["id"] and back["attempts"] == 0 and store.claim_webhook(back, 15)


def test_runs_without_a_webhook_have_no_rows(store: RunStore) -> None:
    [run] = store.create_batch("owner-a", new_runs(1))
    store.fail(run.id, FAILED, "render", "boom")
    assert store.webhooks_to_promote() == [] and store.webhooks_for_runs([run.id]) == {}
