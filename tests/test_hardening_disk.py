"""The disk does not grow without bound: every cache is capped (least recently used go first, by the worker's
periodic task), refused downloads are not kept, old outputs expire when a retention is set, idempotency keys are
forgotten after a day and a key left pending by a dead server is released."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.choose_face_guide import resolve_image
from pipeline.errors import FetchError
from pipeline.fetch import Fetcher, FetchLimits
from pipeline.settings import DEFAULT_CACHE_MAX_MB, Settings, get_settings
from taskqueue import tasks
from taskqueue.huey_app import make_huey
from taskqueue.storage import LocalStorage
from taskqueue.store import (
    COMPLETED,
    EXPIRED,
    IDEMPOTENCY_MISMATCH,
    IDEMPOTENCY_NEW,
    IDEMPOTENCY_PENDING,
    IDEMPOTENCY_REPLAY,
    NewRun,
    RunStore,
)
from tests.http_server import LocalServer, serve_bytes
from tests.test_store import Clock

DAY = 24 * 3600.0
MB = 1024 * 1024


def _fill(folder: Path, count: int, size: int, *, oldest: float) -> list[Path]:
    """`count` files of `size` bytes, last used one hour apart from `oldest` (epoch seconds) on."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"entry-{i}.bin"
        path.write_bytes(os.urandom(size))
        os.utime(path, (oldest + i * 3600, oldest + i * 3600))
        paths.append(path)
    return paths


@pytest.fixture
def worker_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The periodic task's settings (it reads the environment, as in a consumer)."""
    for name in ("DATABASE_URL", "REDIS_URL", "STORAGE_URL", "ARTISTS_DIR", "CACHE_MAX_MB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CACHE_MAX_MB", '{"downloads": 1, "analysis": 1, "transcripts": 1, "remote-results": 1, '
                                       '"outputs": 1, "samples": 1, "uploads": 1}')
    get_settings.cache_clear()
    monkeypatch.setattr(tasks.huey, "storage", make_huey(get_settings()).storage)
    yield get_settings()
    get_settings.cache_clear()


@pytest.mark.parametrize("folder", sorted(f for f in DEFAULT_CACHE_MAX_MB if f != "workspaces"))  # clones: below
def test_the_periodic_task_keeps_each_cache_under_its_cap_least_recently_used_first(worker_env: Settings,
                                                                                    folder: str) -> None:
    cache = worker_env.data_dir / folder
    now = time.time()
    files = _fill(cache / "sub", 6, 300 * 1024, oldest=now - 10 * DAY)  # 1.8 MB against a 1 MB cap
    fresh = _fill(cache / "fresh", 1, 300 * 1024, oldest=now)[0]  # in use right now: never evicted
    os.utime(files[0], (now - 2 * 3600, now - 2 * 3600))  # the oldest entry was used again two hours ago
    tasks.reap_runs.call_local()  # what the consumer runs every minute
    left = {p.name for p in (cache / "sub").glob("*.bin")}
    assert sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) <= 1 * MB
    assert fresh.exists()
    assert "entry-0.bin" in left  # used lately: kept
    assert "entry-1.bin" not in left and "entry-2.bin" not in left  # least recently used: gone first
    assert "entry-5.bin" in left


def test_repository_clones_are_evicted_least_recently_synced_first_but_never_while_syncing(tmp_path: Path) -> None:
    import fcntl

    from taskqueue.housekeeping import evict_workspaces

    folder = tmp_path / "workspaces"
    now = time.time()
    for i, name in enumerate(["oldest-busy", "old", "newer", "newest"]):
        _fill(folder / name, 1, 400 * 1024, oldest=now - 10 * DAY)
        (folder / f"{name}.lock").touch()
        os.utime(folder / f"{name}.lock", (now - (5 - i) * DAY, now - (5 - i) * DAY))
    with open(folder / "oldest-busy.lock", "a") as busy:
        fcntl.flock(busy, fcntl.LOCK_EX)  # a run is fetching this one right now
        removed = evict_workspaces(folder, 1 * MB, now=now)
    assert removed == ["old", "newer"]  # 1.6 MB -> 0.8 MB; the busy one is skipped, not waited for
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["newest", "oldest-busy"]


def test_a_cache_under_its_cap_is_left_alone(worker_env: Settings) -> None:
    files = _fill(worker_env.cache_dir / "downloads", 2, 100 * 1024, oldest=time.time() - 30 * DAY)
    tasks.reap_runs.call_local()
    assert all(p.exists() for p in files)


def test_a_cache_hit_counts_as_a_use(tmp_path: Path) -> None:
    with LocalServer() as server:
        server.routes["/a.bin"] = serve_bytes(b"x" * 1000)
        fetcher = Fetcher(tmp_path / "cache", FetchLimits(allow_hosts=("127.0.0.1",)))
        path = fetcher.fetch(server.url("/a.bin"))
        os.utime(path, (time.time() - 5 * DAY, time.time() - 5 * DAY))
        assert fetcher.fetch(server.url("/a.bin")) == path and server.hits == ["/a.bin"]
        assert time.time() - path.stat().st_mtime < 60


