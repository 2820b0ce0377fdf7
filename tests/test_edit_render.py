"""The edit on decoded frames of real renders: cuts where `edit.cuts` says and on the grid, each lyric word lit
within a frame of its time, text never on the face nor in the platforms' interface zones, for every template and
format."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.artists import find_artist
from pipeline.edit.frame_format import ASPECT_RATIOS
from pipeline.edit.text_layout import CAP_HEIGHT_FLOOR, safe_box
from pipeline.ffmpeg import decode_frames
from pipeline.models import CAPTION_LENGTHS, RunPlan
from pipeline.run_video import run_video
from pipeline.settings import PROJECT_ROOT, Settings
from pipeline.templates import template_ids
from tests.fake_remote import FakeRemote, remote_settings
from tests.test_artists import make_workspace
from tests.test_choose_clip import make_song, write_audio

pytestmark = pytest.mark.slow
FPS = 30
ACCOUNT = "5f0c5c8e-3a51-4f6f-9d0b-3d1f2b7a9e10"
FACE = PROJECT_ROOT / "assets" / "demo-artist" / "context" / "images" / "face-guide.png"
WORDS = ["we", "drive", "all", "night", "until", "the", "morning"]


def enhanced_lrc(seconds: float) -> tuple[str, list[tuple[float, str]]]:
    """An LRC with a word tag on every word (a line every 2.4 s, words 0.3 s apart); and the word times."""
    lines, times = [], []
    t = 0.4
    while t < seconds - 2.4:
        tags = []
        for k, word in enumerate(WORDS[:5]):
            at = round(t + 0.3 * k + 0.07 * (k % 2), 2)
            tags.append(f"<00:{at:05.2f}>{word}")
            times.append((at, word))
        lines.append(f"[00:{t:05.2f}]" + " ".join(tags))
        t = round(t + 2.4, 2)
    return "\n".join(lines) + "\n", times


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, list[tuple[float, str]]]:
    root = tmp_path_factory.mktemp("edit")
    artist = make_workspace(root / "artists" / "edit-artist", account_id=ACCOUNT, songs=())
    shutil.copy(FACE, artist / "context" / "images" / "face-guide.png")
    text, times = enhanced_lrc(12.0)
    for slug in ("drums", "tone"):
        folder = artist / "songs" / slug
        folder.mkdir(parents=True)
        (folder / f"{slug}.lrc").write_text(text, encoding="utf-8")
    write_audio(artist / "songs" / "drums" / "drums.mp3", make_song([("chorus", 12.0)], seed=5).samples)
    (artist / "songs" / "untimed").mkdir(parents=True)  # the same song without any lyrics file
    shutil.copy(artist / "songs" / "drums" / "drums.mp3", artist / "songs" / "untimed" / "untimed.mp3")
    # silence: no beat at all, so the lyric test's picture is one shot and only the text changes
    write_audio(artist / "songs" / "tone" / "tone.mp3", np.zeros(12 * 22050, dtype=np.float32), sr=22050)
    settings = Settings(_env_file=None, data_dir=root / "data", artists_dir=root / "artists", clip_seconds=4.0,
                        output_width=180, output_height=320)
    return settings, times


def render(settings: Settings, name: str, **kw) -> tuple[np.ndarray, dict]:
    plan = RunPlan(run_id=name, artist=find_artist(settings, ACCOUNT), out_dir=settings.runs_dir / name, **kw)
    result = run_video(plan, settings)
    frames = np.stack(decode_frames(result.video_path)).astype(np.int16)
    return frames, result.output["edit"]


def pair(settings: Settings, name: str, **kw) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """The same run (same seed) with text and without."""
    on, edit_on = render(settings, f"{name}-on", **kw)
    off, edit_off = render(settings, f"{name}-off", **{**kw, "caption_length": "none", "lyrics": "none"})
    assert edit_on["cuts"] == edit_off["cuts"] and edit_on["faceBoxes"] == edit_off["faceBoxes"], "same picture"
    return on, off, edit_on, edit_off


def text_pixels(on: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Per frame, the pixels the text changed (well above the encoder's noise between two renders)."""
    return np.abs(on - off).max(axis=-1) > 64


