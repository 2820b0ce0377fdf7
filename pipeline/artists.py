"""Artists: workspace folders (face guide, songs, context), found by account id or slug.

An artist is a folder with `artist.json` ({account_id, name, repository?, ref?, owner?}): `owner` is the account
it belongs to, none means shared. Workspaces with a repository are cloned or updated with `git` into DATA_DIR.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import BadInput, NotFound
from pipeline.models import Artist, Song
from pipeline.repository import clone_or_update
from pipeline.settings import DEMO_ARTIST_DIR, Settings

SONG_EXTENSIONS = (".mp3", ".wav", ".m4a", ".flac", ".ogg")
MAX_CONTEXT_BYTES = 4000  # of each context text: enough for a prompt, and a bound on what a workspace can make us read
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:80] or "artist"


def artist_roots(settings: Settings) -> list[Path]:
    """Every artist workspace folder: those under ARTISTS_DIR, plus the bundled demo artist."""
    roots: list[Path] = []
    if settings.artists_dir and settings.artists_dir.is_dir():
        roots += sorted(p.parent for p in settings.artists_dir.glob("*/artist.json"))
    if settings.include_demo_artist and (DEMO_ARTIST_DIR / "artist.json").exists():
        roots.append(DEMO_ARTIST_DIR)
    return roots


@dataclass(frozen=True)
class Viewer:
    """Who is looking: an account sees its own artists and the shared ones; an admin sees every artist."""

    account: str
    admin: bool = False


def can_see(artist: Artist, viewer: Viewer | None) -> bool:
    """None: no one in particular (the worker, which runs what was already allowed)."""
    return viewer is None or viewer.admin or artist.owner is None or artist.owner == viewer.account


def read_artist(root: Path) -> Artist:
    meta = json.loads((root / "artist.json").read_text(encoding="utf-8"))
    owner = meta.get("owner")
    return Artist(
        account_id=str(uuid.UUID(meta["account_id"])),
        slug=root.name,
        name=meta.get("name") or root.name,
        root=root,
        repository=meta.get("repository"),
        ref=meta.get("ref"),
        owner=str(owner) if owner else None,
    )


def list_artists(settings: Settings, viewer: Viewer | None = None) -> list[Artist]:
    artists: dict[str, Artist] = {}
    for root in artist_roots(settings):
        try:
            artist = read_artist(root)
        except (ValueError, KeyError, OSError):
            continue  # a broken artist.json hides that artist, it does not break the list
        artists.setdefault(artist.account_id, artist)  # a registered copy wins over the bundled demo
    return [a for a in artists.values() if can_see(a, viewer)]


def find_artist(settings: Settings, key: str, viewer: Viewer | None = None) -> Artist:
    """The artist with this account id (or folder slug) that `viewer` may see; NotFound with the original's
    message otherwise (another account's artist is not found, never forbidden)."""
    key = (key or "").strip().lower()
    for artist in list_artists(settings, viewer):
        if artist.account_id == key or artist.slug == key:
            return artist
    raise NotFound("Artist not found for the provided artist_account_id", field=["artist_account_id"])


def sync_repository(artist: Artist, settings: Settings) -> Artist:
    """Clone or update the artist's git repository into DATA_DIR/workspaces and use that copy."""
    if not artist.repository:
        return artist
    dest = settings.data_dir / "workspaces" / artist.account_id
    dest.parent.mkdir(parents=True, exist_ok=True)
    clone_or_update(artist.repository, artist.ref, dest, settings)
    return Artist(artist.account_id, artist.slug, artist.name, dest, artist.repository, artist.ref, artist.owner)


def workspace_file(artist: Artist, path: Path) -> Path | None:
    """`path`'s real path when it is a regular file inside the artist's workspace, else None.

    A workspace (a clone, or a folder an admin made) may hold symlinks to anywhere on the server: a key file,
    /proc/self/environ, /dev/zero. Nothing outside the workspace is ever read.
    """
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_relative_to(artist.root.resolve()) or not real.is_file():
        return None
    return real


def read_workspace_text(artist: Artist, path: Path, max_bytes: int) -> str:
    """At most `max_bytes` of a workspace text file ("" when absent or outside the workspace)."""
    real = workspace_file(artist, path)
    if real is None:
        return ""
    with open(real, "rb") as f:  # read no more than the cap: a huge file must not fill the worker's memory
        return f.read(max_bytes).decode("utf-8-sig", errors="replace")


def list_songs(artist: Artist) -> list[Song]:
    """The artist's songs: songs/<slug>/<slug>.<ext> or songs/<slug>.<ext>, with a <slug>.lrc beside."""
    songs_dir = artist.root / "songs"
    found: dict[str, Song] = {}
    if not songs_dir.is_dir():
        return []
    for path, linked in _song_files(songs_dir):
        # a symlink (the file, its folder or songs/ itself) may point out of the workspace
        if linked and workspace_file(artist, path) is None:
            continue
        slug = path.stem
        lrc = path.with_suffix(".lrc")
        found.setdefault(
            slug.lower(),
            Song(slug=slug, title=slug.replace("-", " ").replace("_", " ").title(), path=path,
                 lrc_path=lrc if lrc.exists() and workspace_file(artist, lrc) else None),
        )
    return list(found.values())


def _song_files(songs_dir: Path) -> list[tuple[Path, bool]]:
    """(path, is a symlink) of songs/<x>.<ext> and songs/<x>/<x>.<ext>, in path order, without walking deeper.

    Every create request checks the artist's songs; a recursive glob with a resolve() per file was a fifth of
    the API's time per request (docs/PERFORMANCE.md), one scandir per folder is a few stat calls.
    """
    files: list[tuple[Path, bool]] = []

    def is_song(entry: os.DirEntry[str]) -> bool:
        return os.path.splitext(entry.name)[1].lower() in SONG_EXTENSIONS and entry.is_file()

    top_linked = songs_dir.is_symlink()
    with os.scandir(songs_dir) as top:
        for entry in top:
            if entry.is_dir():
                try:
                    with os.scandir(entry.path) as inner:
                        files += [(Path(e.path), top_linked or entry.is_symlink() or e.is_symlink()) for e in inner
                                  if os.path.splitext(e.name)[0] == entry.name and is_song(e)]
                except OSError:
                    continue  # an unreadable folder holds no song we can use
            elif is_song(entry):
                files.append((Path(entry.path), top_linked or entry.is_symlink()))
    return sorted(files)


def find_song(artist: Artist, slug: str) -> Song:
    """A slug matches one of the artist's songs, case-insensitively; never a path."""
    wanted = slug.strip().lower()
    for song in list_songs(artist):
        if song.slug.lower() == wanted:
            return song
    names = ", ".join(s.slug for s in list_songs(artist)) or "none"
    raise BadInput(f"Song '{slug}' is not one of this artist's songs (they are: {names})", field=["songs"])


@dataclass(frozen=True)
class Missing:
    file: str
    severity: str  # "required" | "recommended"
    fix: str
    description: str = ""  # what the file is for in the pipeline

    def to_dict(self) -> dict:
        return {"file": self.file, "severity": self.severity, "description": self.description, "fix": self.fix}


def check_readiness(artist: Artist, *, has_song_urls: bool = False, has_images: bool = False) -> list[Missing]:
    """What the artist lacks, each with a one-line fix; required items block a run unless overridden."""
    missing: list[Missing] = []
    if not has_images and checked_face_guide(artist) is None:
        missing.append(Missing("context/images/face-guide.png", "required",
                               "Add a clear, front-facing photo of the artist as context/images/face-guide.png "
                               "(or pass `images`).", "Face guide: the artist's face in every image"))
    if not has_song_urls and not list_songs(artist):
        missing.append(Missing("songs/", "required",
                               "Add at least one song as songs/<slug>/<slug>.mp3 (or pass song URLs in `songs`).",
                               "Songs: the audio track of every video"))
    if not artist.artist_context.is_file():
        missing.append(Missing("context/artist.md", "recommended",
                               "Describe who the artist is in context/artist.md; captions use it.",
                               "Artist context for captions and image prompts"))
    if not artist.audience_context.is_file():
        missing.append(Missing("context/audience.md", "recommended",
                               "Describe who listens in context/audience.md; captions use it.",
                               "Audience context for captions"))
    return missing


def read_context(artist: Artist) -> tuple[str, str]:
    """The artist and audience context texts (empty when absent or outside the workspace), capped."""
    return (read_workspace_text(artist, artist.artist_context, MAX_CONTEXT_BYTES),
            read_workspace_text(artist, artist.audience_context, MAX_CONTEXT_BYTES))


def checked_face_guide(artist: Artist) -> Path | None:
    """The artist's face guide when it is a file inside the workspace."""
    return workspace_file(artist, artist.face_guide)


def is_valid_slug(slug: str) -> bool:
    return bool(_SLUG.match(slug))
