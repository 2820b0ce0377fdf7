"""The one ASGI app: the Streamlit UI and the REST API (/api) on one port, behind the edge (api/edge.py).

Run with `uvicorn server:app --host 127.0.0.1 --port 8501` (what `python -m taskqueue serve` does).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import streamlit as st
from starlette.routing import Match, Mount
from starlette.types import Receive, Scope, Send
from streamlit.runtime.pages_manager import PagesManager

from api.app import create_api, reaper_lifespan
from api.edge import Edge
from pipeline.settings import PROJECT_ROOT
from taskqueue.accounts import refusal_to_serve
from taskqueue.keys import signing_secret
from taskqueue.schema import EXIT_UNUSABLE, exit_if_unusable

# app.py declares the pages with st.navigation; without this, a first visitor who deep-links to /runs on a
# fresh server gets Streamlit's old pages/-folder mode (the page file alone, every module in pages/ listed).
PagesManager.uses_pages_directory = False

with exit_if_unusable():  # uvicorn imports this module: a bad DATABASE_URL is one line and exit code 2
    api_app = create_api()
_ctx = api_app.state.ctx
if (_refusal := refusal_to_serve(_ctx.settings, _ctx.store)) is not None:  # e.g. sign-in required and no user yet
    print(_refusal, file=sys.stderr, flush=True)
    raise SystemExit(EXIT_UNUSABLE)


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    async with reaper_lifespan(api_app)(app):
        # The imports alone leave ~140,000 long-lived objects (the Streamlit runtime adds more); every full
        # collection walked them all (80 ms, during which no request moved: the API's p99). Frozen, they are skipped.
        gc.collect()
        gc.freeze()
        yield


ui_app = st.App(str(PROJECT_ROOT / "app.py"), lifespan=lifespan)
api_mount = Mount("/api", app=api_app)


async def to_api(scope: Scope, receive: Receive, send: Send) -> bool:
    """/api goes straight to the API (True when it did).

    Mounted inside st.App, every API request also went through Streamlit's middleware (its session
    cookie, gzip, telemetry): ~8 % of the server's Python time under POST /content/create load
    (docs/PERFORMANCE.md). The API has its own gzip and error handling.
    """
    match, child_scope = api_mount.matches(scope)
    if match is not Match.FULL:
        return False
    await api_mount.handle({**scope, **child_scope}, receive, send)
    return True


# Every request: the Host check; then /api (its own keys), the sign-in pages, or the UI behind the session gate
app = Edge(_ctx.settings, _ctx.store, signing_secret(_ctx.settings), ui_app, to_api)