def face_at(edit: dict, frame: int) -> dict | None:
    t = frame / FPS
    for box in edit["faceBoxes"]:
        if box["start"] <= t + 1e-6 < box["end"] or (t >= box["end"] and box is edit["faceBoxes"][-1]):
            return box
    return None


def test_cuts_are_where_the_picture_jumps_and_on_the_grid(studio) -> None:
    settings, _ = studio
    frames, edit = render(settings, "cuts", template_id="artist-caption-stage", songs=["drums"], seed=4,
                          lyrics="none")
    assert edit["cuts"], "an energetic template on a drum loop cuts"
    change = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))  # change[k]: frame k -> k + 1
    # a cut moves the whole picture (mean change 20-50 levels); the slow push and a keyframe change it < 3
    jumps = {k + 1 for k in np.nonzero(change > max(8.0, 10 * np.median(change)))[0]}
    expected = {round(c * FPS) for c in edit["cuts"]}
    assert jumps == expected, f"picture jumps at frames {sorted(jumps)}, edit.cuts says {sorted(expected)}"
    for cut in edit["cuts"]:
        assert min(abs(cut - b) for b in edit["beats"]) <= 1 / FPS + 1e-6, f"cut {cut} is off the grid"
    assert set(edit["downbeats"]) <= set(edit["beats"])


def test_each_lyric_word_lights_within_a_frame_of_its_time(studio) -> None:
    settings, times = studio
    on, off, edit, _ = pair(settings, "words", template_id="artist-caption-stage", songs=["tone"], seed=2,
                            lyrics="word")
    assert not edit["cuts"], "no steady beat: one shot, so only the text changes"
    assert edit["lyricsMode"] == "word" and edit["lyrics"] and edit["lyricsTiming"] == "lrc word tags"
    shown = [w for line in edit["lyrics"] for w in line["words"]]
    start = min(t for t, _ in times if any(abs(t - w["start"]) < 5 for w in shown))
    source = dict(times)
    clip_start = next(t for t in sorted(source) if source[t] == shown[0]["text"] and t >= start) - shown[0]["start"]
    for w in shown:  # the displayed times are the file's word tags
        assert any(abs(t - clip_start - w["start"]) < 1e-3 and word == w["text"] for t, word in times), w
    boxes = [b for b in edit["textBoxes"] if b["kind"] == "lyrics"]
    x0, y0 = min(b["x"] for b in boxes), min(b["y"] for b in boxes)
    x1, y1 = max(b["x"] + b["w"] for b in boxes), max(b["y"] + b["h"] for b in boxes)
    ink = np.abs(on - off)[:, y0:y1, x0:x1].max(axis=-1)  # the text as laid over this very picture
    # change[k]: pixels of the lyric box whose ink changed clearly between frame k and k + 1 (a word lit)
    change = (np.abs(np.diff(ink, axis=0)) > 48).sum(axis=(1, 2)).astype(float)
    floor = max(3.0, float(np.median(change)))
    for w in shown:
        k = round(w["start"] * FPS)
        if k == 0:
            continue
        window = change[max(0, k - 3): k + 2]  # transitions into frames k-2 .. k+2
        peak = max(0, k - 3) + int(np.argmax(window)) + 1
        assert abs(peak - k) <= 1 and window.max() > 5 * floor, f"{w['text']} at frame {k} lit at {peak}"


