"""API: this install's key and ready-to-run requests for the REST API (the same queue and runs as the UI)."""

from __future__ import annotations

import shlex
from urllib.parse import urlsplit

import streamlit as st

from pages import _ui as ui
from taskqueue.__main__ import DEMO_ARTIST_ID, example_curl
from taskqueue.keys import webhook_secret

ENDPOINTS = [
    ("POST", "/api/content/create", "Queue videos for an artist; answers with runIds"),
    ("GET", "/api/tasks/runs?runId=…", "One run: status, step, progress, timeline, output with download URLs"),
    ("GET", "/api/tasks/runs", "Your newest runs (limit, status, artist_account_id filters)"),
    ("POST", "/api/tasks/runs/{id}/cancel", "Cancel a queued or running run"),
    ("GET", "/api/content/templates", "Template ids and descriptions (…/templates/{id} for one, whole)"),
    ("GET", "/api/content/validate?artist_account_id=…", "Is an artist ready? What is missing and how to fix it"),
    ("GET", "/api/content/estimate?lipsync=&batch=", "How long a request will take"),
    ("GET", "/api/artists", "Artists and their account ids"),
]


def base_url() -> str:
    settings = studio.settings
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    try:
        url = urlsplit(st.context.url or "")
        if url.scheme and url.netloc:
            return f"{url.scheme}://{url.netloc}"
    except Exception:  # no browser context (e.g. a test run): fall back to the configured address
        pass
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return f"http://{host}:{settings.port}"


studio = ui.start_page()
ui.header("API", "Everything the studio does is also a REST call. Runs you start with this key show up on the Runs "
          "and Gallery pages, and runs started here are visible to the key.")
base = base_url()
key = studio.api_key

with st.container(border=True):
    st.subheader("Your API key", anchor=False)
    st.code(key, language=None, wrap_lines=True)
    st.caption(f"Account `{studio.owner}` · kept in `{studio.settings.data_dir / 'api-key.txt'}`. Send it as "
               "`x-api-key: <key>` or `Authorization: Bearer <key>`. Anyone who can open this studio can read it: "
               "put the studio behind your own login before exposing it. More keys: `python -m taskqueue create-key`.")

with st.container(border=True):
    st.subheader("Webhooks", anchor=False)
    st.markdown("Add `\"webhook_url\": \"https://...\"` to a create request (or set `WEBHOOK_URL`) and the studio "
                "POSTs each run's final state and the batch's end there. Check `X-Studio-Signature` "
                "(`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">`) with this secret:")
    st.code(webhook_secret(studio.settings), language=None, wrap_lines=True)
    st.caption("From `WEBHOOK_SECRET`, or made once in DATA_DIR; `python -m taskqueue webhook-secret` prints it too.")

with st.container(border=True):
    st.subheader("Try it", anchor=False)
    st.markdown("Queue a video of the demo artist on stage with a short caption:")
    st.code(example_curl(base, key), language="bash", wrap_lines=True)
    st.markdown("Then poll the run with one of the `runIds` it returns; when it is `COMPLETED`, "
                "`output.video.url` is a download link:")
    st.code(f"curl -sS -H {shlex.quote('x-api-key: ' + key)} '{base}/api/tasks/runs?runId=<runId>'",
            language="bash", wrap_lines=True)
    st.caption(f"The demo artist's account id is `{DEMO_ARTIST_ID}`; GET /api/artists lists the others.")
    st.link_button("Open the interactive API docs", f"{base}/api/docs", icon=":material/open_in_new:")

with st.container(border=True):
    st.subheader("Endpoints", anchor=False)
    st.table([{"Method": m, "Path": p, "What": w} for m, p, w in ENDPOINTS], hide_index=True, border="horizontal")
