"""The render task in-process, on a real store and the real pipeline: every way a run can end."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.settings import Settings
from taskqueue.store import CANCELED, COMPLETED, EXECUTING, FAILED, QUEUED, TIMED_OUT, NewRun, RunStore
from taskqueue.tasks import ProgressWriter, RunMonitor, WorkerHeartbeat, _heartbeats, execute_run, shutting_down
from tests.fake_remote import OPENAI_KEY, Answer, FakeRemote
from tests.http_server import LocalServer

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"


def small(tmp_path: Path, **over: object) -> Settings:
    values: dict = dict(data_dir=tmp_path / "data", clip_seconds=3.0, output_width=180, output_height=320,
                        fetch_allow_hosts=["127.0.0.1"], heartbeat_seconds=0.2, progress_interval_seconds=0.5,
                        retry_delay_seconds=0.0)
    values.update(over)
    return Settings(_env_file=None, **values)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    s = RunStore(f"sqlite:///{tmp_path / 'runs.sqlite3'}")
    yield s
    s.close()


def queued(store: RunStore, **request: object) -> str:
    body = {"artist_account_id": DEMO, "template": None, "caption_length": "short", "lipsync": False,
            "upscale": False, "batch": 1, "songs": None, "images": None, **request}
    run = store.create_batch("o", [NewRun(artist_account_id=DEMO, artist_slug="demo-artist",
                                          template=body["template"], request=body, seed=11)])[0]  # type: ignore[arg-type]
    return run.id


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []

    def __call__(self, run_id: str, *, delay: float | None = None) -> None:
        self.calls.append((run_id, delay))


def test_progress_writes_step_changes_at_once_and_percent_at_most_twice_a_second(store: RunStore) -> None:
    run_id = queued(store)
    store.claim(run_id, "w")
    writes: list[float] = []
    original = store.progress

    def counting(*args: object) -> bool:
        writes.append(time.monotonic())
        return original(*args)  # type: ignore[arg-type]

    store.progress = counting  # type: ignore[method-assign]
    progress = ProgressWriter(store, run_id, interval=0.5)
    progress("song", 0.0)
    progress("song", 3.0)
    progress("render", 30.0)
    start = time.monotonic()
    while time.monotonic() - start < 1.2:  # a render's stream of progress lines
        progress("render", 30 + 60 * (time.monotonic() - start))
    progress("done", 100.0)
    assert 4 <= len(writes) <= 7  # song, render, ~2 throttled, done
    run = store.get(run_id)
    assert run is not None and run.progress == 100.0
    timeline = progress.close()
    assert [t["step"] for t in timeline] == ["song", "render"] and all(t["finished_at"] for t in timeline)
    assert [t["step"] for t in run.timeline] == ["song", "render"]


def test_the_monitor_beats_reads_the_cancel_flag_and_keeps_the_deadline(store: RunStore) -> None:
    run_id = queued(store)
    store.claim(run_id, "w1")
    first_beat = store.get(run_id).heartbeat_at  # type: ignore[union-attr]
    monitor = RunMonitor(store, run_id, "w1", heartbeat_seconds=0.2, timeout_seconds=60, poll_seconds=0.1).start()
    try:
        time.sleep(0.6)
        assert store.get(run_id).heartbeat_at > first_beat  # type: ignore[operator, union-attr]
        assert not monitor.should_stop()
        store.request_cancel(run_id, "o")
        deadline = time.monotonic() + 3
        while not monitor.should_stop() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert monitor.cancelled.is_set() and not monitor.timed_out.is_set()
    finally:
        monitor.stop()
    quick = RunMonitor(store, run_id, "w1", heartbeat_seconds=1, timeout_seconds=0.2).start()
    time.sleep(0.3)
    assert quick.should_stop() and quick.timed_out.is_set()
    quick.stop()


def test_a_run_completes_with_its_output_and_files(tmp_path: Path, store: RunStore) -> None:
    settings = small(tmp_path)
    run_id = queued(store, template="artist-caption-bedroom")
    assert execute_run(run_id, settings, store, enqueue=Recorder()) == COMPLETED
    run = store.get(run_id)
    assert run is not None and run.status == COMPLETED and run.progress == 100.0 and run.attempts == 1
    assert run.output["files"] == {"video": "video.mp4", "poster": "poster.jpg", "image": "image.jpg",  # type: ignore[index]
                                   "meta": "meta.json"}
    assert run.output["template"] == "artist-caption-bedroom" and run.output["seed"] == 11  # type: ignore[index]
    assert [t["step"] for t in run.timeline][-1] == "render" and run.worker and run.heartbeat_at
    assert (settings.runs_dir / run_id / "video.mp4").stat().st_size > 10_000
    assert execute_run(run_id, settings, store) == "skipped"  # a duplicate queue message does nothing


def test_the_workers_row_shows_its_run_while_rendering_and_none_once_done(tmp_path: Path, store: RunStore) -> None:
    # With a heartbeat an hour apart, only the announcements at the claim and at the end can say it
    heartbeat = WorkerHeartbeat(store, interval=3600).start()
    _heartbeats[heartbeat.pid] = heartbeat
    run_id = queued(store)
    seen: set[str | None] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if store.get(run_id).status == EXECUTING:  # type: ignore[union-attr]
                seen.update(w["current_run"] for w in store.live_workers(within_seconds=60))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert execute_run(run_id, small(tmp_path), store) == COMPLETED
        after = [w["current_run"] for w in store.live_workers(within_seconds=60)]
    finally:
        done.set()
        watcher.join()
        _heartbeats.pop(heartbeat.pid)
        heartbeat.stop()
    assert run_id in seen and after == [None]


def test_cancel_during_the_run_ends_canceled(tmp_path: Path, store: RunStore) -> None:
    settings = small(tmp_path, output_width=720, output_height=1280, clip_seconds=8.0)
    run_id = queued(store)

    def cancel_when_running() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if store.get(run_id).status == EXECUTING:  # type: ignore[union-attr]
                store.request_cancel(run_id, "o")
                return
            time.sleep(0.02)

    threading.Thread(target=cancel_when_running, daemon=True).start()
    assert execute_run(run_id, settings, store) == CANCELED
    run = store.get(run_id)
    assert run is not None and run.error["message"] == "Cancelled by its owner" and run.output is None  # type: ignore[index]
    assert not (settings.runs_dir / run_id).exists()


def test_a_run_past_its_time_limit_is_timed_out(tmp_path: Path, store: RunStore) -> None:
    settings = small(tmp_path, output_width=720, output_height=1280, clip_seconds=8.0, run_timeout_seconds=1)
    run_id = queued(store)
    started = time.monotonic()
    assert execute_run(run_id, settings, store) == TIMED_OUT
    assert time.monotonic() - started < 10
    run = store.get(run_id)
    assert run is not None and run.status == TIMED_OUT and "longer than 1 s" in run.error["message"]  # type: ignore[index]
    assert run.error["stage"]  # type: ignore[index]


def test_a_user_error_fails_the_run_with_its_stage(tmp_path: Path, store: RunStore) -> None:
    settings = small(tmp_path)
    with LocalServer() as web:  # a song URL that answers 404
        run_id = queued(store, songs=[web.url("/gone.mp3")])
        assert execute_run(run_id, settings, store) == FAILED
    run = store.get(run_id)
    assert run is not None and run.error["stage"] == "song" and "404" in run.error["message"]  # type: ignore[index]


def test_an_unexpected_error_fails_with_a_short_message_not_a_traceback(tmp_path: Path, store: RunStore) -> None:
    settings = small(tmp_path)
    settings.data_dir.mkdir(parents=True)
    settings.runs_dir.write_text("not a folder")  # the run cannot make its work folder
    run_id = queued(store)
    assert execute_run(run_id, settings, store) == FAILED
    message = store.get(run_id).error["message"]  # type: ignore[index, union-attr]
    assert message.startswith("Internal error during") and "Traceback" not in message and len(message) < 200


def test_transient_provider_failures_are_retried_then_given_up(tmp_path: Path, store: RunStore) -> None:
    with FakeRemote(tmp_path / "remote") as remote:
        settings = small(tmp_path, caption_provider="openai", openai_api_key=OPENAI_KEY,
                         openai_base_url=remote.openai_base_url, provider_retries=0, fallback_to_local=False,
                         task_retries=1)
        remote.script("chat", Answer(status=503, body={"error": {"message": "overloaded"}}))
        run_id = queued(store)
        queue = Recorder()
        assert execute_run(run_id, settings, store, enqueue=queue) == QUEUED
        assert queue.calls == [(run_id, 0.0)]
        waiting = store.get(run_id)
        assert waiting is not None and waiting.status == QUEUED and waiting.error["stage"] == "caption"  # type: ignore[index]
        assert execute_run(run_id, settings, store, enqueue=queue) == COMPLETED  # the queue delivers the retry
        assert store.get(run_id).attempts == 2  # type: ignore[union-attr]

        remote.script("chat", *[Answer(status=503, body={"error": {"message": "overloaded"}})] * 2)
        again = queued(store)
        assert execute_run(again, settings, store, enqueue=queue) == QUEUED
        assert execute_run(again, settings, store, enqueue=queue) == FAILED
        failed = store.get(again)
        assert failed is not None and failed.attempts == 2 and failed.error["stage"] == "caption"  # type: ignore[index]


def test_a_stop_between_the_claim_and_the_render_puts_the_run_back_uncounted(settings: Settings,
                                                                              store: RunStore) -> None:
    # The consumer's stop (a KeyboardInterrupt in the worker) lands right after the claim committed.
    run_id = queued(store)
    real_get = store.get

    def stopped(*args, **kwargs):  # noqa: ANN202 - RunStore.get's signature
        raise KeyboardInterrupt

    store.get = stopped  # type: ignore[method-assign]
    queue = Recorder()
    with pytest.raises(KeyboardInterrupt):
        execute_run(run_id, settings, store, enqueue=queue)
    store.get = real_get  # type: ignore[method-assign]
    run = store.get(run_id)
    assert run is not None and run.status == QUEUED and run.attempts == 0 and run.worker is None
    assert queue.calls == [(run_id, None)]  # its queue message was used up: it is queued again


def test_a_stop_never_requeues_a_run_another_worker_holds(store: RunStore) -> None:
    run_id = queued(store)
    assert store.claim(run_id, "other-host:1")
    assert not store.requeue(run_id, count_attempt=False, worker="this-host:2")
    run = store.get(run_id)
    assert run is not None and run.status == EXECUTING and run.worker == "other-host:1" and run.attempts == 1


def _ffmpeg_children() -> list[int]:
    """This process's ffmpeg children (imageio-ffmpeg's binary is named ffmpeg-linux-...)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()  # noqa: SIM115, PTH123 - a one-line read
            except OSError:
                continue
            comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if comm.startswith("ffmpeg") and int(rest[1]) == os.getpid():
                found.append(int(entry))
    return found


