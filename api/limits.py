"""API defences in front of every route: a request body size cap (413) and a per-key rate limit (429).

Both are plain ASGI middleware so they act before FastAPI parses anything. The rate limit is a token
bucket per API key (or per client address when no key is sent): in this process by default, in Redis
when REDIS_URL is set so several web servers share one budget per key.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

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


class Bucket(Protocol):
    def take(self, identity: str) -> float:
        """0 when a request may pass now, else the seconds until one may."""


@dataclass
class _Tokens:
    tokens: float
    at: float


class MemoryBucket:
    """A token bucket per identity in this process: `per_minute` requests a minute, bursts up to the same."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic, max_identities: int = 100_000):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.max_identities = max_identities
        self._buckets: dict[str, _Tokens] = {}
        self._lock = threading.Lock()

    def take(self, identity: str) -> float:
        now = self.clock()
        with self._lock:
            if len(self._buckets) > self.max_identities:  # random keys must not grow memory without end
                self._buckets.clear()
            bucket = self._buckets.get(identity) or _Tokens(self.capacity, now)
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            self._buckets[identity] = bucket
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate


# KEYS[1] bucket key; ARGV: capacity, rate per second, now (s). Returns the wait in ms (0 = allowed).
_REDIS_TAKE = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return wait
"""


class RedisBucket:
    """The same token bucket in Redis (one Lua script, atomic), shared by every web server of an install."""

    def __init__(self, per_minute: int, redis_url: str, prefix: str, fallback: MemoryBucket | None = None):
        import redis

        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.script = self.client.register_script(_REDIS_TAKE)
        self.prefix = prefix
        self.fallback = fallback or MemoryBucket(per_minute)

    def take(self, identity: str) -> float:
        try:
            wait_ms = self.script(keys=[f"{self.prefix}:ratelimit:{identity}"],
                                  args=[self.capacity, self.rate, time.time()])
            return int(wait_ms) / 1000.0
        except Exception:  # Redis down must not take the API down: limit per process meanwhile
            log.warning("rate limit: Redis unreachable, limiting in this process", exc_info=True)
            return self.fallback.take(identity)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def caller_identity(scope: Scope) -> str:
    """Whom a request counts against: a hash of the key it presents, else its client address."""
    key = _header(scope, b"x-api-key")
    authorization = _header(scope, b"authorization")
    if key is None and authorization:
        key = authorization.partition(" ")[2].strip() or authorization
    if key:
        return "key:" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:32]
    client = scope.get("client") or ("unknown", 0)
    return f"ip:{client[0]}"


class RateLimit:
    """429 with Retry-After once a caller has used up its requests for the minute."""

    def __init__(self, app: ASGIApp, bucket: Bucket | None):
        self.app = app
        self.bucket = bucket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.bucket is None or scope.get("path", "").endswith(UNLIMITED_SUFFIXES):
            await self.app(scope, receive, send)
            return
        wait = self.bucket.take(caller_identity(scope))
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            response = error_response(429, f"Too many requests: try again in {retry_after} s (RATE_LIMIT_PER_MINUTE)",
                                      headers={"Retry-After": str(retry_after)})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def make_bucket(per_minute: int, redis_url: str | None, prefix: str) -> Bucket | None:
    if per_minute <= 0:
        return None
    if redis_url:
        return RedisBucket(per_minute, redis_url, prefix)
    return MemoryBucket(per_minute)


def install_limits(app: Any, settings: Any) -> None:
    """Outermost first: the rate limit answers before the body is even read."""
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimit, bucket=make_bucket(settings.rate_limit_per_minute, settings.redis_url,
                                                     settings.queue_name))
