"""What the routers need, built once per app: settings, the run store, the queue, the URL signer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from api.repository_gate import RepositoryGate
from pipeline.settings import Settings
from taskqueue.storage import Storage
from taskqueue.store import Run, RunStore
from taskqueue.trigger import EnqueueMany


class UrlSigner:
    """Signed, expiring download links: a token names exactly one file of one run (or one artist image)."""

    def __init__(self, secret: str, max_age_seconds: int):
        self.serializer = URLSafeTimedSerializer(secret, salt="studio-files")
        self.max_age = max_age_seconds

    @classmethod
    def for_settings(cls, settings: Settings) -> UrlSigner:
        """The install's signer: SECRET_KEY (or the generated one) and SIGNED_URL_SECONDS."""
        from taskqueue.keys import signing_secret

        return cls(signing_secret(settings), settings.signed_url_seconds)

    def sign(self, *parts: str) -> str:
        return self.serializer.dumps(list(parts))

    def verify(self, token: str, *parts: str) -> bool:
        try:
            value = self.serializer.loads(token, max_age=self.max_age)
        except BadSignature:  # SignatureExpired is a BadSignature too
            return False
        return value == list(parts)


T = TypeVar("T")


@dataclass
class ApiContext:
    settings: Settings
    store: RunStore
    enqueue: EnqueueMany
    cancel: Callable[[RunStore, str, str | None], Run | None]
    signer: UrlSigner
    storage: Storage = field(default=None)  # type: ignore[assignment]  # set by create_api from STORAGE_URL
    writers: anyio.CapacityLimiter = field(init=False)
    repositories: RepositoryGate = field(init=False)

    def __post_init__(self) -> None:
        self.writers = anyio.CapacityLimiter(self.store.concurrent_writers)
        self.repositories = RepositoryGate()

    async def write(self, fn: Callable[[], T]) -> T:
        """Runs a short database write on the store's few writer threads, not on one thread per request.

        With 20 clients, 20 threads writing at once to one SQLite file spent their time handing the GIL to
        each other (~970 futex calls per request): a fifth to a quarter of the server's CPU (docs/PERFORMANCE.md).
        """
        return await anyio.to_thread.run_sync(fn, limiter=self.writers)

    def api_base(self, request: Request) -> str:
        """Absolute URL of /api: PUBLIC_BASE_URL when set, else as the caller reached us."""
        if self.settings.public_base_url:
            return self.settings.public_base_url.rstrip("/") + "/api"
        root = request.scope.get("root_path", "") or ""
        return f"{request.url.scheme}://{request.url.netloc}{root}".rstrip("/")


async def get_ctx(request: Request) -> ApiContext:
    # async: a plain attribute read, not worth a hop to the thread pool on every request
    return request.app.state.ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]  # what a router needs, built once per app
