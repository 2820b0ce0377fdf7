"""Artist workspaces: layout, lookup, readiness, songs, and git-backed workspaces (real git, bare repos)."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from pipeline.artists import check_readiness, find_artist, find_song, list_artists, list_songs, sync_repository
from pipeline.errors import BadInput, NotFound
from pipeline.settings import Settings
from tests.media import make_picture, make_tone


def make_workspace(root: Path, *, account_id: str | None = None, face: bool = True,
                   songs: tuple[str, ...] = ("hiccups",), context: bool = True, nested: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "artist.json").write_text(json.dumps({"account_id": account_id or str(uuid.uuid4()), "name": root.name}))
    if face:
        (root / "context" / "images").mkdir(parents=True, exist_ok=True)
        make_picture(root / "context" / "images" / "face-guide.png")
    if context:
        (root / "context").mkdir(exist_ok=True)
        (root / "context" / "artist.md").write_text("An artist.")
        (root / "context" / "audience.md").write_text("Listeners.")
    for slug in songs:
        folder = root / "songs" / slug if nested else root / "songs"
        folder.mkdir(parents=True, exist_ok=True)
        make_tone(folder / f"{slug}.mp3", seconds=1.0)
    return root


def test_finds_artists_by_account_id_and_slug(settings: Settings) -> None:
    aid = str(uuid.uuid4())
    make_workspace(settings.artists_dir / "ana", account_id=aid)
    assert find_artist(settings, aid).slug == "ana"
    assert find_artist(settings, aid.upper()).slug == "ana"
    assert find_artist(settings, "ana").account_id == aid
    assert {a.slug for a in list_artists(settings)} >= {"ana"}
    with pytest.raises(NotFound, match="Artist not found for the provided artist_account_id"):
        find_artist(settings, str(uuid.uuid4()))


def test_broken_artist_json_hides_only_that_artist(settings: Settings) -> None:
    make_workspace(settings.artists_dir / "good")
    bad = settings.artists_dir / "bad"
    bad.mkdir(parents=True)
    (bad / "artist.json").write_text("{not json")
    assert "good" in {a.slug for a in list_artists(settings)}
    assert "bad" not in {a.slug for a in list_artists(settings)}


def test_songs_in_both_layouts_with_lrc(settings: Settings) -> None:
    root = make_workspace(settings.artists_dir / "x", songs=("one",))
    make_tone(root / "songs" / "two.wav", seconds=1.0)
    (root / "songs" / "one" / "one.lrc").write_text("[00:01.00]hello")
    (root / "songs" / "notes.txt").write_text("not a song")
    artist = find_artist(settings, "x")
    songs = {s.slug: s for s in list_songs(artist)}
    assert set(songs) == {"one", "two"}
    assert songs["one"].lrc_path is not None and songs["two"].lrc_path is None
    assert find_song(artist, "ONE").slug == "one"


@pytest.mark.parametrize("slug", ["../x/songs/one", "/etc/passwd", "one/../../x", "nope", ""])
def test_slug_never_escapes_or_guesses(settings: Settings, slug: str) -> None:
    make_workspace(settings.artists_dir / "x", songs=("one",))
    with pytest.raises(BadInput, match="is not one of this artist's songs"):
        find_song(find_artist(settings, "x"), slug)


def test_readiness_lists_missing_files_with_fixes(settings: Settings) -> None:
    make_workspace(settings.artists_dir / "empty", face=False, songs=(), context=False)
    artist = find_artist(settings, "empty")
    missing = {m.file: m for m in check_readiness(artist)}
    assert missing["context/images/face-guide.png"].severity == "required"
    assert missing["songs/"].severity == "required"
    assert missing["context/artist.md"].severity == "recommended"
    assert all(m.fix for m in missing.values())
    overridden = {m.file for m in check_readiness(artist, has_song_urls=True, has_images=True)}
    assert "songs/" not in overridden and "context/images/face-guide.png" not in overridden


def _git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd, check=True,
                   capture_output=True)


def make_artist_repo(tmp_path: Path) -> tuple[Path, Path]:
    """An artist workspace committed to git (with one song, "first") and a bare clone to use as its remote."""
    src = make_workspace(tmp_path / "src", songs=("first",))
    _git("init", "-q", "-b", "main", str(src))
    _git("add", "-A", cwd=src)
    _git("commit", "-q", "-m", "one", cwd=src)
    bare = tmp_path / "artist.git"
    _git("clone", "-q", "--bare", str(src), str(bare))
    return src, bare


def test_repository_workspace_is_cloned_then_updated(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"repository_allow_file": True})  # file:// only by this setting
    src, bare = make_artist_repo(tmp_path)
    aid = str(uuid.uuid4())
    entry = settings.artists_dir / "remote"
    entry.mkdir(parents=True)
    (entry / "artist.json").write_text(json.dumps({"account_id": aid, "name": "Remote", "repository": bare.as_uri(),
                                                   "ref": "main"}))
    artist = sync_repository(find_artist(settings, aid), settings)
    assert [s.slug for s in list_songs(artist)] == ["first"]
    # a new song pushed to the repository shows up after the next sync
    make_tone(src / "songs" / "second.mp3", seconds=1.0)
    _git("add", "-A", cwd=src)
    _git("commit", "-q", "-m", "two", cwd=src)
    _git("push", "-q", str(bare), "main", cwd=src)
    artist = sync_repository(find_artist(settings, aid), settings)
    assert sorted(s.slug for s in list_songs(artist)) == ["first", "second"]


def test_unreachable_repository_is_a_clear_error(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"repository_allow_file": True})
    aid = str(uuid.uuid4())
    entry = settings.artists_dir / "gone"
    entry.mkdir(parents=True)
    (entry / "artist.json").write_text(json.dumps({"account_id": aid, "name": "Gone",
                                                   "repository": (tmp_path / "nothing.git").as_uri()}))
    with pytest.raises(BadInput, match="Could not fetch the artist's repository"):
        sync_repository(find_artist(settings, aid), settings)