def check_text_clear(on: np.ndarray, off: np.ndarray, edit: dict, aspect: str) -> None:
    changed = text_pixels(on, off)
    h, w = on.shape[1:3]
    assert changed.any(), "the text is on screen"
    safe = safe_box(aspect, w, h)
    for k in range(len(changed)):
        box = face_at(edit, k)
        if box is not None:
            inside = changed[k, box["y"]: box["y"] + box["h"], box["x"]: box["x"] + box["w"]]
            assert inside.sum() <= 2, f"frame {k}: {int(inside.sum())} text pixels on the face {box}"
        ys, xs = np.nonzero(changed[k])
        if len(xs):  # inside the safe zone, all four edges (2 px for the encoder's smear at the edges of the ink)
            assert xs.max() <= safe.right + 2 and ys.max() <= safe.bottom + 2, f"frame {k} in the UI zone"
            assert xs.min() >= safe.x - 2 and ys.min() >= safe.y - 2, f"frame {k} past the safe zone's edge"
    floor = CAP_HEIGHT_FLOOR * min(w, h) / 720
    for tb in edit["textBoxes"]:
        # the ink box holds at least one line's capitals (a caption is paged, never shrunk, below the floor)
        assert tb["h"] >= floor, f"{tb} is shorter than a {floor:.1f} px capital"
        assert tb["x"] >= safe.x and tb["x"] + tb["w"] <= safe.right and safe.y <= tb["y"] \
            and tb["y"] + tb["h"] <= safe.bottom
        for face in edit["faceBoxes"]:
            if face["start"] < tb["end"] and tb["start"] < face["end"]:
                assert (tb["x"] + tb["w"] <= face["x"] or face["x"] + face["w"] <= tb["x"]
                        or tb["y"] + tb["h"] <= face["y"] or face["y"] + face["h"] <= tb["y"]), (tb, face)


@pytest.fixture(scope="module")
def short_studio(studio) -> tuple[Settings, dict[tuple[str, str], tuple[np.ndarray, dict]]]:
    """The studio with 2.5 s clips (every frame is checked, so a short clip proves as much as a long one) and
    the text-off render of each template x format, made once: it is the same for every caption length."""
    settings, _ = studio
    return settings.model_copy(update={"clip_seconds": 2.5}), {}


@pytest.mark.parametrize("caption", CAPTION_LENGTHS)
@pytest.mark.parametrize("aspect", ASPECT_RATIOS)
@pytest.mark.parametrize("template", template_ids())
def test_text_is_never_on_the_face(short_studio, template: str, aspect: str, caption: str) -> None:
    """Every template x format x caption length (with `none`, the lyrics alone), karaoke lyrics on."""
    settings, offs = short_studio
    kw = {"template_id": template, "songs": ["drums"], "seed": 6, "aspect_ratio": aspect}
    name = f"face-{template}-{aspect.replace(':', 'x')}"
    if (template, aspect) not in offs:
        offs[template, aspect] = render(settings, f"{name}-off", **kw, caption_length="none", lyrics="none")
    off, edit_off = offs[template, aspect]
    on, edit = render(settings, f"{name}-{caption}", **kw, caption_length=caption, lyrics="word")
    assert edit["cuts"] == edit_off["cuts"] and edit["faceBoxes"] == edit_off["faceBoxes"], "same picture"
    assert edit["aspectRatio"] == aspect and on.shape[1:3] == (edit["height"], edit["width"])
    if template != "album-record-store":  # the only template without the artist's face
        assert edit["faceBoxes"]
    assert {b["kind"] for b in edit["textBoxes"]} >= ({"lyrics"} | ({"caption"} if caption != "none" else set())), \
        (edit.get("lyricsSkipped"), edit["lyrics"], edit["textBoxes"])
    check_text_clear(on, off, edit, aspect)


def test_lyrics_asked_of_a_song_with_no_timing_say_why_and_the_run_completes(studio) -> None:
    settings, _ = studio
    frames, edit = render(settings, "untimed", template_id="artist-caption-stage", songs=["untimed"], seed=1,
                          lyrics="word")
    assert len(frames) > 0 and edit["lyrics"] == [] and not [b for b in edit["textBoxes"] if b["kind"] == "lyrics"]
    assert "no timed lyrics" in edit["lyricsSkipped"] and edit["lyricsTiming"] == "none"


