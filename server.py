"""The one ASGI app: the Streamlit UI and the REST API (/api) on one port.

Run with `uvicorn server:app --host 127.0.0.1 --port 8501` (what `python -m taskqueue serve` does).
"""

from __future__ import annotations

import streamlit as st
from starlette.routing import Mount
from streamlit.runtime.pages_manager import PagesManager

from api.app import create_api, reaper_lifespan
from pipeline.settings import PROJECT_ROOT

# app.py declares the pages with st.navigation; without this, a first visitor who deep-links to /runs on a
# fresh server gets Streamlit's old pages/-folder mode (the page file alone, every module in pages/ listed).
PagesManager.uses_pages_directory = False

api_app = create_api()
app = st.App(str(PROJECT_ROOT / "app.py"), routes=[Mount("/api", app=api_app)], lifespan=reaper_lifespan(api_app))
