"""The FastAPI app (routes without the /api prefix: it is mounted at /api) and the server-side reaper.

`create_api()` builds it from settings; server.py mounts it next to the Streamlit UI. `standalone_app()`
serves it alone under /api (the fallback when the UI runs as its own process).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Mount
from starlette.types import ASGIApp

from api.context import ApiContext, UrlSigner
from api.errors import install_error_handlers
from api.limits import install_limits
from api.openapi import install_openapi, install_redoc
from api.routers import accounts, artists, content, files, health, runs
from api.shapes import VERSION
from pipeline.settings import Settings, get_settings
from taskqueue.background import BackgroundLoop
from taskqueue.keys import account_for_key
from taskqueue.storage import make_storage
from taskqueue.store import Run, RunStore
from taskqueue.trigger import EnqueueMany

log = logging.getLogger("api")

DESCRIPTION = """The content studio's REST API: the original's paths and shapes.

Authenticate with exactly one of `x-api-key: <key>` or `Authorization: Bearer <key>`.
Trigger with POST /api/content/create, poll each run id with GET /api/tasks/runs?runId=,
download `output.video.url` when the run is COMPLETED.
"""


def create_api(
    settings: Settings | None = None,
    *,
    store: RunStore | None = None,
    enqueue: EnqueueMany | None = None,
    cancel: Callable[[RunStore, str, str | None], Run | None] | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if enqueue is None or cancel is None:
        from taskqueue.tasks import cancel_run, enqueue_runs

        enqueue = enqueue or enqueue_runs
        cancel = cancel or cancel_run
    ctx = ApiContext(
        settings=settings,
        store=store or RunStore.for_settings(settings),
        enqueue=enqueue,
        cancel=cancel,
        signer=UrlSigner.for_settings(settings),
        storage=make_storage(settings),
    )
    # Swagger UI and ReDoc from assets this server serves (fastapi-offline ships them): the docs work offline
    app = FastAPIOffline(
        title="Artist content studio API",
        version=VERSION,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,  # install_redoc: the same bundled script, with outside fetches forbidden
        openapi_url="/openapi.json",
        redirect_slashes=False,  # the official SDK follows no redirects
        generate_unique_id_function=lambda route: route.name,  # operation ids a generated client can call
    )
    install_openapi(app)
    install_redoc(app)
    app.state.ctx = ctx
    install_error_handlers(app)
    # JSON over 1 kB (run lists, the OpenAPI page); Starlette leaves video, images and partial answers alone
    app.add_middleware(GZipMiddleware, minimum_size=1000, compresslevel=5)
    install_limits(app, settings, account_of=partial(account_for_key, settings=settings, store=ctx.store))
    for module in (content, runs, artists, accounts, files, health):
        app.include_router(module.router)
    return app


class Reaper(BackgroundLoop):
    """A thread in the server process that marks runs whose worker died (the consumer may be down)."""

    def __init__(self, ctx: ApiContext):
        super().__init__("reaper", max(0.5, ctx.settings.reaper_interval_seconds))
        self.ctx = ctx

    def tick(self) -> None:
        from taskqueue.tasks import reap

        reap(self.ctx.settings, self.ctx.store, lambda run_id: self.ctx.enqueue([run_id]))


def reaper_lifespan(api: FastAPI) -> Callable[[Any], Any]:
    """A lifespan (for st.App or Starlette) that runs the reaper while the server is up."""

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        reaper = Reaper(api.state.ctx).start()
        try:
            yield
        finally:
            reaper.stop()

    return lifespan


def standalone_app() -> ASGIApp:
    """The API alone, under /api: `uvicorn api.app:standalone_app --factory`."""
    from api.edge import HostCheck, allowed_hosts
    from taskqueue.schema import exit_if_unusable

    with exit_if_unusable():
        api = create_api()
    app = Starlette(routes=[Mount("/api", app=api)], lifespan=reaper_lifespan(api))
    return HostCheck(app, allowed_hosts(api.state.ctx.settings))
