"""Artist workspaces on many machines: one shared ARTISTS_DIR of `artist.json` pointers, and each machine (its
own DATA_DIR) cloning and updating its own copy of the artist's git repository, safely under parallel workers."""

from __future__ import annotations

import json
import multiprocessing
import uuid
from pathlib import Path

import pytest

from pipeline.artists import find_artist, list_songs
from pipeline.settings import Settings
from taskqueue.trigger import sync_artist
from tests.media import make_tone
from tests.test_artists import _git, make_artist_repo


def _push_song(src: Path, bare: Path, slug: str) -> None:
    make_tone(src / "songs" / f"{slug}.mp3", seconds=0.5)
    _git("add", "-A", cwd=src)
    _git("commit", "-q", "-m", slug, cwd=src)
    _git("push", "-q", str(bare), "main", cwd=src)


@pytest.fixture
def shared_artist(tmp_path: Path) -> tuple[str, Path, Path, Path]:
    """(account id, shared ARTISTS_DIR, the artist's working copy, its bare repository)."""
    src, bare = make_artist_repo(tmp_path)
    aid = str(uuid.uuid4())
    artists_dir = tmp_path / "shared-artists"
    (artists_dir / "remote").mkdir(parents=True)
    (artists_dir / "remote" / "artist.json").write_text(
        json.dumps({"account_id": aid, "name": "Remote", "repository": bare.as_uri(), "ref": "main"}))
    return aid, artists_dir, src, bare


def _machine(tmp_path: Path, name: str, artists_dir: Path) -> Settings:
    return Settings(data_dir=tmp_path / name / "data", artists_dir=artists_dir, repository_allow_file=True,
                    _env_file=None)


def _songs(settings: Settings, aid: str) -> tuple[Path, list[str]]:
    artist = sync_artist(find_artist(settings, aid), settings)
    return artist.root, sorted(s.slug for s in list_songs(artist))


def test_each_machine_clones_and_updates_its_own_copy(tmp_path: Path, shared_artist: tuple) -> None:
    aid, artists_dir, src, bare = shared_artist
    a, b = _machine(tmp_path, "machine-a", artists_dir), _machine(tmp_path, "machine-b", artists_dir)
    root_a, songs_a = _songs(a, aid)
    root_b, songs_b = _songs(b, aid)
    assert root_a == a.data_dir / "workspaces" / aid and root_b == b.data_dir / "workspaces" / aid
    assert (root_a / ".git").is_dir() and (root_b / ".git").is_dir()
    assert songs_a == songs_b == ["first"]

    _push_song(src, bare, "second")
    assert _songs(a, aid)[1] == ["first", "second"]  # the next run on machine A fetches the new song
    assert sorted(p.stem for p in (root_b / "songs").rglob("*.mp3")) == ["first"]  # B's copy: its own until B syncs
    assert _songs(b, aid)[1] == ["first", "second"]


def _sync_in_process(data_dir: str, artists_dir: str, aid: str, out: multiprocessing.Queue) -> None:
    settings = Settings(data_dir=Path(data_dir), artists_dir=Path(artists_dir), repository_allow_file=True,
                        _env_file=None)
    try:
        out.put(("ok", str(sync_artist(find_artist(settings, aid), settings).root)))
    except Exception as exc:  # reported to the test, which fails on it
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def test_parallel_workers_on_one_machine_share_one_clone(tmp_path: Path, shared_artist: tuple) -> None:
    """WORKERS processes starting runs of the same new artist at once: one clone, no failed run."""
    aid, artists_dir, _src, _bare = shared_artist
    machine = _machine(tmp_path, "machine-c", artists_dir)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_sync_in_process, args=(str(machine.data_dir), str(artists_dir), aid, out))
             for _ in range(3)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert results == [("ok", str(machine.data_dir / "workspaces" / aid))] * 3, results
    leftovers = [p.name for p in (machine.data_dir / "workspaces").iterdir() if p.name.endswith(".cloning")]
    assert not leftovers
    assert _songs(machine, aid)[1] == ["first"]
