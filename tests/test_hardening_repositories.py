"""Artist repositories are untrusted: no symlink reads outside the workspace, only allowed transports, refs that
are never options, shallow size-capped clones, credentials never shown, and a per-artist lock with a bounded wait."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import threading
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.artists import checked_face_guide, find_artist, list_songs, read_context, sync_repository
from pipeline.choose_face_guide import choose_face_guide
from pipeline.errors import BadInput
from pipeline.fetch import Fetcher
from pipeline.lyrics import load_lyrics
from pipeline.repository import mask_url
from pipeline.settings import Settings
from taskqueue.trigger import sync_artist
from tests.servers import KEY_A, Studio, running_studio
from tests.test_artists import _git, make_workspace

SECRET = "SECRET-KEY-MATERIAL-do-not-show"
DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"


@pytest.fixture
def repo_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", repository_allow_file=True, _env_file=None)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "server-key.txt"
    path.parent.mkdir()
    path.write_text(SECRET)
    return path


def _register(settings: Settings, url: str, ref: str | None = "main") -> str:
    aid = str(uuid.uuid4())
    entry = settings.artists_dir / f"repo-{aid[:8]}"
    entry.mkdir(parents=True)
    meta = {"account_id": aid, "name": "Repo", "repository": url, **({"ref": ref} if ref else {})}
    (entry / "artist.json").write_text(json.dumps(meta))
    return aid


def _commit_repo(src: Path) -> Path:
    """`src` committed on main, as a bare repository beside it (its file:// remote)."""
    _git("init", "-q", "-b", "main", str(src))
    _git("add", "-A", cwd=src)
    _git("commit", "-q", "-m", "one", cwd=src)
    bare = src.with_name(src.name + ".git")
    _git("clone", "-q", "--bare", str(src), str(bare))
    return bare


# --- symlinks and sizes ---------------------------------------------------------------------------


def test_a_cloned_symlink_to_a_server_file_never_reaches_the_prompt(repo_settings: Settings, tmp_path: Path,
                                                                    secret_file: Path) -> None:
    src = make_workspace(tmp_path / "src", songs=("first",))
    (src / "context" / "artist.md").unlink()
    (src / "context" / "artist.md").symlink_to(secret_file)
    (src / "context" / "audience.md").unlink()
    (src / "context" / "audience.md").symlink_to("/proc/self/environ")
    bare = _commit_repo(src)
    artist = sync_repository(find_artist(repo_settings, _register(repo_settings, bare.as_uri())), repo_settings)
    assert not (artist.root / "context" / "artist.md").is_symlink()  # cloned with symlinks off
    artist_text, audience_text = read_context(artist)
    assert SECRET not in artist_text and "PATH=" not in audience_text


@pytest.mark.parametrize("what", ["artist.md", "audience.md", "lrc", "face-guide", "song-folder"])
def test_a_symlink_out_of_a_local_workspace_is_not_read(settings: Settings, tmp_path: Path, secret_file: Path,
                                                        what: str) -> None:
    root = make_workspace(settings.artists_dir / "linked", songs=("first",))
    artist = find_artist(settings, "linked")
    if what in ("artist.md", "audience.md"):
        (root / "context" / what).unlink()
        (root / "context" / what).symlink_to(secret_file)
        assert SECRET not in "".join(read_context(artist))
    elif what == "lrc":
        secret_file.write_text("[00:00.50]" + SECRET)
        (root / "songs" / "first" / "first.lrc").symlink_to(secret_file)
        song = list_songs(artist)[0]
        assert song.lrc_path is None and SECRET not in json.dumps([line.text for line in load_lyrics(song)])
    elif what == "face-guide":
        outside = tmp_path / "outside" / "face.png"
        (root / "context" / "images" / "face-guide.png").rename(outside)
        (root / "context" / "images" / "face-guide.png").symlink_to(outside)
        assert checked_face_guide(artist) is None
        with pytest.raises(BadInput, match="no face guide"):
            choose_face_guide(artist, [], Fetcher(tmp_path / "cache"), tmp_path / "uploads")
    else:  # a song folder that is a link to a folder elsewhere holding <slug>/<slug>.mp3
        elsewhere = tmp_path / "outside" / "other"
        (root / "songs" / "first").rename(elsewhere)
        (root / "songs" / "other").symlink_to(elsewhere, target_is_directory=True)
        (elsewhere / "first.mp3").rename(elsewhere / "other.mp3")
        assert [s.slug for s in list_songs(artist)] == []


def test_a_huge_context_or_lrc_is_read_only_up_to_its_cap(settings: Settings) -> None:
    root = make_workspace(settings.artists_dir / "huge", songs=("first",))
    for path in (root / "context" / "artist.md", root / "songs" / "first" / "first.lrc"):
        with open(path, "wb") as f:
            f.truncate(64 * 1024 * 1024)  # sparse: 64 MB that takes no disk
    artist = find_artist(settings, "huge")
    tracemalloc.start()
    try:
        artist_text, _ = read_context(artist)
        load_lyrics(list_songs(artist)[0])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(artist_text) <= 4000
    assert peak < 8 * 1024 * 1024, f"reading a 64 MB file took {peak / 2**20:.0f} MB"


# --- transports, refs, size ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "path", "ext", "http", "git", "ssh", "scp"])
def test_only_https_repositories_are_fetched(settings: Settings, tmp_path: Path, kind: str) -> None:
    bare = _commit_repo(make_workspace(tmp_path / "src", songs=("first",)))
    canary = tmp_path / "ext-ran"
    url = {"file": bare.as_uri(), "path": str(bare), "ext": f"ext::sh -c touch% {canary}",
           "http": "http://127.0.0.1:9/a.git", "git": "git://127.0.0.1:9/a.git",
           "ssh": "ssh://git@127.0.0.1:9/a.git", "scp": "git@127.0.0.1:a.git"}[kind]
    aid = _register(settings, url)
    with pytest.raises(BadInput, match="not fetched|not allowed") as info:
        sync_repository(find_artist(settings, aid), settings)
    assert info.value.field == ["repository"]
    assert not canary.exists()
    assert not (settings.data_dir / "workspaces" / aid).exists()


@pytest.mark.parametrize("ref", ["--upload-pack=touch {canary}", "-c", "main..other", "main;touch {canary}",
                                 "HEAD@{{1}}"])
def test_a_stored_ref_is_checked_on_every_fetch(repo_settings: Settings, tmp_path: Path, ref: str) -> None:
    bare = _commit_repo(make_workspace(tmp_path / "src", songs=("first",)))
    canary = tmp_path / "ref-ran"
    aid = _register(repo_settings, bare.as_uri())
    sync_repository(find_artist(repo_settings, aid), repo_settings)  # a good first clone; the fetch path is next
    meta_path = next(repo_settings.artists_dir.glob("repo-*/artist.json"))
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "ref": ref.format(canary=canary)}))
    with pytest.raises(BadInput) as info:
        sync_repository(find_artist(repo_settings, aid), repo_settings)
    assert not canary.exists(), "git ran the command the stored ref named"
    assert "branch or tag" in info.value.message and info.value.field == ["ref"]


