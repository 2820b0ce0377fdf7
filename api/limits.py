"""API defences in front of every route: a request body size cap (413) and a per-key rate limit (429).

Both are plain ASGI middleware so they act before FastAPI parses anything. The rate limit counts per
account (a valid key) or per client address (no key, or a wrong one), with the `limits` library: in
this process by default, in Redis when REDIS_URL is set so several web servers share one budget.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from pipeline.errors import StudioError

log = logging.getLogger("api")

# Paths a load balancer or a browser reading the docs must always reach.
UNLIMITED_SUFFIXES = ("/health", "/healthz", "/docs", "/openapi.json")


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """413 for a body over `max_bytes`, whether it declares its length or streams it (chunked)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._reject(scope, receive, send)
            return
        try:
            body = await self._read_capped(receive)
        except BodyTooLarge:
            await self._reject(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the client's disconnect as usual

        await self.app(scope, replay, send)

    async def _read_capped(self, receive: Receive) -> bytes:
        # The cap is small (tens of KB), so holding the whole body costs nothing and keeps the check exact.
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit_kb = self.max_bytes / 1024
        response = error_response(413, f"Request body is larger than the {limit_kb:g} KB limit (MAX_BODY_BYTES)",
                                  headers={"Connection": "close"})
        await response(scope, receive, send)


class RequestLimiter:
    """`per_minute` requests per identity in any `window_seconds`, with the `limits` library's moving window: in
    this process, or in Redis (REDIS_URL) so every web server of an install shares one budget per identity.

    A moving window, not the sliding-window *counter*: the counter weighs the last window down by how far the clock
    is past an edge, so tries just across an edge get through (six wrong passwords of five allowed). The moving
    window keeps each request's time, so the count is exact. Memory follows the requests of the last window, not the
    identities ever seen: a timestamp expires a window after its request (Redis expires the list; in memory,
    `_drop_idle` removes the keys MemoryStorage would keep as empty lists).
    """

    def __init__(self, per_minute: int, redis_url: str | None = None, prefix: str = "studio",
                 window_seconds: int = 60):
        self.item = RateLimitItemPerSecond(per_minute, window_seconds, namespace=f"{prefix}:ratelimit")
        self.storage = MemoryStorage()
        self.memory = MovingWindowRateLimiter(self.storage)
        self.shared = None
        if redis_url:
            shared = storage_from_string(redis_url, socket_timeout=2, socket_connect_timeout=2, wrap_exceptions=True)
            self.shared = MovingWindowRateLimiter(shared)
        self._next_drop = 0.0
        self._dropping = threading.Lock()

    def _drop_idle(self) -> None:
        """Once a window, forget the identities whose every timestamp has expired: MemoryStorage trims expired
        timestamps but keeps each key it has seen (with an empty list) for good, so many addresses would grow it."""
        now = time.time()
        if now < self._next_drop or not self._dropping.acquire(blocking=False):
            return
        try:
            self._next_drop = now + self.item.get_expiry()
            events, locks = self.storage.events, self.storage.locks
            for key in list(events):
                with locks[key]:
                    entries = events.get(key)
                    if not entries or entries[0].expiry <= now:  # the newest first: all of them are over
                        events.pop(key, None)
                locks.pop(key, None)
        finally:
            self._dropping.release()

    def take(self, identity: str, cost: int = 1) -> float:
        """0 when `cost` requests may pass now (and they are counted), else the seconds until one may."""
        self._drop_idle()
        limiter = self.shared or self.memory
        try:
            allowed = limiter.hit(self.item, identity, cost=cost)
        except Exception:  # Redis down must not take the API down: limit per process meanwhile
            log.warning("rate limit: Redis unreachable, limiting in this process", exc_info=True)
            limiter = self.memory
            allowed = limiter.hit(self.item, identity, cost=cost)
        if allowed:
            return 0.0
        try:
            reset = limiter.get_window_stats(self.item, identity).reset_time
        except Exception:
            reset = time.time() + 1
        return max(0.001, reset - time.time())


    def wait(self, identity: str) -> float:
        """Like `take` without counting: 0 when a request may pass now, else the seconds until one may."""
        for limiter in (self.shared, self.memory):
            if limiter is None:
                continue
            try:
                if limiter.test(self.item, identity):
                    return 0.0
                return max(0.001, limiter.get_window_stats(self.item, identity).reset_time - time.time())
            except Exception:  # Redis down: this process's own count meanwhile
                log.warning("rate limit: Redis unreachable, limiting in this process", exc_info=True)
        return 0.0

    def forget(self, identity: str) -> None:
        """A fresh budget for `identity` (a successful sign-in clears its failures)."""
        for limiter in (self.shared, self.memory):
            if limiter is not None:
                try:
                    limiter.clear(self.item, identity)
                except Exception:
                    log.warning("rate limit: Redis unreachable, could not clear %s", identity, exc_info=True)


class AccountCache:
    """Which account a presented key belongs to (None: none), remembered for `ttl` seconds, at most `size` keys."""

    def __init__(self, ttl: float = 30.0, size: int = 10_000):
        self.ttl, self.size = ttl, size
        self._entries: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, str | None]:
        digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None or entry[0] < time.monotonic():
                return False, None
            return True, entry[1]

    def put(self, key: str, account: str | None) -> None:
        digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
        with self._lock:
            self._entries[digest] = (time.monotonic() + self.ttl, account)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.size:  # the oldest goes: a cache miss costs a lookup, not fairness
                self._entries.popitem(last=False)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def presented_key(scope: Scope) -> str | None:
    key = _header(scope, b"x-api-key")
    authorization = _header(scope, b"authorization")
    if key is None and authorization:
        key = authorization.partition(" ")[2].strip() or authorization
    return key or None


