"""The one way a user-given URL is fetched: http(s) only, no private addresses, size cap, time-out.

Downloads land in a cache folder keyed by the URL, written to a temp name and renamed when whole.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from pipeline.errors import FetchError

MAX_REDIRECTS = 5


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 60 * 1024 * 1024
    timeout_seconds: float = 20.0
    allow_hosts: tuple[str, ...] = ()  # hosts allowed even on private addresses (self-hosting, tests)
    user_agent: str = "artist-content-studio/0.1"


def _blocked_address(addr: str) -> bool:
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_url(url: str, limits: FetchLimits, field_name: str) -> None:
    """Refuse anything that is not http(s) to a public address (unless the host is allowed)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{url!r} is not an http(s) URL", field=[field_name])
    host = parts.hostname.lower()
    if host in limits.allow_hosts:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FetchError(f"{host} could not be resolved", field=[field_name]) from None
    if any(_blocked_address(info[4][0]) for info in infos):
        raise FetchError(f"{url} points to a private or local address, which is not allowed", field=[field_name])


@dataclass
class Fetcher:
    """Fetches user URLs into `cache_dir` within `limits`; one instance per run."""

    cache_dir: Path
    limits: FetchLimits = field(default_factory=FetchLimits)

    def fetch(self, url: str, *, field_name: str = "url", suffix: str = "") -> Path:
        dest = self.cache_dir / (hashlib.sha256(url.encode()).hexdigest()[:32] + suffix)
        if dest.exists():
            return dest
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.limits.timeout_seconds
        timeout = httpx.Timeout(self.limits.timeout_seconds)
        current = url
        with httpx.Client(timeout=timeout, follow_redirects=False, headers={"User-Agent": self.limits.user_agent},
                          trust_env=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                check_url(current, self.limits, field_name)
                try:
                    with client.stream("GET", current) as resp:
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
                    raise FetchError(f"{url} did not answer within {self.limits.timeout_seconds:g} s",
                                     field=[field_name]) from None
                except httpx.HTTPError as exc:
                    raise FetchError(f"{url} could not be fetched ({type(exc).__name__})", field=[field_name]) from None
        raise FetchError(f"{url} redirected more than {MAX_REDIRECTS} times", field=[field_name])

    def _too_big(self, url: str) -> str:
        return f"{url} is larger than the {self.limits.max_bytes // (1024 * 1024)} MB limit"

    def _save(self, resp: httpx.Response, dest: Path, url: str, field_name: str, deadline: float) -> Path:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        total = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in resp.iter_bytes(65536):
                    total += len(chunk)
                    if total > self.limits.max_bytes:
                        raise FetchError(self._too_big(url), field=[field_name])
                    if time.monotonic() > deadline:
                        raise FetchError(f"{url} did not finish within {self.limits.timeout_seconds:g} s",
                                         field=[field_name])
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