def test_clones_are_shallow(repo_settings: Settings, tmp_path: Path) -> None:
    src = make_workspace(tmp_path / "src", songs=("first",))
    bare = _commit_repo(src)
    (src / "context" / "artist.md").write_text("Second commit.")
    _git("commit", "-q", "-am", "two", cwd=src)
    _git("push", "-q", str(bare), "main", cwd=src)
    artist = sync_repository(find_artist(repo_settings, _register(repo_settings, bare.as_uri())), repo_settings)
    count = subprocess.run(["git", "-C", str(artist.root), "rev-list", "--count", "HEAD"], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert count == "1"


def test_a_repository_over_the_size_cap_is_refused_and_removed(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", repository_allow_file=True, repository_max_bytes=256 * 1024,
                        _env_file=None)
    src = make_workspace(tmp_path / "src", songs=("first",))
    (src / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))  # random: git cannot compress it under the cap
    bare = _commit_repo(src)
    aid = _register(settings, bare.as_uri())
    with pytest.raises(BadInput, match="larger than"):
        sync_repository(find_artist(settings, aid), settings)
    assert list((settings.data_dir / "workspaces").iterdir()) == []  # no clone, no partial clone


# --- credentials -----------------------------------------------------------------------------------


def test_a_token_in_the_address_is_masked() -> None:
    assert mask_url("https://x-access-token:ghp_abc123@github.com/me/a.git") == "https://***@github.com/me/a.git"
    assert mask_url("https://github.com/me/a.git") == "https://github.com/me/a.git"


def test_a_failed_clone_does_not_show_the_token(settings: Settings) -> None:
    aid = _register(settings, "https://oauth2:tok-SECRET-123@127.0.0.1:9/me/a.git")
    with pytest.raises(BadInput) as info:
        sync_repository(find_artist(settings, aid), settings)
    assert "tok-SECRET-123" not in info.value.message and "Could not fetch" in info.value.message


# --- the API: masking and the per-artist lock ------------------------------------------------------


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    with running_studio(tmp_path_factory.mktemp("repos"), worker=False, REPOSITORY_ALLOW_FILE="true",
                        REPOSITORY_LOCK_WAIT_SECONDS="0.5") as s:
        yield s


def test_the_artist_list_never_shows_a_token(studio: Studio) -> None:
    settings = Settings(data_dir=studio.data_dir, _env_file=None)
    _register(settings, "https://oauth2:tok-SECRET-456@example.com/me/a.git")
    r = httpx.get(studio.url("/api/artists"), headers={"x-api-key": KEY_A}, timeout=30)
    assert r.status_code == 200, r.text
    assert "tok-SECRET-456" not in r.text
    assert "https://***@example.com/me/a.git" in [a["repository"] for a in r.json()["artists"]]


def test_a_fetch_held_too_long_is_503_and_other_artists_still_create(studio: Studio, tmp_path: Path) -> None:
    settings = Settings(data_dir=studio.data_dir, repository_allow_file=True, _env_file=None)
    bare = _commit_repo(make_workspace(tmp_path / "src", songs=("first",)))
    aid = _register(settings, bare.as_uri())
    sync_artist(find_artist(settings, aid), settings)  # cloned once; the next create fetches
    body = {"template": "artist-caption-stage", "caption_length": "none"}
    lock_path = settings.data_dir / "workspaces" / f"{aid}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another request's fetch of this artist, taking its time
        answers: dict[str, httpx.Response] = {}

        def create(key: str, artist: str) -> None:
            answers[key] = httpx.post(studio.url("/api/content/create"), headers={"x-api-key": KEY_A},
                                      json={**body, "artist_account_id": artist}, timeout=60)

        held = threading.Thread(target=create, args=("held", aid))
        held.start()
        create("other", DEMO)  # meanwhile, another artist's create is answered
        held.join(timeout=20)
        finished_while_locked = not held.is_alive()
    held.join()
    assert answers["other"].status_code == 202, answers["other"].text
    assert finished_while_locked, "the create waited on the lock without a bound"
    assert answers["held"].status_code == 503, answers["held"].text
    assert "being fetched" in answers["held"].json()["error"]
