"""Shared Streamlit pieces of the studio's pages: the cached context, headers, empty states, labels, formats."""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from pages._studio import Studio, open_studio
from pipeline.errors import StudioError
from pipeline.models import Artist
from pipeline.settings import get_settings
from taskqueue.store import CANCELED, COMPLETED, CRASHED, EXECUTING, EXPIRED, FAILED, QUEUED, TIMED_OUT, Run

# key -> (script, title, icon); the order is the navigation's
PAGES: dict[str, tuple[str, str, str]] = {
    "create": ("pages/create.py", "Create", ":material/movie_edit:"),
    "runs": ("pages/runs.py", "Runs", ":material/pending_actions:"),
    "gallery": ("pages/gallery.py", "Gallery", ":material/video_library:"),
    "artists": ("pages/artists.py", "Artists", ":material/artist:"),
    "templates": ("pages/templates.py", "Templates", ":material/style:"),
    "developers": ("pages/developers.py", "API", ":material/code:"),
}

# status -> (label, badge colour, icon)
STATUS_STYLE: dict[str, tuple[str, str, str]] = {
    QUEUED: ("Queued", "gray", ":material/schedule:"),
    EXECUTING: ("Running", "blue", ":material/autorenew:"),
    COMPLETED: ("Completed", "green", ":material/check_circle:"),
    FAILED: ("Failed", "red", ":material/error:"),
    CANCELED: ("Cancelled", "orange", ":material/cancel:"),
    CRASHED: ("Crashed", "red", ":material/report:"),
    TIMED_OUT: ("Timed out", "orange", ":material/timer_off:"),
    EXPIRED: ("Expired", "gray", ":material/hourglass_disabled:"),  # made, then removed by OUTPUT_RETENTION_DAYS
}

STEP_LABELS: dict[str, str] = {
    "song": "Picking the song",
    "lyrics": "Reading the lyrics",
    "clip": "Finding the hook",
    "image": "Styling the image",
    "video": "Setting it in motion",
    "caption": "Writing the caption",
    "render": "Rendering the video",
    "done": "Done",
    "queue": "Waiting in the queue",
    "worker": "Worker",
    "artist": "Loading the artist",
    "start": "Starting",
}

CSS = """
<style>
  .block-container { padding-top: 3.5rem; padding-bottom: 4rem; max-width: 1200px; }
  h1 { font-size: 2rem !important; }
  h3 { font-size: 1.2rem !important; }
  @media (min-width: 900px) { .st-key-create_summary { position: sticky; top: 4.5rem; } }
  [data-testid="stCaptionContainer"] { line-height: 1.45; }
  [data-testid="stVerticalBlockBorderWrapper"] { border-radius: 0.75rem; }
  a.studio-download { display: inline-flex; align-items: center; gap: 0.35rem; padding: 0.3rem 0.8rem;
    border: 1px solid rgba(250, 250, 250, 0.2); border-radius: 0.5rem; color: inherit !important;
    text-decoration: none !important; font-size: 0.95rem; line-height: 1.6; white-space: nowrap; }
  a.studio-download:hover { border-color: #FF4F7B; color: #FF4F7B !important; }
  a.studio-download.wide { display: flex; justify-content: center; width: 100%; box-sizing: border-box; }
  .studio-downloads { display: flex; gap: 0.5rem; flex-wrap: wrap; }
  .studio-downloads.wide { flex-direction: column; }
  @media (max-width: 640px) {
    .block-container { padding-left: 1rem; padding-right: 1rem; padding-top: 3rem; }
    h1 { font-size: 1.6rem !important; }
  }
</style>
"""


def inject_css() -> None:
    st.html(CSS)


def download_links(links: list[tuple[str, str, str]], *, wide: bool = False) -> None:
    """Downloads that look like the studio's buttons: plain links to the files, (label, url, file name) each
    (see `download_url`), side by side, or one under the other across the column when `wide`."""
    css = "studio-download wide" if wide else "studio-download"
    anchors = "".join(f'<a class="{css}" href="{html.escape(url)}" download="{html.escape(name)}">'
                      f'{html.escape(label)}</a>' for label, url, name in links)
    st.html(f'<div class="studio-downloads{" wide" if wide else ""}">{anchors}</div>')


def page_path(key: str) -> str:
    return PAGES[key][0]


@st.cache_resource(show_spinner=False)
def _studio_for(database_url: str, data_dir: str) -> Studio:
    return open_studio(get_settings())


def studio() -> Studio:
    """The process's studio context (one store per data folder), acting as the local admin."""
    settings = get_settings()
    return _studio_for(settings.sqlalchemy_url, str(settings.data_dir))


def session_studio() -> Studio:
    """The studio as this browser session's user sees it. The edge (api/edge.py) already turned away anyone
    without a valid session where sign-in is required; here the page only reads who it is. Without the edge
    (`streamlit run app.py`) a page where sign-in is required shows nothing."""
    from api.edge import session_user
    from taskqueue.accounts import SESSION_COOKIE, ui_viewer
    from taskqueue.keys import signing_secret

    shared = studio()
    settings = shared.settings
    try:
        token = st.context.cookies.get(SESSION_COOKIE)
    except Exception:  # no browser context (AppTest)
        token = None
    user = session_user(settings, shared.store, signing_secret(settings), token)
    viewer = ui_viewer(settings, user, shared.owner)
    if viewer is None:  # signed out in another tab, or the session ran out, since this page was opened
        st.warning("Sign in to use the studio.", icon=":material/lock:")
        st.link_button("Sign in", "/auth/sign-in")
        st.stop()
    return shared.for_viewer(viewer, user.email if user else None)


