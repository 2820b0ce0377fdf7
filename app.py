"""The studio UI's entry point: page setup and navigation (`streamlit run app.py`, or served by server.py)."""

from __future__ import annotations

from pages._ui import navigation

navigation().run()
