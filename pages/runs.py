"""Runs: every run newest first with live progress, and one run's timeline, choices, error and actions.

State lives in the run store; the page only reads it (and refreshes itself while something is active).
"""

from __future__ import annotations

import html
import time

import streamlit as st

from pages import _ui as ui
from pages._studio import cancel, download_url, my_runs, poster_path, rerun, video_path
from taskqueue.store import COMPLETED, EXPIRED, Run

REFRESH_SECONDS = 1.5
PAGE_SIZE = 20


def open_run(run_id: str | None) -> None:
    if run_id:
        st.query_params["run"] = run_id
    else:
        st.query_params.pop("run", None)
    st.rerun()


def run_title(run: Run, names: dict[str, str]) -> str:
    return f"{names.get(run.artist_account_id, run.artist_slug)} · {ui.template_label(run.template)}"


def run_card(run: Run, names: dict[str, str], now: float) -> None:
    with st.container(border=True):
        info, bar, action = st.columns([5, 4, 2], vertical_alignment="center")
        with info:
            with st.container(horizontal=True, vertical_alignment="center", gap="small"):
                ui.status_badge(run)
                st.markdown(f"**{run_title(run, names)}**", width="content")
            caption = (run.request or {}).get("caption_length") or "none"
            st.caption(f"`{run.id}` · {ui.format_ago(run.created_at, now)} · {caption} caption")
        with bar:
            st.progress(min(1.0, run.progress / 100), text=ui.progress_text(run))
        with action:
            if st.button("Details", key=f"open_{run.id}", icon=":material/chevron_right:", width="stretch"):
                open_run(run.id)


