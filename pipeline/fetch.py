"""The one way a user-given URL is fetched: http(s) only, no private addresses, size cap, time-out.

Every connection goes to an address that was resolved and checked for that very connection (the
connection is pinned to it), so a DNS answer that changes between the check and the connect (DNS
rebinding) cannot reach a private address. Downloads land in a cache folder keyed by the URL, written
to a temp name and renamed when whole.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from pipeline.errors import FetchError

MAX_REDIRECTS = 5

Resolver = Callable[[str, int], list[str]]
"""(host, port) -> the IP addresses the host resolves to."""

# IPv6 ranges that carry an IPv4 address inside (NAT64, the deprecated IPv4-compatible form): the
# embedded address is what a gateway would reach, so it is the one checked.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 60 * 1024 * 1024
    timeout_seconds: float = 20.0
    allow_hosts: tuple[str, ...] = ()  # hosts allowed even on private addresses (self-hosting, tests)
    user_agent: str = "artist-content-studio/0.1"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if any(ip in net for net in _NAT64) or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _blocked_address(addr: str) -> bool:
    """Whether an address is anything but a public unicast one (loopback, private, link-local, metadata...)."""
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None and _blocked_address(str(embedded)):
            return True
    return not ip.is_global or ip.is_multicast


def resolve_host(host: str, port: int) -> list[str]:
    """The host's addresses, in the system resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses(host: str, port: int, limits: FetchLimits, resolve: Resolver, field_name: str) -> list[str]:
    """The addresses to connect to: all of them public, or the host explicitly allowed; FetchError otherwise."""
    host = host.strip("[]").lower()
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):  # socket.gaierror is an OSError
        raise FetchError(f"{host} could not be resolved", field=[field_name]) from None
    if not addresses:
        raise FetchError(f"{host} could not be resolved", field=[field_name])
    if host in limits.allow_hosts:
        return addresses
    blocked = [a for a in addresses if _blocked_address(a)]
    if blocked:
        raise FetchError(f"{host} points to a private or local address ({blocked[0]}), which is not allowed",
                         field=[field_name])
    return addresses


