"""Output storage backends (a folder, an S3 bucket on a real moto server), HTTP byte ranges, worker rows."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.settings import Settings
from taskqueue.storage import ByteRange, LocalStorage, S3Storage, make_storage, parse_range
from taskqueue.store import RunStore
from tests.s3_server import S3Server, running_s3
from tests.test_store import Clock


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with running_s3() as server:
        yield server


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "video.mp4"
    path.write_bytes(os.urandom(700_000))  # over one stream chunk, so chunking is exercised
    return path


def _backends(tmp_path: Path, s3: S3Server) -> list:
    return [LocalStorage(tmp_path / "shared"),
            make_storage(Settings(data_dir=tmp_path / "data", **{k.lower(): v for k, v in s3.env("p/q").items()}))]


def test_put_exists_stream_ranges_delete(tmp_path: Path, s3: S3Server, payload: Path) -> None:
    data = payload.read_bytes()
    for storage in _backends(tmp_path, s3):
        assert not storage.exists("run_1", "video.mp4") and storage.size("run_1", "video.mp4") is None
        storage.put("run_1", "video.mp4", payload)
        storage.put("run_1", "poster.jpg", payload)
        assert storage.exists("run_1", "video.mp4") and storage.size("run_1", "video.mp4") == len(data)
        assert b"".join(storage.stream("run_1", "video.mp4")) == data
        assert b"".join(storage.stream("run_1", "video.mp4", ByteRange(10, 19))) == data[10:20]
        tail = ByteRange(len(data) - 5, len(data) - 1)
        assert b"".join(storage.stream("run_1", "video.mp4", tail)) == data[-5:]
        storage.delete("run_1")
        assert not storage.exists("run_1", "video.mp4") and not storage.exists("run_1", "poster.jpg")


def test_s3_objects_under_prefix_and_presigned_url_downloads(tmp_path: Path, s3: S3Server, payload: Path) -> None:
    import httpx

    storage = _backends(tmp_path, s3)[1]
    assert isinstance(storage, S3Storage)
    storage.put("run_2", "video.mp4", payload)
    head = s3.client().head_object(Bucket=s3.bucket, Key="p/q/run_2/video.mp4")
    assert head["ContentType"] == "video/mp4"
    url = storage.presigned_url("run_2", "video.mp4", 60)
    assert url and "Signature" in url
    assert httpx.get(url, timeout=10).content == payload.read_bytes()
    assert storage.local_path("run_2", "video.mp4") is None


def test_local_storage_default_is_the_runs_folder_and_put_in_place_is_a_no_op(tmp_path: Path, payload: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    storage = make_storage(settings)
    assert isinstance(storage, LocalStorage) and storage.root == settings.runs_dir
    target = settings.runs_dir / "run_3" / "video.mp4"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"abc")
    storage.put("run_3", "video.mp4", target)
    assert storage.local_path("run_3", "video.mp4") == target and target.read_bytes() == b"abc"
    shared = make_storage(Settings(data_dir=tmp_path, storage_url=str(tmp_path / "mnt")))
    shared.put("run_3", "video.mp4", target)
    assert (tmp_path / "mnt" / "run_3" / "video.mp4").read_bytes() == b"abc"
    assert not list((tmp_path / "mnt" / "run_3").glob(".*part"))
    with pytest.raises(ValueError):
        make_storage(Settings(data_dir=tmp_path, storage_url="s3:///nobucket"))


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("bytes=0-9", ByteRange(0, 9)), ("bytes=5-", ByteRange(5, 99)), ("bytes=-10", ByteRange(90, 99)),
    ("bytes=90-500", ByteRange(90, 99)), ("bytes=-500", ByteRange(0, 99)), ("bytes=0-1,5-6", None),
    ("items=0-1", None), ("bytes=a-b", None), ("bytes=-", None),
])
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0", "bytes=9-3"])
def test_parse_range_unsatisfiable(header: str) -> None:
    with pytest.raises(ValueError):
        parse_range(header, 100)


def test_worker_rows_beat_go_live_and_are_forgotten(tmp_path: Path) -> None:
    clock = Clock()
    store = RunStore(f"sqlite:///{tmp_path / 'runs.sqlite3'}", clock=clock)
    store.worker_beat("h1:10", "h1", 10, clock.now, None)
    store.worker_beat("h2:20", "h2", 20, clock.now, None)
    clock.now += 30
    store.worker_beat("h1:10", "h1", 10, clock.now - 30, "run_x")
    live = store.live_workers(within_seconds=10)
    assert [(w["name"], w["current_run"]) for w in live] == [("h1:10", "run_x")]
    assert len(store.live_workers(within_seconds=60)) == 2
    assert store.forget_workers(older_than_seconds=20) == 1
    store.worker_gone("h1:10")
    assert store.live_workers(within_seconds=1000) == []
    store.close()


def test_a_shared_folder_keeps_the_only_copy(tmp_path: Path, payload: Path) -> None:
    from taskqueue.storage import LocalStorage
    from taskqueue.tasks import publish_outputs

    out_dir = tmp_path / "worker" / "runs" / "run_s"
    out_dir.mkdir(parents=True)
    (out_dir / "video.mp4").write_bytes(payload.read_bytes())
    shared = LocalStorage(tmp_path / "mnt")
    publish_outputs(shared, "run_s", out_dir)
    assert (tmp_path / "mnt" / "run_s" / "video.mp4").read_bytes() == payload.read_bytes()
    assert not out_dir.exists()  # the worker's own copy is gone once the shared one is whole
    # the default storage is the worker's runs folder itself: nothing moves, nothing is deleted
    here = tmp_path / "data" / "runs" / "run_t"
    here.mkdir(parents=True)
    (here / "video.mp4").write_bytes(b"v")
    publish_outputs(LocalStorage(tmp_path / "data" / "runs"), "run_t", here)
    assert (here / "video.mp4").read_bytes() == b"v"
