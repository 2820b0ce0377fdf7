"""Create: choose the artist, the look and the options, see the estimate, and queue the videos."""

from __future__ import annotations

import streamlit as st

from pages import _ui as ui
from pages._samples import cached_sample, render_sample
from pages._studio import (
    CAPTION_LENGTHS,
    MAX_BATCH,
    CreateChoices,
    artist_songs,
    artists_with_files,
    build_request,
    estimate,
    form_problems,
    option_costs,
    services,
    split_lines,
    start_runs,
)
from pages._uploads import IMAGE_UPLOAD_TYPES, MAX_IMAGE_MB, Upload, check_image, save_upload_image
from pipeline.artists import check_readiness
from pipeline.edit.frame_format import ASPECT_RATIOS
from pipeline.errors import BadInput
from pipeline.models import LYRICS_MODES
from pipeline.repository import mask_url
from pipeline.templates import list_templates, malleable_template

LYRICS_LABELS = {"none": "None", "line": "Line", "word": "Word by word"}
CAPTION_HELP = {
    "none": "No caption: the video carries only the song.",
    "short": "Up to 10 words, 1–2 punchy lines.",
    "medium": "15–30 words, one or two sentences.",
    "long": "40–80 words, a paragraph in the artist's voice.",
}


def show_problems(slot, messages: list[str]) -> None:
    with slot.container():
        for message in messages:
            st.error(message, icon=":material/error:")


def checked_uploads(files: list) -> tuple[list[Upload], list[str]]:
    """The uploaded images that decode, and a message per one that does not (checked once per file)."""
    cache: dict = st.session_state.setdefault("_checked_images", {})
    good, bad = [], []
    for f in files or []:
        upload = Upload(f.name, f.getvalue())
        key = (f.file_id, len(upload.data))
        if key not in cache:
            try:
                check_image(upload)
                cache[key] = None
            except BadInput as exc:
                cache[key] = exc.message
        if cache[key]:
            bad.append(cache[key])
        else:
            good.append(upload)
    return good, bad


studio = ui.start_page()
settings = studio.settings
ui.header("Create videos", "Pick an artist and a look. Each video gets the song's hook, a styled image of the "
          "artist in motion and a burned-in caption, as a vertical MP4.")

artists = artists_with_files(settings, studio.viewer)
if not artists:
    ui.empty_state("artist", "No artists yet", "Add an artist with a face photo and a few songs to start creating.",
                   link="artists", link_label="Add an artist")
    st.stop()

by_id = {a.account_id: a for a in artists}
wanted = st.query_params.get("artist")
if wanted in by_id and st.session_state.get("_artist_from_link") != wanted:  # "Create videos" on the Artists page
    st.session_state["create_artist"] = st.session_state["_artist_from_link"] = wanted

form_col, side_col = st.columns([3, 2], gap="large")