@pytest.mark.parametrize("source", ["still", "clip"])
def test_text_states_are_on_screen_exactly_in_their_frames(tmp_path: Path, source: str) -> None:
    """The same track over the camera (painted into the frames) and over a provider's clip (ffmpeg's overlay):
    each state shows from its first frame to its last, nothing in the gaps."""
    from pipeline.edit.text_track import TextState, TextTrack
    from pipeline.edit.timeline import Box
    from pipeline.render import RenderJob
    from pipeline.render import render as render_job
    from tests.media import ffmpeg_make
    from tests.test_render import flat_still, static

    song = tmp_path / "song.wav"
    ffmpeg_make("-f", "lavfi", "-i", "sine=frequency=330:duration=3", str(song))
    clip = None
    if source == "clip":
        clip = tmp_path / "clip.mp4"
        ffmpeg_make("-f", "lavfi", "-i", "color=c=0x404040:s=180x320:r=30:d=2", "-pix_fmt", "yuv420p", str(clip))
    box = Box(31, 201, 101, 41)  # odd on purpose: chroma lands on the even grid
    white = np.full((box.h, box.w, 4), 255, np.uint8)
    red = white.copy()
    red[..., 1:3] = 0
    track = TextTrack(kind="lyrics", box=box, states=(TextState(10 / FPS, 20 / FPS, white),
                                                      TextState(30 / FPS, 45 / FPS, red)))
    job = RenderJob(image=flat_still(tmp_path / "g.jpg", 270, 480), motion=static(), audio_path=song, clip_start=0.0,
                    clip_duration=2.0, ass_path=None, fonts_dir=PROJECT_ROOT, out_path=tmp_path / "v.mp4", width=180,
                    height=320, video_source=clip, text_tracks=(track,))
    frames = np.stack(decode_frames(render_job(job).video_path)).astype(np.int16)
    inside = frames[:, box.y + 4: box.bottom - 4, box.x + 4: box.right - 4].mean(axis=(1, 2))  # (frames, rgb)
    for k, (r, g, b) in enumerate(inside):
        if 10 <= k < 20:
            assert min(r, g, b) > 235, f"frame {k}: white state missing ({r:.0f}, {g:.0f}, {b:.0f})"
        elif 30 <= k < 45:
            assert r > 200 and g < 60 and b < 60, f"frame {k}: red state missing ({r:.0f}, {g:.0f}, {b:.0f})"
        else:
            assert max(r, g, b) < 200, f"frame {k}: text where there is none ({r:.0f}, {g:.0f}, {b:.0f})"


def test_with_two_pictures_of_the_artist_the_bar_lines_cut_between_them(tmp_path: Path) -> None:
    from PIL import Image, ImageEnhance, ImageOps

    root = tmp_path / "artists" / "two"
    account = "0b7c8f3e-1d2a-4c5b-9e6f-7a8b9c0d1e2f"
    artist = make_workspace(root, account_id=account, songs=())
    shutil.copy(FACE, artist / "context" / "images" / "face-guide.png")
    with Image.open(FACE) as img:  # another picture: mirrored, paler, the face elsewhere in the frame
        other = ImageEnhance.Color(ImageOps.mirror(img.convert("RGB"))).enhance(0.6)
        canvas = Image.new("RGB", (round(other.width * 1.4), round(other.height * 1.4)), (30, 40, 60))
        canvas.paste(other, (round(other.width * 0.4), round(other.height * 0.2)))
        canvas.save(artist / "context" / "images" / "backstage.jpg")
    (artist / "songs" / "drums").mkdir(parents=True)
    write_audio(artist / "songs" / "drums" / "drums.mp3", make_song([("chorus", 12.0)], seed=5).samples)
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", artists_dir=tmp_path / "artists",
                        clip_seconds=5.0, output_width=180, output_height=320)
    plan = dict(template_id="artist-caption-stage", songs=["drums"], seed=4, caption_length="short", lyrics="none")
    runs = {}
    for name, caption in (("on", "short"), ("off", "none")):
        p = RunPlan(run_id=name, artist=find_artist(settings, account), out_dir=settings.runs_dir / name,
                    **{**plan, "caption_length": caption})
        result = run_video(p, settings)
        runs[name] = (np.stack(decode_frames(result.video_path)).astype(np.int16), result.output["edit"])
    (on, edit), (off, _) = runs["on"], runs["off"]
    images = [s["image"] for s in edit["segments"]]
    assert set(images) == {0, 1}, edit["segments"]
    bar_cuts = [s for s in edit["segments"][1:] if s["framing"] != "punch"]
    assert all(a["image"] != b["image"] for a, b in zip(edit["segments"], edit["segments"][1:], strict=False)
               if b in bar_cuts)
    check_text_clear(on, off, edit, "9:16")  # each picture's own face is kept clear