def navigation():
    """The studio's page setup and navigation (app.py runs the page it returns)."""
    st.set_page_config(page_title="Artist Content Studio", page_icon=":material/movie:", layout="wide",
                       initial_sidebar_state="collapsed")
    inject_css()
    st.session_state["_navigation_drawn"] = True
    pages = [st.Page(path, title=title, icon=icon, default=(key == "create"))
             for key, (path, title, icon) in PAGES.items()]
    return st.navigation(pages, position="top")


def start_page() -> Studio:
    """Call first on every page. On a fresh server whose first visitor deep-links to a page (say /runs),
    Streamlit runs that file directly in its old pages/-folder mode, without app.py's navigation and theme
    (and lists every module in pages/ as a page); rerunning once goes through app.py and draws it properly."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory and not st.session_state.get("_navigation_drawn"):
        PagesManager.uses_pages_directory = False  # what st.navigation itself does; app.py runs on the rerun
        st.rerun()
    current = session_studio()
    st.session_state["_signed_in_as"] = current.email
    return current


def header(title: str, subtitle: str) -> None:
    email = st.session_state.get("_signed_in_as")
    if email:  # signed in (not the local admin): who, and the way out
        st.markdown(f"<div style='text-align:right;font-size:0.85rem'>{html.escape(email)} · "
                    "<a href='/auth/sign-out' target='_self'>Sign out</a></div>", unsafe_allow_html=True)
    st.title(title, anchor=False)
    st.caption(subtitle)


def empty_state(icon: str, title: str, text: str, *, link: str | None = None, link_label: str = "") -> None:
    """A friendly 'nothing here yet' card; `icon` is a Material icon name (e.g. "movie")."""
    with st.container(border=True, horizontal_alignment="center", gap="small"):
        st.markdown(f"## :material/{icon}:", text_alignment="center")
        st.markdown(f"**{title}**  \n{text}", text_alignment="center")
        if link:
            st.page_link(page_path(link), label=link_label, icon=PAGES[link][2])


def icon_placeholder(icon: str) -> None:
    st.markdown(f"## :material/{icon}:", text_alignment="center")


def show_error(exc: Exception) -> None:
    """A user-facing message; never a stack trace."""
    if isinstance(exc, StudioError):
        st.error(exc.message, icon=":material/error:")
    else:
        st.error(f"Something went wrong ({type(exc).__name__}). The details are in the server log.",
                 icon=":material/error:")


def run_action(action: Callable[[], object], *, spinner: str | None = None) -> tuple[bool, object]:
    """Run an action and show its failure as a message; (ok, result)."""
    try:
        if spinner:
            with st.spinner(spinner):
                return True, action()
        return True, action()
    except Exception as exc:  # the page must keep working whatever the action raised
        show_error(exc)
        return False, None


def status_badge(run: Run) -> None:
    label, colour, icon = STATUS_STYLE.get(run.status, (run.status.title(), "gray", ":material/help:"))
    if run.status == EXECUTING and run.cancel_requested:
        label = "Cancelling"
    st.badge(label, color=colour, icon=icon)  # type: ignore[arg-type]


def step_label(step: str | None) -> str:
    if not step:
        return "Waiting for a worker"
    return STEP_LABELS.get(step, step.replace("_", " ").capitalize())


def progress_text(run: Run) -> str:
    if run.status == QUEUED:
        return "Waiting for a worker"
    if run.status == COMPLETED:
        return "Finished"
    if run.status == EXECUTING:
        return f"{step_label(run.step)} · {run.progress:.0f}%"
    stage = (run.error or {}).get("stage")
    return f"Stopped at: {step_label(stage)}" if stage else "Stopped"


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def extra_time(seconds: float) -> str:
    """How much longer an option makes each video, in words."""
    if seconds < 1:
        return "Takes no noticeable extra time."
    return f"Adds about {format_seconds(seconds)} per video."


def format_estimate(seconds: float) -> str:
    return "under 1 s" if seconds < 1 else format_seconds(seconds)


def format_ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "–"
    delta = max(0.0, (now or time.time()) - ts)
    if delta < 45:
        return "just now"
    if delta < 3600:
        return f"{int(delta // 60) or 1} min ago"
    if delta < 86400:
        return f"{int(delta // 3600)} h ago"
    return time.strftime("%d %b %Y", time.localtime(ts))


def format_clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


def format_clip(audio: dict) -> str:
    start = float(audio.get("startSeconds") or 0.0)
    duration = float(audio.get("durationSeconds") or 0.0)
    return f"{format_clock(start)}–{format_clock(start + duration)}"


def template_label(template_id: str | None) -> str:
    if not template_id:
        return "No template (malleable)"
    return template_id.replace("-", " ").capitalize()


def artist_names(studio: Studio) -> dict[str, str]:
    from pipeline.artists import list_artists

    return {a.account_id: a.name for a in list_artists(studio.settings, studio.viewer)}


def face_image(artist: Artist) -> Path | None:
    return artist.face_guide if artist.face_guide.is_file() else None


def flash(message: str, icon: str = ":material/check_circle:") -> None:
    """A message shown once on the next page the user sees (it survives st.switch_page)."""
    st.session_state["_flash"] = (message, icon)


def show_flash() -> None:
    pending = st.session_state.pop("_flash", None)
    if pending:
        st.success(pending[0], icon=pending[1])
