"""Gallery: finished videos that play in the page, with their caption, song and clip, and downloads."""

from __future__ import annotations

import streamlit as st

from pages import _ui as ui
from pages._studio import download_url, finished_videos, poster_path, video_path
from taskqueue.store import Run

PAGE_SIZE = 12
ALL = "__all__"


def video_card(run: Run, names: dict[str, str]) -> None:
    settings = studio.settings
    out = run.output or {}
    audio = out.get("audio") or {}
    with st.container(border=True):
        st.video(str(video_path(settings, run)))
        caption = out.get("captionText")
        if caption:
            st.markdown(f"**“{caption}”**")
        st.caption(f":material/music_note: {audio.get('songTitle', 'Song')} · {ui.format_clip(audio)}  \n"
                   f":material/person: {names.get(run.artist_account_id, run.artist_slug)}  \n"
                   f":material/style: {ui.template_label(run.template)} · {ui.format_ago(run.finished_at)}")
        links = [("MP4", download_url(studio, run, "video.mp4"), f"{run.id}.mp4")]
        if poster_path(settings, run).is_file():
            links.append(("Poster", download_url(studio, run, "poster.jpg"), f"{run.id}.jpg"))
        ui.download_links(links)
        st.page_link(ui.page_path("runs"), label="Details", query_params={"run": run.id},
                     icon=":material/info:")


studio = ui.start_page()
ui.header("Gallery", "Finished videos, newest first. Play them here, download the MP4 or its poster frame.")
every = finished_videos(studio)
if not every:
    ui.empty_state("video_library", "Nothing here yet", "Finished videos appear here as soon as their run completes.",
                   link="create", link_label="Create videos")
    st.stop()

names = ui.artist_names(studio)
artist_ids = sorted({r.artist_account_id for r in every}, key=lambda a: names.get(a, a).lower())
template_ids = sorted({r.template or "" for r in every})
f_artist, f_template = st.columns(2)
artist = f_artist.selectbox("Artist", [ALL, *artist_ids], key="gallery_artist",
                            format_func=lambda a: "All artists" if a == ALL else names.get(a, a))
template = f_template.selectbox("Template", [ALL, *template_ids], key="gallery_template",
                                format_func=lambda t: "All templates" if t == ALL else ui.template_label(t or None))
shown = finished_videos(studio, artist=None if artist == ALL else artist,
                        template=None if template == ALL else template)
st.caption(f"{len(shown)} video{'s' if len(shown) != 1 else ''}")
if not shown:
    ui.empty_state("filter_alt_off", "No videos match", "Try another artist or template.")
    st.stop()

pages = max(1, -(-len(shown) // PAGE_SIZE))
page = st.session_state.get("gallery_page", 1) if pages > 1 else 1
with st.grid(columns="auto", min_column_width=220, gap="medium"):
    for run in shown[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]:
        video_card(run, names)
if pages > 1:
    st.pagination(pages, key="gallery_page")