def client_address(scope: Scope) -> str:
    """The caller's address; IPv6 by its /64, which one subscriber usually holds whole."""
    host = (scope.get("client") or ("unknown", 0))[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"ip:{host}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"ip:{ip.ipv4_mapped}"
        return f"ip:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"ip:{ip}"


AccountOf = Callable[[str], "str | None"]  # a presented key -> its account, None for a wrong key (may do I/O)


class RateLimit:
    """429 with Retry-After once a caller has used up its requests for the minute.

    A request with a valid key counts against its account (however many keys it has); one without a key, or
    with a wrong one, against its client address, so rotating made-up keys gets no fresh budget. Which account a
    key belongs to is remembered for half a minute, so a client's requests cost one key lookup, not two.
    """

    def __init__(self, app: ASGIApp, limiter: RequestLimiter | None, account_of: AccountOf | None = None):
        self.app = app
        self.limiter = limiter
        self.account_of = account_of or (lambda key: None)
        self.accounts = AccountCache()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limiter is None or scope.get("path", "").endswith(UNLIMITED_SUFFIXES):
            await self.app(scope, receive, send)
            return
        wait = await self._wait(scope)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            response = error_response(429, f"Too many requests: try again in {retry_after} s (RATE_LIMIT_PER_MINUTE)",
                                      headers={"Retry-After": str(retry_after)})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _wait(self, scope: Scope) -> float:
        assert self.limiter is not None
        address = client_address(scope)
        key = presented_key(scope)
        if key is None:
            return self.limiter.take(address)
        known, account = self.accounts.get(key)
        if not known:
            # Looked up even when the address is out of budget: an account behind a shared address (an office,
            # a carrier's NAT) keeps its own budget while a neighbour floods made-up keys. The flood costs one
            # indexed read per request, which the key check behind this limit would have made anyway.
            account = await run_in_threadpool(self.account_of, key)
            self.accounts.put(key, account)
        return self.limiter.take(f"account:{account}" if account else address)


def make_limiter(per_minute: int, redis_url: str | None, prefix: str) -> RequestLimiter | None:
    return RequestLimiter(per_minute, redis_url, prefix) if per_minute > 0 else None


class BatchOverRateLimit(StudioError):
    """A create whose batch has more runs than the account has requests left this minute; nothing was created."""

    status_code = 429

    def __init__(self, batch: int, retry_after: int):
        super().__init__(f"Too many requests: a batch of {batch} counts as {batch} requests, more than this account "
                         f"has left this minute; try again in {retry_after} s (RATE_LIMIT_PER_MINUTE)",
                         field=["batch"])
        self.headers = {"Retry-After": str(retry_after)}


def charge_batch(app_state: Any, account: str, batch: int) -> None:
    """The rest of a batch's runs against the account's rate limit (the request itself was counted as one), so
    one request of 30 runs costs what 30 requests of one do; BatchOverRateLimit when they do not fit."""
    limiter: RequestLimiter | None = getattr(app_state, "limiter", None)
    if limiter is None or batch <= 1:
        return
    wait = limiter.take(f"account:{account}", cost=batch - 1)
    if wait > 0:
        raise BatchOverRateLimit(batch, max(1, math.ceil(wait)))


def install_limits(app: Any, settings: Any, account_of: AccountOf | None = None) -> None:
    """Outermost first: the rate limit answers before the body is even read."""
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.state.limiter = make_limiter(settings.rate_limit_per_minute, settings.redis_url, settings.queue_name)
    app.add_middleware(RateLimit, limiter=app.state.limiter, account_of=account_of)
