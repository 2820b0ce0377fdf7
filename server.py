"""The one ASGI app: the Streamlit UI and the REST API (/api) on one port.

Run with `uvicorn server:app --host 127.0.0.1 --port 8501` (what `python -m taskqueue serve` does).
"""

from __future__ import annotations

import streamlit as st
from starlette.routing import Mount

from api.app import create_api, reaper_lifespan
from pipeline.settings import PROJECT_ROOT

api_app = create_api()
app = st.App(str(PROJECT_ROOT / "app.py"), routes=[Mount("/api", app=api_app)], lifespan=reaper_lifespan(api_app))
