"""The safe fetcher against a real HTTP server on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import FetchError
from pipeline.fetch import Fetcher, FetchLimits
from tests.http_server import LocalServer, hang, huge, redirect_to, serve_bytes

ALLOW = FetchLimits(max_bytes=1024 * 1024, timeout_seconds=2.0, allow_hosts=("127.0.0.1",))


@pytest.fixture
def server():
    with LocalServer() as srv:
        yield srv


def test_fetches_into_cache_atomically(server: LocalServer, tmp_path: Path) -> None:
    server.routes["/a.bin"] = serve_bytes(b"hello world")
    fetcher = Fetcher(tmp_path, ALLOW)
    path = fetcher.fetch(server.url("/a.bin"))
    assert path.read_bytes() == b"hello world"
    assert fetcher.fetch(server.url("/a.bin")) == path
    assert server.hits.count("/a.bin") == 1  # second fetch came from the cache
    assert not list(tmp_path.glob(".part-*"))


def test_follows_redirects_and_rechecks_them(server: LocalServer, tmp_path: Path) -> None:
    server.routes["/b"] = serve_bytes(b"x" * 10)
    server.routes["/r"] = redirect_to("/b")
    assert Fetcher(tmp_path, ALLOW).fetch(server.url("/r")).read_bytes() == b"x" * 10
    # Without 127.0.0.1 allowed, the same redirect chain is refused at its first hop.
    with pytest.raises(FetchError, match="private or local"):
        Fetcher(tmp_path / "other", FetchLimits()).fetch(server.url("/r"))


def test_redirect_to_a_private_address_is_refused(server: LocalServer, tmp_path: Path) -> None:
    server.routes["/evil"] = redirect_to("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(FetchError, match="private or local"):
        Fetcher(tmp_path, ALLOW).fetch(server.url("/evil"))


@pytest.mark.parametrize("url, reason", [
    *((url, "is not an http") for url in ("file:///etc/passwd", "ftp://example.com/a.mp3", "gopher://x/",
                                          "javascript:1")),
    *((url, "points to a private or local address") for url in ("http://localhost/a.mp3", "http://[::1]/a",
                                                                "http://10.0.0.1/a", "http://0.0.0.0/"))])
def test_refuses_non_http_and_private_targets(url: str, reason: str, tmp_path: Path) -> None:
    # the reason is asserted: 10.0.0.1 or [::1]:80 fail anyway here, so any error would pass without the check
    with pytest.raises(FetchError, match=reason):
        Fetcher(tmp_path, FetchLimits(timeout_seconds=2.0)).fetch(url)


@pytest.mark.parametrize("declare", [True, False])
def test_size_cap_while_streaming(server: LocalServer, tmp_path: Path, declare: bool) -> None:
    server.routes["/big"] = huge(4 * 1024 * 1024, declare_length=declare)
    with pytest.raises(FetchError, match="larger than"):
        Fetcher(tmp_path, ALLOW).fetch(server.url("/big"))
    assert list(tmp_path.iterdir()) == []  # no half-written file


def test_timeout(server: LocalServer, tmp_path: Path) -> None:
    server.routes["/slow"] = hang(5)
    limits = FetchLimits(timeout_seconds=0.5, allow_hosts=("127.0.0.1",))
    with pytest.raises(FetchError, match="did not answer"):
        Fetcher(tmp_path, limits).fetch(server.url("/slow"))


def test_http_errors_are_clear(server: LocalServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        Fetcher(tmp_path, ALLOW).fetch(server.url("/missing.mp3"))