def run_list() -> None:
    ui.header("Runs", "Everything you have queued, newest first. This page refreshes itself while a video is "
              "being made; you can close it and come back.")
    ui.show_flash()
    first = my_runs(studio, limit=200)
    if not first:
        ui.empty_state("movie", "No runs yet", "Create your first batch of videos and watch them being made here.",
                       link="create", link_label="Create videos")
        return
    active = any(not r.is_final for r in first)

    @st.fragment(run_every=REFRESH_SECONDS if active else None)
    def live() -> None:
        runs = my_runs(studio, limit=200)
        now = time.time()
        names = ui.artist_names(studio)
        working = sum(r.status == "EXECUTING" for r in runs)
        waiting = sum(r.status == "QUEUED" for r in runs)
        done = sum(r.status == COMPLETED for r in runs)
        expired = sum(r.status == EXPIRED for r in runs)  # they were made: not among the ones that stopped
        failed = sum(r.is_final and r.status not in (COMPLETED, EXPIRED) for r in runs)
        with st.container(horizontal=True, gap="medium"):
            st.badge(f"{working} running", color="blue", icon=":material/autorenew:")
            st.badge(f"{waiting} queued", color="gray", icon=":material/schedule:")
            st.badge(f"{done} completed", color="green", icon=":material/check_circle:")
            if failed:
                st.badge(f"{failed} stopped", color="red", icon=":material/error:")
            if expired:
                st.badge(f"{expired} expired", color="gray", icon=":material/hourglass_disabled:")
        pages = max(1, -(-len(runs) // PAGE_SIZE))
        page = st.session_state.get("runs_page", 1) if pages > 1 else 1
        for run in runs[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]:
            run_card(run, names, now)
        if pages > 1:
            st.pagination(pages, key="runs_page")
        if active and not any(not r.is_final for r in runs):
            st.rerun()  # everything finished: a full rerun draws the page again without the timer

    live()


def timeline_rows(run: Run) -> list[dict]:
    providers = (run.output or {}).get("providers") or {}
    rows = []
    for entry in run.timeline:
        started, finished = entry.get("started_at"), entry.get("finished_at")
        if finished and started:
            took = ui.format_seconds(finished - started)
        elif started and not run.is_final:
            took = f"{ui.format_seconds(time.time() - started)} so far"
        else:
            took = "–"
        rows.append({"Step": ui.step_label(entry.get("step")), "Time": took,
                     "Done by": providers.get(entry.get("step"), "")})
    return rows


def show_choices(run: Run) -> None:
    """What the run was asked for and what it chose (song, clip, mood, movement, caption); unknowns left out."""
    out = run.output or {}
    req = run.request or {}
    audio = out.get("audio") or {}
    caption_length = req.get("caption_length") or "none"
    rows = {
        "Template": ui.template_label(run.template),
        "Song": audio.get("songTitle") or ", ".join(req.get("songs") or []) or "any of the artist's songs",
        "Clip": (ui.format_clip(audio) + (f" ({audio['clipReason']})" if audio.get("clipReason") else ""))
        if audio else None,
        "Mood": audio.get("clipMood"),
        "Movement": out.get("movement"),
        "Caption": out.get("captionText") if caption_length != "none" else "none",
        "Caption length": caption_length if not out.get("captionText") else None,
        "Lip-sync": "yes" if req.get("lipsync") else "no",
        "Upscale": "yes" if req.get("upscale") else "no",
        "Face images": f"{len(req['images'])} given" if req.get("images") else None,
        "Seed": str(run.seed),
    }
    with st.grid(columns=2, min_column_width=140, gap="small"):
        for label, value in rows.items():
            if value:
                st.markdown(f"<small style='opacity:.65'>{label}</small><br/>{html.escape(value)}",
                            unsafe_allow_html=True)
    if not run.is_final and not audio:
        st.caption("The song clip, mood and movement are chosen when the run starts.")


def run_actions(run: Run) -> None:
    with st.container(horizontal=True, gap="small"):
        if not run.is_final:
            clicked = st.button("Cancel run", icon=":material/stop_circle:", key="cancel_run",
                                disabled=run.cancel_requested)
            if clicked and ui.run_action(lambda: cancel(studio, run.id))[0]:
                st.toast("Cancelling…", icon=":material/stop_circle:")
                st.rerun()
        else:
            if st.button("Re-run", icon=":material/replay:", key="rerun_run", type="primary",
                         help="Queue the same request again as one new video (new random choices)."):
                ok, new_id = ui.run_action(lambda: rerun(studio, run))
                if ok:
                    ui.flash(f"Queued again as {new_id}.")
                    open_run(str(new_id))
            if run.status == COMPLETED:
                st.page_link(ui.page_path("gallery"), label="Gallery", icon=":material/video_library:")


def run_detail(run_id: str) -> None:
    if st.button("All runs", icon=":material/arrow_back:", type="tertiary", key="back_to_runs"):
        open_run(None)
    first = studio.store.get(run_id, owner=studio.run_scope)
    if first is None:
        ui.empty_state("search_off", "Run not found", f"There is no run `{run_id}` among yours.", link="runs",
                       link_label="See all runs")
        return
    names = ui.artist_names(studio)
    ui.show_flash()

    @st.fragment(run_every=None if first.is_final else REFRESH_SECONDS)
    def live() -> None:
        run = studio.store.get(run_id, owner=studio.run_scope)
        assert run is not None
        st.title(run_title(run, names), anchor=False)
        with st.container(horizontal=True, vertical_alignment="center"):
            ui.status_badge(run)
            took = (run.finished_at or time.time()) - run.started_at if run.started_at else None
            st.caption(f"`{run.id}` · queued {ui.format_ago(run.created_at)}"
                       + (f" · {ui.format_seconds(took)}" if took else "")
                       + (f" · attempt {run.attempts}" if run.attempts > 1 else "")
                       + (f" · worker `{run.worker}`" if run.worker else ""))
        run_actions(run)
        if not run.is_final:
            st.progress(min(1.0, run.progress / 100), text=ui.progress_text(run))
        if run.error and run.is_final:
            stage = run.error.get("stage")
            where = f" while {ui.step_label(stage).lower()}" if stage else ""
            st.error(f"**{ui.STATUS_STYLE.get(run.status, (run.status,))[0]}{where}.** {run.error.get('message')}",
                     icon=":material/error:")
        elif run.error:  # a retry note on a run that is going again
            st.info(run.error.get("message", ""), icon=":material/info:")

        left, right = st.columns([3, 2], gap="large")
        with left:
            if run.status == COMPLETED and video_path(studio.settings, run).is_file():
                v_col, d_col = st.columns([1, 1])
                v_col.video(str(video_path(studio.settings, run)), width=300)
                with d_col:
                    links = [("Download MP4", download_url(studio, run, "video.mp4"), f"{run.id}.mp4")]
                    if poster_path(studio.settings, run).is_file():
                        links.append(("Download poster", download_url(studio, run, "poster.jpg"),
                                      f"{run.id}.jpg"))
                    ui.download_links(links, wide=True)
            st.subheader("Timeline", anchor=False)
            rows = timeline_rows(run)
            if rows:
                st.table(rows, hide_index=True, border="horizontal")
            elif run.is_final:
                st.caption("The run stopped before its first step.")
            else:
                st.caption("Waiting for a worker to pick this run up.")
        with right:
            st.subheader("Choices", anchor=False)
            show_choices(run)

        if first.is_final != run.is_final:
            st.rerun()  # it just finished: draw it whole, without the timer

    live()


studio = ui.start_page()
selected = st.query_params.get("run")
if selected:
    run_detail(selected)
else:
    run_list()
