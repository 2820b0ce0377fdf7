"""Files people hand the studio: checked by content (Pillow decodes images, ffmpeg probes songs), capped
in size, and written whole (temp file, then rename). Also artist workspaces made from such files.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from pipeline.artists import SONG_EXTENSIONS, Viewer, is_valid_slug, list_artists, slugify, sync_repository
from pipeline.errors import BadInput
from pipeline.ffmpeg import probe
from pipeline.image_file import open_image
from pipeline.models import Artist
from pipeline.repository import check_ref, check_repository_url
from pipeline.settings import Settings

MAX_IMAGE_MB = 15
MAX_SONG_MB = 60
MAX_LYRICS_KB = 256
MAX_CONTEXT_CHARS = 20_000
IMAGE_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
IMAGE_UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp"]
SONG_UPLOAD_TYPES = [ext.lstrip(".") for ext in SONG_EXTENSIONS]


@dataclass(frozen=True)
class Upload:
    """A file as the browser sent it."""

    name: str
    data: bytes


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def check_image(upload: Upload, max_mb: int = MAX_IMAGE_MB) -> str:
    """The file's real image type as an extension (png/jpg/webp); BadInput when it is not a decodable image."""
    if not upload.data:
        raise BadInput(f"{upload.name} is empty.")
    if len(upload.data) > max_mb * 1024 * 1024:
        raise BadInput(f"{upload.name} is {_mb(len(upload.data))}; images can be at most {max_mb} MB.")
    try:
        with open_image(io.BytesIO(upload.data), upload.name) as img:  # pixel limit from the header first
            fmt = img.format or ""
            img.load()  # decodes every pixel: a truncated or disguised file fails here
    except BadInput:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        raise BadInput(f"{upload.name} is not an image that can be opened (use PNG, JPEG or WebP).") from None
    if fmt not in IMAGE_FORMATS:
        raise BadInput(f"{upload.name} is a {fmt or 'unknown'} image; use PNG, JPEG or WebP.")
    return IMAGE_FORMATS[fmt]