def check_url(url: str, limits: FetchLimits, field_name: str, resolve: Resolver = resolve_host) -> None:
    """Refuse anything that is not http(s) to a public address (unless the host is allowed)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{url!r} is not an http(s) URL", field=[field_name])
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise FetchError(f"{url!r} has an invalid port", field=[field_name]) from None
    try:
        checked_addresses(parts.hostname, port, limits, resolve, field_name)
    except FetchError as exc:
        if "private or local" in exc.message:
            raise FetchError(f"{url} points to a private or local address, which is not allowed",
                             field=[field_name]) from None
        raise


class PinnedBackend(httpcore.NetworkBackend):
    """Connects only to addresses checked for this very connection: resolve once, check, connect to that IP.

    httpcore still uses the URL's host name for TLS (SNI, certificate) and httpx for the Host header.
    """

    def __init__(self, limits: FetchLimits, resolve: Resolver, field_name: str):
        self.limits, self.resolve, self.field_name = limits, resolve, field_name
        self.inner = httpcore.SyncBackend()
        self.connected: list[str] = []  # the addresses actually connected to (for the record and tests)

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[tuple] | None = None) -> httpcore.NetworkStream:
        last: Exception | None = None
        for address in checked_addresses(host, port, self.limits, self.resolve, self.field_name):
            try:
                stream = self.inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
                continue
            self.connected.append(address)
            return stream
        assert last is not None
        raise last

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[tuple] | None = None) -> httpcore.NetworkStream:
        raise FetchError("Unix sockets are not fetched", field=[self.field_name])

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def pinned_transport(limits: FetchLimits, resolve: Resolver, field_name: str) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(trust_env=False)
    # httpx has no public hook for the network backend; its pool takes one (httpx is pinned in requirements,
    # and test_hardening_fetch proves the connection really goes to the checked address).
    transport._pool._network_backend = PinnedBackend(limits, resolve, field_name)  # noqa: SLF001
    return transport


@dataclass
class Fetcher:
    """Fetches user URLs into `cache_dir` within `limits`; one instance per run."""

    cache_dir: Path
    limits: FetchLimits = field(default_factory=FetchLimits)
    resolve: Resolver = resolve_host  # the DNS lookup (tests pass one that answers like a rebinding server)
    check: Callable[[], None] = lambda: None  # raises when the run is cancelled or out of time (between fetches)
    run_seconds: float | None = None  # all of this Fetcher's (one run's) downloads together; None: no such bound
    run_deadline: float | None = None  # set by the first download

    def _deadline(self, url: str, field_name: str) -> float:
        """This download's deadline: its own time limit, within what is left of the run's."""
        self.check()
        now = time.monotonic()
        if self.run_deadline is None and self.run_seconds is not None:
            self.run_deadline = now + self.run_seconds
        if self.run_deadline is None:
            return now + self.limits.timeout_seconds
        if now >= self.run_deadline:
            raise FetchError(f"{url} was not fetched: the run's downloads took longer than the "
                             f"{self.run_seconds:g} s allowed (FETCH_RUN_TIMEOUT_SECONDS)", field=[field_name])
        return min(now + self.limits.timeout_seconds, self.run_deadline)
    headers: dict[str, str] = field(default_factory=dict)  # sent to the first URL's host only (a self-hosted token)

    def fetch(self, url: str, *, field_name: str = "url", suffix: str = "") -> Path:
        dest = self.cache_dir / (hashlib.sha256(url.encode()).hexdigest()[:32] + suffix)
        if dest.exists():
            os.utime(dest)  # used now: the cache's least-recently-used eviction keeps it (taskqueue/housekeeping)
            return dest
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        deadline = self._deadline(url, field_name)
        timeout = httpx.Timeout(deadline - time.monotonic())
        current = url
        transport = pinned_transport(self.limits, self.resolve, field_name)
        with httpx.Client(timeout=timeout, follow_redirects=False, headers={"User-Agent": self.limits.user_agent},
                          trust_env=False, transport=transport) as client:
            for _ in range(MAX_REDIRECTS + 1):
                self.check()
                if time.monotonic() > deadline:
                    raise FetchError(self._late(url), field=[field_name])
                check_url(current, self.limits, field_name, self.resolve)
                try:
                    same_host = urlsplit(current).netloc == urlsplit(url).netloc
                    with client.stream("GET", current, headers=self.headers if same_host else None) as resp:
                        if resp.is_redirect and resp.headers.get("location"):
                            current = urljoin(current, resp.headers["location"])
                            continue
                        if resp.status_code != 200:
                            raise FetchError(f"{url} answered HTTP {resp.status_code}", field=[field_name])
                        declared = resp.headers.get("content-length")
                        if declared and declared.isdigit() and int(declared) > self.limits.max_bytes:
                            raise FetchError(self._too_big(url), field=[field_name])
                        return self._save(resp, dest, url, field_name, deadline)
                except httpx.TimeoutException:
                    raise FetchError(self._late(url), field=[field_name]) from None
                except httpx.HTTPError as exc:
                    raise FetchError(f"{url} could not be fetched ({type(exc).__name__})", field=[field_name]) from None
        raise FetchError(f"{url} redirected more than {MAX_REDIRECTS} times", field=[field_name])

    def _late(self, url: str, what: str = "answer") -> str:
        if self.run_deadline is not None and time.monotonic() >= self.run_deadline:
            return (f"{url} did not {what} within the {self.run_seconds:g} s allowed for all of the run's "
                    "downloads (FETCH_RUN_TIMEOUT_SECONDS)")
        return f"{url} did not {what} within {self.limits.timeout_seconds:g} s"

    def _too_big(self, url: str) -> str:
        return f"{url} is larger than the {self.limits.max_bytes // (1024 * 1024)} MB limit"

    def _save(self, resp: httpx.Response, dest: Path, url: str, field_name: str, deadline: float) -> Path:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        total = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in resp.iter_bytes():  # as it arrives: a slow drip must meet the deadline check
                    total += len(chunk)
                    if total > self.limits.max_bytes:
                        raise FetchError(self._too_big(url), field=[field_name])
                    if time.monotonic() > deadline:
                        raise FetchError(self._late(url, "finish"), field=[field_name])
                    out.write(chunk)
            if total == 0:
                raise FetchError(f"{url} returned an empty body", field=[field_name])
            os.replace(tmp, dest)
            return dest
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def limits_from_settings(settings) -> FetchLimits:  # noqa: ANN001 - Settings, imported lazily to keep this module light
    return FetchLimits(
        max_bytes=settings.fetch_max_bytes,
        timeout_seconds=settings.fetch_timeout_seconds,
        allow_hosts=tuple(h.lower() for h in settings.fetch_allow_hosts),
    )