@pytest.mark.parametrize("template", ["artist-caption-stage", "artist-caption-bedroom", "artist-caption-outside"])
def test_the_face_in_the_video_keeps_the_graded_stills_colour(studio, template: str) -> None:
    """The scene light (beams, fairy lights, golden hour) casts nothing on the face: the face box's mean colour in
    the video is within 8 levels per channel of the graded still's before any light (the encoder and the 4:2:0
    round trip move it by 2-4; without the face kept clear the stage beams moved it by 10-55)."""
    from pipeline.detect_face import detect_face, load_upright
    from pipeline.make_image import apply_grade, frame_portrait
    from pipeline.templates import load_template

    settings, _ = studio
    frames, edit = render(settings, f"colour-{template}", template_id=template, songs=["drums"], seed=3,
                          lyrics="none")
    spec = load_template(template).image
    src, _ = load_upright(FACE)
    w, h = 270, 480  # the run's still: 1.5x the 180x320 frame
    graded, face = frame_portrait(src, detect_face(src), w, h, spec)
    graded = np.asarray(apply_grade(graded, spec.grade), np.float32)
    still_mean = graded[face.y: face.y + face.h, face.x: face.x + face.w].mean(axis=(0, 1))
    for box in edit["faceBoxes"]:
        k = round((box["start"] + box["end"]) / 2 * FPS)
        # the middle half of the face box: its edges take in hair and background as the shot moves
        y0, x0 = box["y"] + box["h"] // 4, box["x"] + box["w"] // 4
        shown = frames[k, y0: y0 + box["h"] // 2, x0: x0 + box["w"] // 2].mean(axis=(0, 1))
        inner = graded[face.y + face.h // 4: face.y + 3 * face.h // 4, face.x + face.w // 4: face.x + 3 * face.w // 4]
        assert np.abs(shown - inner.mean(axis=(0, 1))).max() <= 8, (template, box, shown.round(), still_mean.round())


def clip_frames_repeat(frames: np.ndarray, edit: dict, *, gap: float = 1.0, same: float = 1.5) -> list[int]:
    """Frames of the provider's clip that match a clip frame at least `gap` s earlier (a loop or a restart)."""
    small = frames[:, ::4, ::4].mean(axis=-1)
    on_clip = [k for k in range(len(frames)) if any(s["source"] == "clip" and s["start"] <= k / FPS + 1e-6 < s["end"]
                                                     for s in edit["segments"])]
    found = []
    for k in on_clip:
        earlier = [j for j in on_clip if j <= k - gap * FPS]
        if earlier and float(np.abs(small[earlier] - small[k]).mean(axis=(1, 2)).min()) < same:
            found.append(k)
    return found


def test_a_providers_clip_is_cut_with_the_still_on_the_grid(studio, tmp_path: Path) -> None:
    """The provider's clip and the still framed on its face alternate on bar lines: the frames where the picture
    jumps are `edit.cuts`, each on a beat of the grid, and the clip is never replayed."""
    settings, _ = studio
    with FakeRemote(tmp_path / "fake") as fake:
        remote = remote_settings(tmp_path, fake, artists_dir=settings.artists_dir, video_provider="fal",
                                 clip_seconds=6.0, remote_video_seconds=6, output_width=180, output_height=320)
        frames, edit = render(remote, "clip-cuts", template_id="artist-caption-stage", songs=["drums"], seed=4,
                              lyrics="none", caption_length="none")
    sources = [s["source"] for s in edit["segments"]]
    assert "clip" in sources and "still" in sources, sources
    assert sources[0] == "clip" and all(a != b for a, b in zip(sources, sources[1:], strict=False)), sources
    assert all((s["framing"] == "clip") == (s["source"] == "clip") for s in edit["segments"])
    change = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    jumps = {k + 1 for k in np.nonzero(change > max(8.0, 10 * np.median(change)))[0]}
    expected = {round(c * FPS) for c in edit["cuts"]}
    assert jumps == expected, f"picture jumps at frames {sorted(jumps)}, edit.cuts says {sorted(expected)}"
    for cut in edit["cuts"]:
        assert min(abs(cut - b) for b in edit["downbeats"]) <= 1 / FPS + 1e-6, f"cut {cut} is off the bar lines"
    assert clip_frames_repeat(frames, edit) == []