with form_col:
    # --- artist -------------------------------------------------------------------------------
    with st.container(border=True):
        st.subheader("Artist", anchor=False)
        artist_id = st.selectbox("Artist", list(by_id), format_func=lambda a: by_id[a].name, key="create_artist",
                                 label_visibility="collapsed")
        artist = by_id[artist_id]
        songs = artist_songs(artist)
        with st.container(horizontal=True, vertical_alignment="center", gap="medium"):
            face = ui.face_image(artist)
            if face:
                st.image(str(face), width=84)
            else:
                st.markdown("## :material/person:", width="content")
            st.markdown(f"**{artist.name}**  \n{len(songs)} song{'s' if len(songs) != 1 else ''}"
                        + (f" · from `{mask_url(artist.repository)}`" if artist.repository else ""))
        readiness_slot = st.empty()

    # --- template -----------------------------------------------------------------------------
    with st.container(border=True):
        st.subheader("Look", anchor=False)
        templates = {t.id: t for t in list_templates()}
        template_id = st.selectbox("Template", ["", *templates], format_func=ui.template_label, key="create_template",
                                   help="A template sets the scene, the motion, the grade and the caption's voice.")
        template = templates[template_id] if template_id else malleable_template()
        pic_col, text_col = st.columns([1, 3])
        with text_col:
            st.markdown(template.description)
            st.caption("Moods: " + ", ".join(m.name for m in template.video.moods))
        with pic_col:
            sample = cached_sample(template, settings)
            if sample is None:
                with st.spinner("Rendering a sample…"):
                    sample = render_sample(template, settings)
            if sample:
                st.image(str(sample), width=110)
            else:
                ui.icon_placeholder("photo")

    # --- caption and options ------------------------------------------------------------------
    with st.container(border=True):
        st.subheader("Caption and options", anchor=False)
        caption_length = st.segmented_control(
            "Caption length", list(CAPTION_LENGTHS), default="short", required=True, key="create_caption",
            format_func=lambda c: c.capitalize(),
        ) or "none"
        st.caption(CAPTION_HELP[caption_length])
        caption_slot = st.empty()
        lyrics = st.segmented_control(
            "Lyrics on screen", list(LYRICS_MODES), default=template.edit.lyrics, required=True,
            key=f"create_lyrics_{template.id}", format_func=lambda m: LYRICS_LABELS[m],
            help="The sung line in time with the song, or each word lit as it is sung. The default is the "
                 "template's.",
        ) or template.edit.lyrics
        aspect_ratio = st.segmented_control(
            "Format", list(ASPECT_RATIOS), default="9:16", required=True, key="create_aspect",
            help="9:16 for Reels/TikTok/Shorts, 4:5 and 1:1 for feeds, 16:9 for YouTube.",
        ) or "9:16"

        lipsync_extra, upscale_extra = option_costs(settings)
        chosen = services(settings)
        remote_video = chosen.get("video", "local") != "local"
        lipsync = st.toggle("Lip-sync", key="create_lipsync")
        if remote_video:
            st.caption(f"An audio-to-video model ({chosen['video']}) hears the song clip and moves the lips. "
                       + ui.extra_time(lipsync_extra))
        else:
            st.caption("Runs locally as **audio-reactive motion**: the picture pulses and sways with the beat and "
                       "the clip is chosen where the lyrics are; the lips themselves do not move. "
                       + ui.extra_time(lipsync_extra))
        upscale = st.toggle("Upscale", key="create_upscale")
        upscale_how = ("with " + chosen["upscale"]) if chosen.get("upscale", "local") != "local" else "locally"
        st.caption(f"Makes the video at twice the resolution ({settings.output_width * 2}×"
                   f"{settings.output_height * 2}), {upscale_how}. " + ui.extra_time(upscale_extra))
        batch = int(st.number_input("Videos to make", min_value=1, max_value=MAX_BATCH, value=1, step=1,
                                    key="create_batch",
                                    help="Each video picks its own song clip, mood and camera movement."))
        batch_slot = st.empty()

    # --- songs and images ---------------------------------------------------------------------
    with st.container(border=True):
        st.subheader("Songs", anchor=False)
        slugs = {s.slug: s.title for s in songs}
        song_slugs = st.multiselect("The artist's songs", list(slugs), format_func=lambda s: slugs.get(s, s),
                                    key=f"create_songs_{artist_id}",
                                    placeholder="Any of them (each video picks one at random)")
        songs_slot = st.empty()
        song_urls = split_lines(st.text_area("Song URLs (one per line)", key="create_song_urls", height=80,
                                             placeholder="https://example.com/unreleased-track.mp3",
                                             help="Public links to audio files; they are used instead of the "
                                                  "artist's songs."))
        song_urls_slot = st.empty()

    with st.container(border=True):
        st.subheader("Face images", anchor=False)
        st.caption("Optional. The first image that shows a face is used instead of the artist's face guide.")
        uploaded = st.file_uploader("Upload images", type=IMAGE_UPLOAD_TYPES, accept_multiple_files=True,
                                    key="create_uploads", max_upload_size=MAX_IMAGE_MB,
                                    help=f"PNG, JPEG or WebP, up to {MAX_IMAGE_MB} MB each.")
        good_uploads, bad_uploads = checked_uploads(uploaded or [])
        show_problems(st.empty(), bad_uploads)
        image_urls = split_lines(st.text_area("Image URLs (one per line)", key="create_image_urls", height=80,
                                              placeholder="https://example.com/face.png"))
        image_urls_slot = st.empty()

