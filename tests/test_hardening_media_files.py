"""Media files are untrusted: ffmpeg opens them with plain-container demuxers and local protocols only, every image
meets one 40 MP limit read from its header, and all of a run's downloads share one deadline."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from pipeline.artists import find_artist
from pipeline.choose_face_guide import choose_face_guide, resolve_image
from pipeline.detect_face import load_upright
from pipeline.errors import BadInput, Cancelled, FetchError
from pipeline.fetch import Fetcher, FetchLimits
from pipeline.ffmpeg import decode_audio
from pipeline.settings import Settings
from pipeline.songs import fetch_song
from tests.http_server import LocalServer, serve_bytes, serve_file
from tests.media import make_picture
from tests.test_artists import make_workspace

ALLOW = FetchLimits(max_bytes=5 * 1024 * 1024, timeout_seconds=5.0, allow_hosts=("127.0.0.1",))


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as srv:
        yield srv


def _aac(path: Path, ffmpeg: str) -> Path:
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "sine=f=440:d=1", "-c:a", "aac", "-y", str(path)],
                   check=True)
    return path


def _mpd(base_url: str) -> bytes:
    """A DASH manifest whose one segment is `base_url` (a file elsewhere on the server, or another host)."""
    return f"""<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT1S" minBufferTime="PT1S"
     profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">
 <Period><AdaptationSet mimeType="audio/mp4"><Representation id="a" bandwidth="128000">
  <BaseURL>{base_url}</BaseURL>
 </Representation></AdaptationSet></Period>
</MPD>""".encode()


# --- ffmpeg opens plain containers only --------------------------------------------------------------------------


def test_a_fetched_dash_manifest_is_not_audio_and_opens_nothing_it_names(server: LocalServer, tmp_path: Path,
                                                                         ffmpeg: str) -> None:
    (tmp_path / "other-account").mkdir()
    other = _aac(tmp_path / "other-account" / "video.mp4", ffmpeg)  # say, another account's finished video
    server.routes["/segment.mp4"] = serve_file(other, "audio/mp4")
    server.routes["/local.mp3"] = serve_bytes(_mpd(other.as_uri()), "audio/mpeg")
    server.routes["/remote.mp3"] = serve_bytes(_mpd(server.url("/segment.mp4")), "audio/mpeg")
    fetcher = Fetcher(tmp_path / "cache", ALLOW)
    for path in ("/local.mp3", "/remote.mp3"):
        with pytest.raises(FetchError, match="not audio") as info:
            fetch_song(server.url(path), fetcher, None)
        assert info.value.field == ["songs"]
    assert "/segment.mp4" not in server.hits  # ffmpeg never followed the manifest
    assert not any((tmp_path / "cache").iterdir())  # the refused downloads are not kept


@pytest.mark.parametrize("kind", ["dash", "hls", "concat"])
def test_a_committed_song_that_is_a_playlist_is_not_decoded(tmp_path: Path, ffmpeg: str, kind: str) -> None:
    secret = _aac(tmp_path / "secret.mp4", ffmpeg)
    text = {"dash": _mpd(secret.as_uri()).decode(),
            "hls": f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{secret.as_uri()}\n#EXT-X-ENDLIST\n",
            "concat": f"ffconcat version 1.0\nfile '{secret}'\n"}[kind]
    song = tmp_path / "songs" / "hook" / ("hook.m3u8" if kind == "hls" else "hook.mp3")
    song.parent.mkdir(parents=True)
    song.write_text(text)
    with pytest.raises(BadInput, match="not decodable audio"):
        decode_audio(song, ffmpeg=ffmpeg)


def test_plain_songs_still_decode(tmp_path: Path, ffmpeg: str) -> None:
    assert decode_audio(_aac(tmp_path / "song.m4a", ffmpeg), ffmpeg=ffmpeg).size > 10000


# --- one image limit, from the header ---------------------------------------------------------------------------


def big_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A valid grey PNG of width x height made without ever holding its pixels (a few hundred KB on disk)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    packer = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + one grey byte per pixel
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return big_png(tmp_path_factory.mktemp("bomb") / "bomb.png")


def test_a_repository_face_guide_meets_the_same_limit(settings: Settings, tmp_path: Path) -> None:
    root = make_workspace(settings.artists_dir / "big-face", songs=("first",))
    big_png(root / "context" / "images" / "face-guide.png", 8000, 6000)  # 48 MP: over 40, under Pillow's own
    with pytest.raises(BadInput, match="40 megapixels"):
        choose_face_guide(find_artist(settings, "big-face"), [], Fetcher(tmp_path / "c"), tmp_path / "uploads")


@pytest.mark.parametrize("size", [(8000, 6000), (20000, 20000)])
def test_every_image_reader_refuses_over_40_megapixels(tmp_path: Path, server: LocalServer, bomb: Path,
                                                       size: tuple[int, int]) -> None:
    picture = bomb if size == (20000, 20000) else big_png(tmp_path / "48mp.png", *size)
    server.routes["/face.png"] = serve_file(picture, "image/png")
    with pytest.raises(FetchError, match="40 megapixels"):
        resolve_image(server.url("/face.png"), Fetcher(tmp_path / "cache", ALLOW), tmp_path / "uploads")
    with pytest.raises(BadInput, match="40 megapixels"):
        load_upright(picture, max_side=1024)  # face detection and the local image step read through this


def test_a_20000_square_png_is_refused_quickly_in_little_memory(bomb: Path) -> None:
    """In a fresh process, so its peak memory is this refusal's alone."""
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child of a big pytest process reported the parent's size
    code = ("import re, time, sys; from pipeline.detect_face import load_upright; t = time.monotonic()\n"
            "try:\n    load_upright(sys.argv[1], max_side=1024)\nexcept Exception as e:\n    err = str(e)\n"
            "hwm = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)\n"
            "import json; print(json.dumps({'error': err, 'seconds': time.monotonic() - t,"
            " 'peak_mb': int(hwm) / 1024}))")
    out = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    result = json.loads(out.stdout)
    assert "40 megapixels" in result["error"]
    assert result["peak_mb"] < 300, result  # decoding it would take 400 MB (grey) to 1.2 GB (as RGB)


