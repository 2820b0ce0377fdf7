"""API: the account's keys (listed, made, revoked; a secret shown once) and ready-to-run requests for the REST API."""

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
ui.header("API", "Everything the studio does is also a REST call. Runs you start with your keys show up on the Runs "
          "and Gallery pages, and runs started here are visible to your keys.")
base = base_url()
KEY_PLACEHOLDER = "$STUDIO_API_KEY"


def key_rows() -> list[dict]:
    return [{"Label": k.label or "—", "Id": k.id, "Created": ui.format_ago(k.created_at),
             "Last used": ui.format_ago(k.last_used_at) if k.last_used_at else "never",
             "State": "revoked" if k.revoked_at else "active"} for k in studio.store.list_keys(studio.owner)]


with st.container(border=True):
    st.subheader("Your API keys", anchor=False)
    st.caption("Send a key as `x-api-key: <key>` or `Authorization: Bearer <key>`. Keys are stored hashed: the "
               "studio shows a key once, when it is made, and never again.")
    made = st.session_state.pop("_new_api_key", None)
    if made:  # shown this once; a rerun or another page and it is gone
        st.success("Your new key; copy it now, it will not be shown again:", icon=":material/key:")
        st.code(made, language=None, wrap_lines=True)
    rows = key_rows()
    if rows:
        st.table(rows, hide_index=True, border="horizontal")
    else:
        st.caption("No keys yet.")
    with st.form("new_key", clear_on_submit=True, border=False):
        label = st.text_input("Label for a new key", max_chars=200, placeholder="e.g. laptop, CI", key="key_label")
        if st.form_submit_button("Make a key", icon=":material/add:"):
            plaintext, _info = studio.store.make_key(studio.owner, label.strip())
            st.session_state["_new_api_key"] = plaintext
            st.rerun()
    live = [r["Id"] for r in rows if r["State"] == "active"]
    if live:
        labels = {r["Id"]: f"{r['Label']} ({r['Id']})" for r in rows}
        cols = st.columns([3, 1], vertical_alignment="bottom")
        doomed = cols[0].selectbox("Revoke a key", live, format_func=labels.get, key="revoke_key_id")
        if cols[1].button("Revoke", key="revoke_key", icon=":material/block:"):
            # scoped to this account: another account's key id revokes nothing
            if studio.store.revoke_key(doomed, account_id=studio.owner):
                ui.flash(f"Revoked {labels[doomed]}: it is refused from the next request on.")
            st.rerun()
    st.caption(f"Account `{studio.owner}`. From a terminal: `python -m taskqueue create-key --user EMAIL`, "
               "`list-keys`, `revoke-key KEY_ID`.")

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
    # double quotes, so the shell puts the key in (example_curl single-quotes a literal key)
    curl = example_curl(base, KEY_PLACEHOLDER).replace(shlex.quote(f"x-api-key: {KEY_PLACEHOLDER}"),
                                                        f'"x-api-key: {KEY_PLACEHOLDER}"')
    st.code(f"export STUDIO_API_KEY=<your key>\n{curl}", language="bash", wrap_lines=True)
    st.markdown("Then poll the run with one of the `runIds` it returns; when it is `COMPLETED`, "
                "`output.video.url` is a download link:")
    st.code(f"curl -sS -H \"x-api-key: {KEY_PLACEHOLDER}\" '{base}/api/tasks/runs?runId=<runId>'",
            language="bash", wrap_lines=True)
    st.caption(f"The demo artist's account id is `{DEMO_ARTIST_ID}`; GET /api/artists lists the others.")
    st.link_button("Open the interactive API docs", f"{base}/api/docs", icon=":material/open_in_new:")

with st.container(border=True):
    st.subheader("Endpoints", anchor=False)
    st.table([{"Method": m, "Path": p, "What": w} for m, p, w in ENDPOINTS], hide_index=True, border="horizontal")
