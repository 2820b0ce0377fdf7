"""The studio UI's entry point: page setup and navigation (`streamlit run app.py`, or served by server.py)."""

from __future__ import annotations

import streamlit as st

from pages._ui import PAGES, inject_css

st.set_page_config(page_title="Artist Content Studio", page_icon=":material/movie:", layout="wide",
                   initial_sidebar_state="collapsed")
inject_css()
pages = [st.Page(path, title=title, icon=icon, default=(path == PAGES["create"][0]))
         for path, title, icon in PAGES.values()]
st.navigation(pages, position="top").run()
