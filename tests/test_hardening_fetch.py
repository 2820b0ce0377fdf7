"""User-given URLs against a real HTTP server on loopback: DNS rebinding, address tricks, schemes, slow
drips, and content that is checked by decoding, not by name or Content-Type."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from pipeline.choose_face_guide import resolve_image
from pipeline.errors import FetchError
from pipeline.fetch import Fetcher, FetchLimits, _blocked_address, check_url
from pipeline.songs import fetch_song
from tests.http_server import LocalServer, redirect_to, serve_bytes, serve_file
from tests.media import make_picture, make_tone

PUBLIC_IP = "93.184.216.34"  # a public address (never connected to: the tests refuse before or pin elsewhere)
NO_PRIVATE = FetchLimits(max_bytes=1024 * 1024, timeout_seconds=2.0)


@pytest.fixture
def server():
    with LocalServer() as srv:
        yield srv


class FlippingResolver:
    """A DNS server that rebinds: the first answer is public, every later one is the loopback address."""

    def __init__(self, first: str = PUBLIC_IP, then: str = "127.0.0.1"):
        self.first, self.then = first, then
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return [self.first] if len(self.calls) == 1 else [self.then]


def test_dns_rebinding_after_the_check_never_reaches_the_private_address(server: LocalServer, tmp_path: Path) -> None:
    server.routes["/song.mp3"] = serve_bytes(b"secret")
    resolver = FlippingResolver()
    # The first lookup (the URL check) sees a public address; the connection's own lookup sees 127.0.0.1.
    with pytest.raises(FetchError, match="private or local address"):
        Fetcher(tmp_path, NO_PRIVATE, resolve=resolver).fetch(f"http://rebind.test:{server.port}/song.mp3")
    assert len(resolver.calls) == 2  # checked, then checked again for the connection itself
    assert server.hits == []  # nothing ever reached the loopback server


def test_the_connection_goes_to_the_checked_address_with_the_right_host_header(server: LocalServer,
                                                                               tmp_path: Path) -> None:
    seen: dict[str, str] = {}

    def route(h: BaseHTTPRequestHandler) -> None:
        seen["host"] = h.headers.get("Host", "")
        serve_bytes(b"pinned")(h)

    server.routes["/a"] = route
    calls: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    limits = FetchLimits(timeout_seconds=2.0, allow_hosts=("media.test",))
    fetcher = Fetcher(tmp_path, limits, resolve=resolver)
    assert fetcher.fetch(f"http://media.test:{server.port}/a").read_bytes() == b"pinned"
    assert seen["host"] == f"media.test:{server.port}"  # the name in the URL, though the socket went to the IP
    assert "media.test" in calls  # the name was resolved by our resolver, not the system's


def test_a_name_with_one_private_address_among_public_ones_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="private or local"):
        Fetcher(tmp_path, NO_PRIVATE, resolve=lambda h, p: [PUBLIC_IP, "10.1.2.3"]).fetch("http://mixed.test/a")


@pytest.mark.parametrize("host", [
    "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::127.0.0.1]", "[0:0:0:0:0:ffff:a9fe:a9fe]",
    "169.254.169.254", "[fd00:ec2::254]", "[fe80::1]", "0.0.0.0", "[::]", "2130706433", "0x7f000001", "127.1",
    "0177.0.0.1", "100.64.0.1", "192.168.0.1", "172.16.0.1", "[64:ff9b::a9fe:a9fe]", "[2002:7f00:1::]",
    "224.0.0.1", "255.255.255.255",
])
def test_loopback_private_link_local_and_metadata_addresses_are_refused(host: str, server: LocalServer,
                                                                        tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="points to a private or local address"):  # the reason, not any error
        Fetcher(tmp_path, NO_PRIVATE).fetch(f"http://{host}:{server.port}/x")
    assert server.hits == []


@pytest.mark.parametrize("address", [PUBLIC_IP, "2606:4700:4700::1111", "8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not _blocked_address(address)


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "FILE:///etc/passwd", "ftp://example.com/a.mp3", "gopher://example.com:70/_x",
    "dict://example.com:11211/", "data:audio/mp3;base64,AAAA", "javascript:alert(1)", "ldap://example.com/",
    "sftp://example.com/a", "tftp://example.com/a", "//example.com/a.mp3", "http://", "http:///a", "example.com/a",
    "http://example.com:99999/a",
])
def test_only_http_and_https_are_fetched(url: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError):
        Fetcher(tmp_path, NO_PRIVATE, resolve=lambda h, p: [PUBLIC_IP]).fetch(url)
    assert not any(tmp_path.iterdir()) if tmp_path.exists() else True


@pytest.mark.parametrize("path", [
    "{base}@127.0.0.1:{port}/x", "http://127.0.0.1:{port}\\@example.com/x", "http://127.0.0.1:{port}#@example.com/x",
    "http://example.com@127.0.0.1:{port}/x", "http://127.0.0.1:{port}?@example.com/x", "http://localhost:{port}/x",
])
def test_url_parser_tricks_never_reach_the_loopback_server(path: str, server: LocalServer, tmp_path: Path) -> None:
    server.routes["/x"] = serve_bytes(b"secret")
    url = path.format(base="http://example.com", port=server.port)
    # "example.com" answers with a public address, so only the connection-time check can stop these.
    resolver = lambda host, port: [PUBLIC_IP] if "example" in host else __import__("socket").gethostbyname_ex(host)[2]  # noqa: E731
    with pytest.raises(FetchError):
        Fetcher(tmp_path, FetchLimits(timeout_seconds=1.0), resolve=resolver).fetch(url)
    assert server.hits == []


@pytest.mark.parametrize("target, reason", [
    ("file:///etc/passwd", "is not an http"), ("gopher://127.0.0.1:70/_x", "is not an http"),
    ("http://[::1]/x", "points to a private or local address"),
    ("http://169.254.169.254/latest/meta-data/", "points to a private or local address")])
def test_redirects_to_other_schemes_or_private_hosts_are_refused(target: str, reason: str, tmp_path: Path) -> None:
    # The first hop is "public" (our resolver says so), served by the loopback server it is pinned to.
    with LocalServer() as srv:
        srv.routes["/r"] = redirect_to(target)
        resolver = lambda host, port: ["127.0.0.1"] if host == "cdn.test" else [host.strip("[]")]  # noqa: E731
        limits = FetchLimits(timeout_seconds=2.0, allow_hosts=("cdn.test",))
        # the refusal's reason: these targets are unreachable anyway, so "any error" would pass without the check
        with pytest.raises(FetchError, match=reason):
            Fetcher(tmp_path, limits, resolve=resolver).fetch(f"http://cdn.test:{srv.port}/r")
        assert srv.hits == ["/r"]


def test_a_redirect_loop_stops(server: LocalServer, tmp_path: Path) -> None:
    server.routes["/loop"] = redirect_to("/loop")
    with pytest.raises(FetchError, match="redirected more than"):
        Fetcher(tmp_path, FetchLimits(timeout_seconds=2.0, allow_hosts=("127.0.0.1",))).fetch(server.url("/loop"))
    assert len(server.hits) == 6


def test_a_slow_drip_is_cut_at_the_time_limit(server: LocalServer, tmp_path: Path) -> None:
    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        try:
            for _ in range(1000):
                h.wfile.write(b"x")
                h.wfile.flush()
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass

    server.routes["/drip"] = drip
    started = time.monotonic()
    with pytest.raises(FetchError, match="did not finish within 1 s"):
        Fetcher(tmp_path, FetchLimits(timeout_seconds=1.0, allow_hosts=("127.0.0.1",))).fetch(server.url("/drip"))
    assert time.monotonic() - started < 4
    assert not list(tmp_path.glob(".part-*"))


def test_check_url_alone_refuses_before_any_connection() -> None:
    with pytest.raises(FetchError, match="private or local"):
        check_url("http://[::ffff:169.254.169.254]/", FetchLimits(), "images")


# --- content is decided by decoding -------------------------------------------------------------------------------

ALLOW = FetchLimits(max_bytes=5 * 1024 * 1024, timeout_seconds=5.0, allow_hosts=("127.0.0.1",))


def test_a_song_url_is_audio_only_if_it_decodes(server: LocalServer, tmp_path: Path) -> None:
    tone = make_tone(tmp_path / "tone.mp3", seconds=1.0)
    server.routes["/fake.mp3"] = serve_bytes(b"<html>not audio</html>" * 50, "audio/mpeg")
    server.routes["/real.txt"] = serve_file(tone, "text/plain")
    fetcher = Fetcher(tmp_path / "cache", ALLOW)
    with pytest.raises(FetchError, match="not audio that can be decoded"):
        fetch_song(server.url("/fake.mp3"), fetcher, None)
    assert not any((tmp_path / "cache").iterdir())  # the refused download is not kept
    song = fetch_song(server.url("/real.txt"), fetcher, None)  # a wrong name and type do not matter
    assert song.path.read_bytes() == tone.read_bytes()


def test_an_image_url_is_an_image_only_if_it_decodes(server: LocalServer, tmp_path: Path) -> None:
    picture = make_picture(tmp_path / "p.png", 64, 48)
    server.routes["/fake.png"] = serve_bytes(b"GIF89a" + b"\0" * 20, "image/png")
    server.routes["/html.jpg"] = serve_bytes(b"<svg onload=alert(1)></svg>", "image/jpeg")
    server.routes["/real.bin"] = serve_file(picture, "application/octet-stream")
    fetcher = Fetcher(tmp_path / "cache", ALLOW)
    for path in ("/fake.png", "/html.jpg"):
        with pytest.raises(FetchError, match="not an image that can be decoded"):
            resolve_image(server.url(path), fetcher, tmp_path / "uploads")
    assert resolve_image(server.url("/real.bin"), fetcher, tmp_path / "uploads").read_bytes() == picture.read_bytes()