# --- one deadline for all of a run's downloads ------------------------------------------------------------------


def _slow(body: bytes, seconds: float):
    def route(h: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        serve_bytes(body)(h)

    return route


def test_all_of_a_runs_downloads_share_one_deadline(server: LocalServer, tmp_path: Path) -> None:
    picture = make_picture(tmp_path / "p.png", 64, 48).read_bytes()
    for i in range(8):
        server.routes[f"/img{i}.png"] = _slow(picture, 0.4)  # each well within its own 5 s limit
    fetcher = Fetcher(tmp_path / "cache", ALLOW, run_seconds=1.0)
    fetched = 0
    with pytest.raises(FetchError, match="all of the run's downloads|the run's downloads took longer"):
        for i in range(8):
            fetcher.fetch(server.url(f"/img{i}.png"), field_name="images")
            fetched += 1
    assert 1 <= fetched < 8


def test_a_cancelled_run_fetches_nothing_more(server: LocalServer, tmp_path: Path) -> None:
    picture = make_picture(tmp_path / "p.png", 64, 48).read_bytes()
    server.routes["/a.png"] = serve_bytes(picture)
    server.routes["/b.png"] = serve_bytes(picture)
    cancelled = []

    def check() -> None:
        if cancelled:
            raise Cancelled("The run was cancelled")

    fetcher = Fetcher(tmp_path / "cache", ALLOW, check=check)
    fetcher.fetch(server.url("/a.png"))
    cancelled.append(True)
    with pytest.raises(Cancelled):
        fetcher.fetch(server.url("/b.png"))
    assert server.hits == ["/a.png"]
