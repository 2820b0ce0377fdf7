"""Artists: see each artist's files and readiness, add an artist from uploads, or connect a git repository."""

from __future__ import annotations

import streamlit as st

from pages import _ui as ui
from pages._studio import artist_songs, artists_with_files
from pages._uploads import (
    IMAGE_UPLOAD_TYPES,
    MAX_IMAGE_MB,
    MAX_SONG_MB,
    SONG_UPLOAD_TYPES,
    Upload,
    add_to_artist,
    connect_repository,
    create_artist,
)
from pipeline.artists import check_readiness
from pipeline.models import Artist
from pipeline.repository import mask_url
from pipeline.settings import DEMO_ARTIST_DIR
from taskqueue.trigger import sync_artist


def uploads(files) -> list[Upload]:
    if files is None:
        return []
    return [Upload(f.name, f.getvalue()) for f in (files if isinstance(files, list) else [files])]


def form_version(name: str) -> int:
    """Bumped after a successful save so the form's widgets start empty again."""
    return st.session_state.setdefault(f"_{name}_version", 0)


def reset_form(name: str) -> None:
    st.session_state[f"_{name}_version"] = form_version(name) + 1


def editable(artist: Artist) -> bool:
    root = studio.settings.artists_dir
    return not artist.repository and root is not None and root.resolve() in artist.root.resolve().parents


def files_inputs(prefix: str, *, with_face: bool = True) -> dict:
    """The upload widgets shared by 'add an artist' and 'add files'."""
    values: dict = {}
    if with_face:
        values["face"] = st.file_uploader(
            "Face guide", type=IMAGE_UPLOAD_TYPES, key=f"{prefix}_face", max_upload_size=MAX_IMAGE_MB,
            help=f"A clear, front-facing photo of the artist (PNG, JPEG or WebP, up to {MAX_IMAGE_MB} MB).")
    values["songs"] = st.file_uploader(
        "Songs", type=SONG_UPLOAD_TYPES, accept_multiple_files=True, key=f"{prefix}_songs",
        max_upload_size=MAX_SONG_MB,
        help=f"{', '.join(SONG_UPLOAD_TYPES)}; up to {MAX_SONG_MB} MB each. The file name becomes the song's name.")
    values["lyrics"] = st.file_uploader(
        "Lyrics (.lrc, optional)", type=["lrc"], accept_multiple_files=True, key=f"{prefix}_lyrics", max_upload_size=1,
        help="Timed lyrics, named like their song (late-bus-home.lrc for late-bus-home.mp3). Captions and clip "
             "choice use them.")
    values["artist_text"] = st.text_area("Who is the artist?", key=f"{prefix}_artist_text", height=90,
                                         placeholder="Genre, story, what the songs are about…")
    values["audience_text"] = st.text_area("Who listens?", key=f"{prefix}_audience_text", height=90,
                                           placeholder="Age, places, what they care about…")
    return values