def _write_whole(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_upload_image(upload: Upload, uploads_dir: Path) -> Path:
    """Check the image and keep it as DATA_DIR/uploads/<random>.<ext> (the only local images runs accept)."""
    ext = check_image(upload)
    path = uploads_dir / f"{secrets.token_hex(12)}.{ext}"
    _write_whole(path, upload.data)
    return path


def check_song(upload: Upload, ffmpeg: str | None = None, max_mb: int = MAX_SONG_MB) -> float:
    """The song's length in seconds; BadInput when it is not audio ffmpeg can read."""
    ext = Path(upload.name).suffix.lower()
    if ext not in SONG_EXTENSIONS:
        raise BadInput(f"{upload.name}: songs must be {', '.join(SONG_UPLOAD_TYPES)} files.")
    if len(upload.data) > max_mb * 1024 * 1024:
        raise BadInput(f"{upload.name} is {_mb(len(upload.data))}; songs can be at most {max_mb} MB.")
    with tempfile.TemporaryDirectory(prefix="song-check-") as tmp:
        path = Path(tmp) / f"song{ext}"
        path.write_bytes(upload.data)
        try:
            info = probe(path, ffmpeg)
        except BadInput:
            info = None
    if info is None or not info.has_audio or not info.duration:
        raise BadInput(f"{upload.name} is not audio that can be played.")
    return info.duration


def check_lyrics(upload: Upload) -> str:
    """The .lrc text; BadInput when it is not small UTF-8 text."""
    if Path(upload.name).suffix.lower() != ".lrc":
        raise BadInput(f"{upload.name}: lyrics must be .lrc files.")
    if len(upload.data) > MAX_LYRICS_KB * 1024:
        raise BadInput(f"{upload.name} is larger than {MAX_LYRICS_KB} KB; is it really lyrics?")
    try:
        return upload.data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadInput(f"{upload.name} is not UTF-8 text.") from None


def song_slug(filename: str) -> str:
    slug = slugify(Path(filename).stem)
    if not is_valid_slug(slug):
        raise BadInput(f"{filename}: the file name cannot be used as a song name.")
    return slug


def unique_folder(parent: Path, base: str) -> Path:
    candidate, n = parent / base, 2
    while candidate.exists():
        candidate, n = parent / f"{base}-{n}", n + 1
    return candidate


def write_face_guide(root: Path, upload: Upload) -> None:
    """Any accepted image becomes context/images/face-guide.png (the name the pipeline looks for)."""
    check_image(upload)
    with Image.open(io.BytesIO(upload.data)) as img:
        img = img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB")
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
    _write_whole(root / "context" / "images" / "face-guide.png", buf.getvalue())


def write_songs(root: Path, songs: list[Upload], lyrics: list[Upload], ffmpeg: str | None = None) -> list[str]:
    """songs/<slug>/<slug>.<ext> (+ <slug>.lrc when a lyrics file has the same name); the slugs written."""
    checked = [(song_slug(s.name), s) for s in songs]
    for _, song in checked:
        check_song(song, ffmpeg)
    lyric_texts = {song_slug(lrc.name): check_lyrics(lrc) for lrc in lyrics}
    slugs = [slug for slug, _ in checked]
    unmatched = sorted(set(lyric_texts) - set(slugs) - {p.name for p in (root / "songs").glob("*")})
    if unmatched:
        raise BadInput(f"No song matches the lyrics file(s) {', '.join(u + '.lrc' for u in unmatched)}; "
                       "name each .lrc like its song.")
    for slug, song in checked:
        _write_whole(root / "songs" / slug / f"{slug}{Path(song.name).suffix.lower()}", song.data)
    for slug, text in lyric_texts.items():
        _write_whole(root / "songs" / slug / f"{slug}.lrc", text.encode("utf-8"))
    return slugs


def write_context(root: Path, artist_text: str, audience_text: str) -> None:
    for name, text in (("artist.md", artist_text), ("audience.md", audience_text)):
        text = (text or "").strip()
        if len(text) > MAX_CONTEXT_CHARS:
            raise BadInput(f"The {name[:-3]} text is longer than {MAX_CONTEXT_CHARS} characters.")
        if text:
            _write_whole(root / "context" / name, (text + "\n").encode("utf-8"))


def _check_name(settings: Settings, name: str, owner: str | None) -> str:
    name = (name or "").strip()
    if not name:
        raise BadInput("Give the artist a name.")
    if len(name) > 100:
        raise BadInput("The name is longer than 100 characters.")
    # among the artists the maker sees: another account's names are not theirs to learn
    seen = list_artists(settings, Viewer(owner) if owner else None)
    if any(a.name.lower() == name.lower() for a in seen):
        raise BadInput(f"There is already an artist called {name}.")
    return name


def create_artist(settings: Settings, name: str, *, face: Upload | None = None, songs: list[Upload] | None = None,
                  lyrics: list[Upload] | None = None, artist_text: str = "", audience_text: str = "",
                  owner: str | None = None) -> Artist:
    """A new workspace under ARTISTS_DIR, written to a hidden folder and renamed in only when complete; it belongs
    to `owner` (None: shared)."""
    name = _check_name(settings, name, owner)
    assert settings.artists_dir is not None
    settings.artists_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".new-artist-", dir=settings.artists_dir))
    try:
        if face is not None:
            write_face_guide(staging, face)
        if songs or lyrics:
            write_songs(staging, songs or [], lyrics or [], settings.ffmpeg_binary)
        write_context(staging, artist_text, audience_text)
        staging.chmod(0o755)
        root = unique_folder(settings.artists_dir, slugify(name))
        os.rename(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # artist.json last: a folder without it is not an artist, so no one ever sees a half-made workspace
    meta = {"account_id": str(uuid.uuid4()), "name": name, **({"owner": owner} if owner else {})}
    _write_whole(root / "artist.json", (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
    return Artist(meta["account_id"], root.name, name, root, owner=owner)


def add_to_artist(artist: Artist, settings: Settings, *, face: Upload | None = None,
                  songs: list[Upload] | None = None, lyrics: list[Upload] | None = None,
                  artist_text: str = "", audience_text: str = "") -> None:
    """Fix a workspace's readiness: a new face guide, more songs, context texts."""
    if artist.repository:
        raise BadInput("This artist's files come from its repository; change them there.")
    if settings.artists_dir is None or settings.artists_dir.resolve() not in artist.root.resolve().parents:
        raise BadInput("The bundled demo artist cannot be changed; add your own artist instead.")
    if face is not None:
        write_face_guide(artist.root, face)
    if songs or lyrics:
        write_songs(artist.root, songs or [], lyrics or [], settings.ffmpeg_binary)
    write_context(artist.root, artist_text, audience_text)


def connect_repository(settings: Settings, name: str, url: str, ref: str = "", owner: str | None = None) -> Artist:
    """An artist whose workspace is a git repository: cloned once now (so a bad URL says so at once),
    then kept as artist.json with `repository` (runs update the clone before they start)."""
    name = _check_name(settings, name, owner)
    url, ref = (url or "").strip(), (ref or "").strip()
    if "://" not in url and not url.startswith("git@"):
        raise BadInput("That does not look like a git repository address (https://…).")
    check_repository_url(url, settings)
    if ref:
        check_ref(ref)
    assert settings.artists_dir is not None
    account_id = str(uuid.uuid4())
    artist = Artist(account_id, slugify(name), name, settings.artists_dir, url, ref or None)
    synced = sync_repository(artist, settings)  # BadInput with git's own last line when it fails
    root = unique_folder(settings.artists_dir, slugify(name))
    meta = {"account_id": account_id, "name": name, "repository": url, **({"ref": ref} if ref else {}),
            **({"owner": owner} if owner else {})}
    _write_whole(root / "artist.json", (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
    return Artist(account_id, root.name, name, synced.root, url, ref or None, owner)
