"""Names and ids that try to be paths, and uploads that lie about what they are: checked by decoding, kept
inside the folders they belong to, refused with a clear message otherwise."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from pages._uploads import (
    Upload,
    check_image,
    check_lyrics,
    check_song,
    create_artist,
    save_upload_image,
    song_slug,
)
from pipeline.artists import find_artist, find_song, list_artists, list_songs
from pipeline.choose_face_guide import resolve_image
from pipeline.errors import BadInput, NotFound
from pipeline.fetch import Fetcher
from pipeline.settings import Settings
from pipeline.templates import load_template
from tests.media import make_picture, make_tone
from tests.servers import KEY_A, Studio, running_studio
from tests.test_artists import make_workspace

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"


def png_bytes(width: int = 64, height: int = 48, mode: str = "RGB", fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height), 128).save(buf, format=fmt)
    return buf.getvalue()


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# --- uploads: the content decides, the name never becomes a path -----------------------------------------------


@pytest.mark.parametrize("name, data, message", [
    ("face.png", b"<html><script>alert(1)</script></html>", "not an image that can be opened"),
    ("face.png", png_bytes()[:60], "not an image that can be opened"),  # truncated: fails when decoded
    ("face.png", b"", "is empty"),
    ("face.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not an image that can be opened"),
    ("face.png", png_bytes(fmt="GIF"), "is a GIF image; use PNG, JPEG or WebP"),
    ("face.jpg", png_bytes(fmt="BMP"), "is a BMP image; use PNG, JPEG or WebP"),
    ("face.png", png_bytes(12000, 12000, "L"), "images can be at most 40 megapixels"),
])
def test_an_image_upload_is_checked_by_decoding(name: str, data: bytes, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        check_image(Upload(name, data))


def test_an_image_upload_over_the_size_cap_is_refused() -> None:
    with pytest.raises(BadInput, match="at most 1 MB"):
        check_image(Upload("big.png", os.urandom(1024 * 1024 + 1)), max_mb=1)


def test_an_image_is_kept_under_a_random_name_with_the_type_it_really_has(tmp_path: Path) -> None:
    uploads = tmp_path / "data" / "uploads"
    saved = save_upload_image(Upload("../../../etc/cron.d/evil.jpg", png_bytes()), uploads)
    assert saved.parent == uploads and saved.suffix == ".png"  # a PNG called .jpg is a PNG
    assert "evil" not in saved.name and ".." not in saved.name
    assert files_under(tmp_path) == {saved}


@pytest.mark.parametrize("name", ["song.mp3", "../../../tmp/evil.mp3", "song.wav"])
def test_a_song_upload_must_decode_whatever_its_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(BadInput, match="not audio that can be played"):
        check_song(Upload(name, b"ID3" + b"\0" * 5000))
    assert not Path("/tmp/evil.mp3").exists()


def test_a_song_upload_with_a_name_that_is_not_a_song_type_is_refused() -> None:
    with pytest.raises(BadInput, match="songs must be"):
        check_song(Upload("song.exe", b"MZ" + b"\0" * 100))


@pytest.mark.parametrize("name, slug", [("../../etc/passwd.mp3", "passwd"), ("My Song (Live).mp3", "my-song-live"),
                                        ("..\\..\\win.mp3", "win"), ("/abs/path/x.mp3", "x")])
def test_song_names_become_slugs_not_paths(name: str, slug: str) -> None:
    assert song_slug(name) == slug


def test_a_new_artist_from_hostile_names_stays_inside_the_artists_folder(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    song = make_tone(tmp_path / "t.mp3", seconds=1.0).read_bytes()
    lyrics = "[00:00.00] \"quotes\", colons: {braces} \\N 100% ✨ مرحبا".encode()
    artist = create_artist(settings, "../../../etc", face=Upload("../../face.png", png_bytes()),
                           songs=[Upload("../../../tmp/evil.mp3", song)],
                           lyrics=[Upload("../../../tmp/evil.lrc", lyrics)])
    root = settings.artists_dir
    assert artist.root.parent == root and artist.root.name == "etc"
    written = files_under(tmp_path / "data")
    assert all(root in p.parents for p in written), written
    assert (artist.root / "songs" / "evil" / "evil.mp3").is_file()
    assert (artist.root / "songs" / "evil" / "evil.lrc").read_text(encoding="utf-8") == lyrics.decode()
    assert not Path("/tmp/evil.mp3").exists() and not Path("/tmp/evil.lrc").exists()


def test_lyrics_must_be_small_utf8_text() -> None:
    with pytest.raises(BadInput, match="not UTF-8"):
        check_lyrics(Upload("a.lrc", b"\xff\xfe\x00\x00binary"))
    with pytest.raises(BadInput, match="must be .lrc"):
        check_lyrics(Upload("a.txt", b"[00:01.00] hi"))
    assert check_lyrics(Upload("a.lrc", b"[00:01.00] {\\an8}%s")) == "[00:01.00] {\\an8}%s"


# --- ids, slugs and local paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize("template_id", ["../../etc/passwd", "..", "./artist-caption-stage", "artist-caption-stage/",
                                         "/etc/passwd", "ARTIST-CAPTION-STAGE", "artist-caption-stage\x00", "%2e%2e"])
def test_template_ids_are_never_paths(template_id: str) -> None:
    with pytest.raises(BadInput, match="Unsupported template"):
        load_template(template_id)


@pytest.mark.parametrize("slug", ["../hiccups", "hiccups/../../x", "/etc/passwd", "..", "hiccups.mp3", "songs/hiccups"])
def test_song_slugs_are_never_paths(settings: Settings, slug: str) -> None:
    with pytest.raises(BadInput, match="is not one of this artist's songs"):
        find_song(find_artist(settings, DEMO), slug)


@pytest.mark.parametrize("key", ["../demo-artist", "../../assets/demo-artist", "/", ".", "..", "*", ""])
def test_artist_keys_are_never_paths(settings: Settings, key: str) -> None:
    with pytest.raises(NotFound):
        find_artist(settings, key)


def test_a_song_symlinked_out_of_the_workspace_is_not_a_song(settings: Settings, tmp_path: Path) -> None:
    root = make_workspace(settings.artists_dir / "linky", songs=("real",))
    outside = make_tone(tmp_path / "outside.mp3", seconds=1.0)
    (root / "songs" / "stolen").mkdir()
    (root / "songs" / "stolen" / "stolen.mp3").symlink_to(outside)
    artist = find_artist(settings, "linky")
    assert [s.slug for s in list_songs(artist)] == ["real"]


def test_a_broken_artist_json_hides_the_artist_without_breaking_the_list(settings: Settings) -> None:
    bad = settings.artists_dir / "bad"
    bad.mkdir(parents=True)
    (bad / "artist.json").write_text(json.dumps({"account_id": "../../etc", "name": "x"}))
    assert "bad" not in {a.slug for a in list_artists(settings)}


def test_local_images_only_from_the_uploads_folder(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    inside = make_picture(uploads / "ok.png", 32, 32)
    outside = make_picture(tmp_path / "secret.png", 32, 32)
    (uploads / "link.png").symlink_to(outside)
    fetcher = Fetcher(tmp_path / "cache")
    assert resolve_image(str(inside), fetcher, uploads) == inside
    for spec in (str(outside), str(uploads / ".." / "secret.png"), str(uploads / "link.png"), "/etc/passwd",
                 str(uploads)):
        with pytest.raises(BadInput, match="is not an uploaded image"):
            resolve_image(spec, fetcher, uploads)


# --- the same over HTTP --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    with running_studio(tmp_path_factory.mktemp("inputs"), worker=False) as s:
        yield s


@pytest.mark.parametrize("path", [
    "/api/files/..%2F..%2Fsecret.key/video.mp4", "/api/files/run_x/..%2F..%2Fsecret.key",
    "/api/files/%2e%2e/secret.key", "/api/files/..%2F..%2F..%2Fetc/passwd", "/api/files/run_x/..%2Fapi-key.txt",
    "/api/files/run_x/%2e%2e%2f%2e%2e%2fruns.sqlite3", "/api/content/templates/..%2F..%2Fpipeline",
    "/api/content/templates/%2e%2e", "/api/tasks/runs?runId=../../secret.key", "/api/tasks/runs?runId=%00",
    "/api/artists/..%2F..%2Fetc/image", "/api/artists/%2e%2e/image", "/api/files/run_x/..%252F..%252Fsecret.key",
    "/api/files/..%5C..%5Csecret.key/video.mp4", "/api/content/templates/..%5C..%5Cpipeline",
])
def test_path_traversal_in_urls_gets_a_4xx_and_no_file(studio: Studio, path: str) -> None:
    secret = (studio.data_dir / "secret.key").read_text() if (studio.data_dir / "secret.key").exists() else "\0"
    r = httpx.get(studio.url(path), headers={"x-api-key": KEY_A}, timeout=30)
    assert r.status_code in (400, 404), (path, r.status_code, r.text[:200])
    if "content-type" in r.headers:  # our API: the one error shape
        assert r.headers["content-type"].startswith("application/json") and r.json()["status"] == "error"
    else:  # the web server's own path guard (in front of every route) refuses ".." before any app sees it
        assert (r.status_code, r.text) == (400, "Bad Request")
    assert secret not in r.text and "root:" not in r.text


@pytest.mark.parametrize("patch, message", [
    ({"template": "../../etc/passwd"}, "Unsupported template"),
    ({"songs": ["../../../etc/passwd"]}, "is not one of this artist's songs"),
    ({"songs": ["file:///etc/passwd"]}, "http"),
    ({"images": ["/etc/passwd"]}, "http"),
    ({"artist_account_id": "../demo-artist"}, "UUID"),
])
def test_path_like_values_in_the_body_are_400(studio: Studio, patch: dict, message: str) -> None:
    r = httpx.post(studio.url("/api/content/create"), json={"artist_account_id": DEMO, **patch},
                   headers={"x-api-key": KEY_A}, timeout=30)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