def test_a_refused_image_download_is_not_kept(tmp_path: Path) -> None:
    with LocalServer() as server:
        server.routes["/face.png"] = serve_bytes(b"<html>not an image</html>" * 20, "image/png")
        fetcher = Fetcher(tmp_path / "cache", FetchLimits(allow_hosts=("127.0.0.1",)))
        with pytest.raises(FetchError, match="not an image"):
            resolve_image(server.url("/face.png"), fetcher, tmp_path / "uploads")
        assert not any((tmp_path / "cache").iterdir())


def test_a_compacted_transcription_upload_is_removed_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.providers import openai_provider
    from pipeline.providers.openai_provider import OpenAITranscriber
    from tests.fake_remote import FakeRemote, remote_settings, words_transcript
    from tests.media import make_tone

    song = make_tone(tmp_path / "song.mp3", seconds=2.0)
    monkeypatch.setattr(openai_provider, "UPLOAD_LIMIT_BYTES", 1000)  # this song then needs a compacted copy
    with FakeRemote(tmp_path / "remote") as fake:
        fake.transcript = words_transcript([[(0.2, 0.5, "hold"), (0.5, 0.8, "on")]])
        settings = remote_settings(tmp_path, fake)
        assert OpenAITranscriber(settings).transcribe(song)
        assert len(fake.hits("transcriptions")) == 1
    assert not [p.name for p in (settings.cache_dir / "transcripts").rglob("*.mp3")]


# --- output retention ----------------------------------------------------------------------------------------------


def _completed(store: RunStore, storage: LocalStorage, clock: Clock, tmp_path: Path) -> str:
    run = store.create_batch("o", [NewRun(artist_account_id="a", artist_slug="a", template=None, request={},
                                          seed=1)])[0]
    assert store.claim(run.id, "w")
    src = tmp_path / f"{run.id}.mp4"
    src.write_bytes(b"video")
    storage.put(run.id, "video.mp4", src)
    assert store.finish(run.id, {"files": {"video": "video.mp4"}})
    return run.id


@pytest.mark.parametrize("days, expires", [(0, False), (1, True)])
def test_outputs_past_the_retention_are_deleted_and_the_run_says_expired(tmp_path: Path, days: float,
                                                                          expires: bool) -> None:
    from taskqueue.housekeeping import tidy

    clock = Clock()
    store = RunStore(f"sqlite:///{tmp_path / 'runs.sqlite3'}", clock=clock)
    settings = Settings(data_dir=tmp_path / "data", output_retention_days=days, _env_file=None)
    storage = LocalStorage(settings.runs_dir)
    old = _completed(store, storage, clock, tmp_path)
    clock.now += 2 * DAY
    new = _completed(store, storage, clock, tmp_path)
    clock.now += 3600
    tidy(settings, store, storage, now=clock.now)
    old_run, new_run = store.get(old), store.get(new)
    assert old_run is not None and new_run is not None
    assert new_run.status == COMPLETED and storage.exists(new, "video.mp4")
    if expires:
        assert old_run.status == EXPIRED and not storage.exists(old, "video.mp4")
        assert old_run.error is not None and "OUTPUT_RETENTION_DAYS" in old_run.error["message"]
    else:  # the default keeps everything for ever
        assert old_run.status == COMPLETED and storage.exists(old, "video.mp4")
    store.close()


# --- idempotency keys ----------------------------------------------------------------------------------------------


@pytest.fixture
def clocked(tmp_path: Path) -> Iterator[tuple[RunStore, Clock]]:
    clock = Clock()
    store = RunStore(f"sqlite:///{tmp_path / 'runs.sqlite3'}", clock=clock)
    yield store, clock
    store.close()


def test_a_key_left_pending_by_a_dead_server_is_released(clocked: tuple[RunStore, Clock]) -> None:
    store, clock = clocked
    assert store.begin_idempotent("o", "k", "h")[0] == IDEMPOTENCY_NEW  # ...and the server died here
    clock.now += 60
    assert store.begin_idempotent("o", "k", "h")[0] == IDEMPOTENCY_PENDING  # it may still be working
    clock.now += 300
    assert store.begin_idempotent("o", "k", "h")[0] == IDEMPOTENCY_NEW  # not 409 for ever


def test_a_finished_key_is_forgotten_after_a_day(clocked: tuple[RunStore, Clock]) -> None:
    store, clock = clocked
    store.begin_idempotent("o", "k", "h")
    store.finish_idempotent("o", "k", {"runIds": ["run_1"]})
    clock.now += DAY - 60
    assert store.begin_idempotent("o", "k", "h") == (IDEMPOTENCY_REPLAY, {"runIds": ["run_1"]})
    assert store.begin_idempotent("o", "k", "other")[0] == IDEMPOTENCY_MISMATCH
    clock.now += 120
    assert store.begin_idempotent("o", "k", "other")[0] == IDEMPOTENCY_NEW


def test_the_periodic_task_deletes_old_idempotency_rows(clocked: tuple[RunStore, Clock]) -> None:
    store, clock = clocked
    for key in ("a", "b"):
        store.begin_idempotent("o", key, "h")
    clock.now += 2 * DAY
    store.begin_idempotent("o", "c", "h")
    assert store.expire_idempotency(DAY) == 2
    assert store.begin_idempotent("o", "c", "h")[0] == IDEMPOTENCY_PENDING  # the young one stayed