choices = CreateChoices(
    artist_account_id=artist.account_id, template=template_id or None, caption_length=caption_length,
    lyrics=lyrics, aspect_ratio=aspect_ratio, lipsync=lipsync, upscale=upscale, batch=batch,
    song_slugs=list(song_slugs), song_urls=song_urls,
    image_urls=image_urls, image_paths=["(upload)"] * len(good_uploads),
)
problems = form_problems(choices, artist, list(slugs))
if bad_uploads:
    problems.setdefault("uploads", []).extend(bad_uploads)

# readiness: what the artist lacks, and whether this request covers it
with readiness_slot.container():
    missing = check_readiness(artist, has_song_urls=bool(song_urls), has_images=bool(image_urls or good_uploads))
    blocking = [m for m in missing if m.severity == "required"]
    if not blocking and not missing:
        st.success("Ready: face guide, songs and context are all there.", icon=":material/check_circle:")
    elif not blocking:
        st.success("Ready to create.", icon=":material/check_circle:")
    for m in missing:
        text = f"**{m.file}** — {m.fix}"
        if m.severity == "required":
            st.error(text, icon=":material/error:")
        else:
            st.caption(f":material/lightbulb: Recommended: {text}")
    if missing and not artist.repository and settings.artists_dir and \
            settings.artists_dir.resolve() in artist.root.resolve().parents:
        st.page_link(ui.page_path("artists"), label="Fix this on the Artists page", icon=":material/build:")
show_problems(caption_slot, problems.get("caption_length", []))
show_problems(batch_slot, problems.get("batch", []))
show_problems(songs_slot, problems.get("songs", []))
show_problems(song_urls_slot, problems.get("song_urls", []))
show_problems(image_urls_slot, [*problems.get("image_urls", []), *problems.get("images", [])])

with side_col, st.container(border=True, key="create_summary"):
    st.subheader("Summary", anchor=False)
    plan = estimate(studio, lipsync=lipsync, upscale=upscale, batch=batch)
    videos = f"{batch} video{'s' if batch > 1 else ''}"
    st.markdown(f"**{videos}** of **{artist.name}**  \n{ui.template_label(template_id or None)} · "
                f"{caption_length} caption · {aspect_ratio}" + (f" · lyrics: {lyrics}" if lyrics != "none" else "")
                + (" · lip-sync" if lipsync else "") + (" · 2×" if upscale else ""))
    m1, m2 = st.columns(2)
    m1.metric("Per video", ui.format_estimate(plan.per_video_seconds))
    m2.metric("All done in", ui.format_estimate(plan.total_seconds))
    st.caption(f"Estimate from {plan.basis}; {settings.cpu_slots} video"
               f"{'s' if settings.cpu_slots > 1 else ''} render at a time.")
    count = sum(len(v) for v in problems.values())
    if count:
        st.warning(f"Fix {count} thing{'s' if count > 1 else ''} above to continue.", icon=":material/warning:")
    submitted = st.button(f"Create {videos}", type="primary", disabled=bool(count), key="create_submit",
                          icon=":material/play_arrow:", width="stretch")
    result_slot = st.empty()

if submitted and not problems:
    with result_slot.container():
        def submit() -> dict:
            paths = [str(save_upload_image(u, settings.uploads_for(studio.owner))) for u in good_uploads]
            choices.image_paths = paths
            return start_runs(studio, build_request(choices))

        ok, response = ui.run_action(submit, spinner="Queueing…")
    if ok and isinstance(response, dict):
        ids = response["runIds"]
        ui.flash(f"Started {len(ids)} video{'s' if len(ids) != 1 else ''}: {', '.join(ids)}")
        st.session_state["last_run_ids"] = ids
        st.switch_page(ui.page_path("runs"))