@pytest.fixture
def shutdown_flag() -> Iterator[threading.Event]:
    yield shutting_down
    shutting_down.clear()


def test_a_run_whose_ffmpeg_dies_of_the_shutdown_goes_back_uncounted(tmp_path: Path, store: RunStore,
                                                                      shutdown_flag: threading.Event) -> None:
    # The consumer's SIGTERM goes to the whole process group: here the run's ffmpeg gets it and the step fails
    # before Python's KeyboardInterrupt comes. It is still a shutdown, not a FAILED run.
    settings = small(tmp_path, output_width=720, output_height=1280, clip_seconds=8.0)
    run_id = queued(store)
    killed: list[int] = []

    def stop_like_the_consumer() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            if store.get(run_id).status == EXECUTING:  # type: ignore[union-attr]
                for pid in _ffmpeg_children():
                    shutdown_flag.set()  # what the worker's SIGTERM handler records
                    os.kill(pid, signal.SIGTERM)
                    killed.append(pid)
                    return
            time.sleep(0.005)

    threading.Thread(target=stop_like_the_consumer, daemon=True).start()
    queue = Recorder()
    with pytest.raises(KeyboardInterrupt):
        execute_run(run_id, settings, store, enqueue=queue)
    assert killed, "no ffmpeg was seen running"
    run = store.get(run_id)
    assert run is not None and run.status == QUEUED and run.attempts == 0 and run.worker is None
    assert queue.calls == [(run_id, None)]


def test_a_worker_told_to_stop_takes_no_new_run(settings: Settings, store: RunStore,
                                                shutdown_flag: threading.Event) -> None:
    # Between two tasks Huey's own handler raises nothing, and its loop dequeues the next message
    run_id = queued(store)
    shutdown_flag.set()
    queue = Recorder()
    with pytest.raises(KeyboardInterrupt):
        execute_run(run_id, settings, store, enqueue=queue)
    run = store.get(run_id)
    assert run is not None and run.status == QUEUED and run.attempts == 0
    assert queue.calls == [(run_id, None)]


def test_two_settings_in_one_process_publish_to_their_own_folders(tmp_path: Path) -> None:
    """The full suite once published a ComfyUI run's video into an earlier test's DATA_DIR (keyed by pid alone)."""
    from taskqueue.tasks import process_storage

    first, second = (Settings(data_dir=tmp_path / name, _env_file=None) for name in ("first", "second"))
    assert process_storage(first).root == first.runs_dir  # type: ignore[attr-defined]
    assert process_storage(second).root == second.runs_dir  # type: ignore[attr-defined]