def artist_card(artist: Artist) -> None:
    missing = check_readiness(artist)
    required = [m for m in missing if m.severity == "required"]
    songs = artist_songs(artist)
    with st.container(border=True):
        face_col, body = st.columns([1, 7], vertical_alignment="top")
        face = ui.face_image(artist)
        if face:
            face_col.image(str(face), width=96)
        else:
            with face_col:
                ui.icon_placeholder("person")
        with body:
            with st.container(horizontal=True, vertical_alignment="center"):
                st.markdown(f"**{artist.name}**")
                if required:
                    st.badge("Needs files", color="red", icon=":material/error:")
                else:
                    st.badge("Ready", color="green", icon=":material/check_circle:")
                if artist.root.resolve() == DEMO_ARTIST_DIR.resolve():
                    st.badge("Demo", color="violet")
                if artist.repository:
                    st.badge("Git", color="blue", icon=":material/cloud_sync:")
            song_names = ", ".join(s.title + (" ♪" if s.lrc_path else "") for s in songs) or "no songs yet"
            st.caption(f"`{artist.account_id}`  \nSongs: {song_names}"
                       + (f"  \nRepository: `{mask_url(artist.repository)}`"
                          + (f" @ `{artist.ref}`" if artist.ref else "") if artist.repository else ""))
            for m in missing:
                text = f"**{m.file}** — {m.fix}"
                if m.severity == "required":
                    st.error(text, icon=":material/error:")
                else:
                    st.caption(f":material/lightbulb: {text}")
            with st.container(horizontal=True):
                st.page_link(ui.page_path("create"), label="Create videos", query_params={"artist": artist.account_id},
                             icon=":material/movie_edit:", disabled=bool(required))
                if artist.repository and st.button("Update from repository", key=f"sync_{artist.account_id}",
                                                   icon=":material/sync:"):
                    ok, _ = ui.run_action(lambda: sync_artist(artist, studio.settings),
                                          spinner="Fetching the repository…")
                    if ok:
                        ui.flash(f"{artist.name} is up to date with its repository.")
                        st.rerun()
            if editable(artist):
                with st.expander("Add or replace files", icon=":material/upload:"):
                    prefix = f"fix_{artist.account_id}_{form_version(artist.account_id)}"
                    values = files_inputs(prefix)
                    if st.button("Save files", key=f"{prefix}_save", type="primary"):
                        ok, _ = ui.run_action(lambda: add_to_artist(
                            artist, studio.settings, face=(uploads(values["face"]) or [None])[0],
                            songs=uploads(values["songs"]), lyrics=uploads(values["lyrics"]),
                            artist_text=values["artist_text"], audience_text=values["audience_text"],
                        ), spinner="Checking and saving…")
                        if ok:
                            reset_form(artist.account_id)
                            ui.flash(f"Saved {artist.name}'s files.")
                            st.rerun()


def add_artist_tab() -> None:
    st.markdown("Upload a face photo and songs; the studio keeps them as the artist's workspace on this server.")
    prefix = f"new_{form_version('new')}"
    name = st.text_input("Name", key=f"{prefix}_name", max_chars=100, placeholder="e.g. Nova Reyes")
    values = files_inputs(prefix)
    if st.button("Add artist", key=f"{prefix}_save", type="primary", icon=":material/person_add:"):
        ok, artist = ui.run_action(lambda: create_artist(
            studio.settings, name, face=(uploads(values["face"]) or [None])[0], songs=uploads(values["songs"]),
            lyrics=uploads(values["lyrics"]), artist_text=values["artist_text"],
            audience_text=values["audience_text"], owner=studio.owner,
        ), spinner="Checking the files and making the workspace…")
        if ok and isinstance(artist, Artist):
            reset_form("new")
            ui.flash(f"Added {artist.name}. Create their first videos when they are ready.")
            st.rerun()


def connect_tab() -> None:
    st.markdown("Keep the artist's files in a git repository laid out like this, and the studio fetches the latest "
                "version before every run:\n"
                "- `context/images/face-guide.png` — required (unless runs pass images)\n"
                "- `songs/<slug>/<slug>.mp3` — at least one; a `<slug>.lrc` beside it for timed lyrics\n"
                "- `context/artist.md`, `context/audience.md` — recommended; captions use them")
    prefix = f"repo_{form_version('repo')}"
    name = st.text_input("Name", key=f"{prefix}_name", max_chars=100)
    url = st.text_input("Repository URL", key=f"{prefix}_url", placeholder="https://github.com/you/artist-workspace.git")
    ref = st.text_input("Branch or tag (optional)", key=f"{prefix}_ref", placeholder="main")
    if st.button("Connect", key=f"{prefix}_save", type="primary", icon=":material/link:"):
        ok, artist = ui.run_action(lambda: connect_repository(studio.settings, name, url, ref, studio.owner),
                                   spinner="Cloning the repository…")
        if ok and isinstance(artist, Artist):
            reset_form("repo")
            ui.flash(f"Connected {artist.name} from {mask_url(artist.repository)}.")
            st.rerun()


studio = ui.start_page()
ui.header("Artists", "An artist is a face guide, songs and a few words of context. Add one here, or connect a git "
          "repository that holds those files.")
ui.show_flash()
artists = artists_with_files(studio.settings, studio.viewer)
yours, add, connect = st.tabs([f"Artists ({len(artists)})", "Add an artist", "Connect a repository"])
with yours:
    if not artists:
        ui.empty_state("artist", "No artists yet", "Add one in the next tab: a face photo and a song are enough.")
    for a in artists:
        artist_card(a)
with add:
    add_artist_tab()
with connect:
    connect_tab()
