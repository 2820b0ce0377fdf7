"""Hostile caption and lyric text through the real pipeline: quotes, colons, commas, backslashes, percent signs,
braces, override tags, newlines, emoji and right-to-left scripts render as text, in a data folder whose own
name is full of filter syntax, with no ffmpeg filter or libass override injection and no crash."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from pipeline.artists import find_artist
from pipeline.caption_ass import build_ass, caption_style_from_template
from pipeline.ffmpeg import decode_frames, probe
from pipeline.lyrics import load_lyrics
from pipeline.models import RunPlan
from pipeline.providers.registry import providers_from_settings
from pipeline.run_video import run_video
from pipeline.settings import FONTS_DIR, Settings
from pipeline.templates import load_template
from pipeline.write_caption import CaptionContext
from tests.media import make_tone
from tests.test_artists import make_workspace

HOSTILE_CAPTION = ('he said "go": now, 100% {\\pos(0,0)}{\\c&H0000FF&}{\\fs200} back\\slash \\N x\n'
                   "next 🔥 مرحبا שלום ' ; [out] %{pts} \\h\\{")
HOSTILE_LYRICS = [
    '"quoted": line, with commas',
    "{\\an8}{\\c&H0000FF&}override? no",
    "back\\slash and \\N and 100% and %{localtime}",
    "emoji 🔥✨ and العربية and עברית",
    "semi;colon [in] [out] 'single' quotes",
]


class FixedCaption:
    """A caption provider that writes exactly the given text (as a remote model might)."""

    name = "fixed (test)"

    def __init__(self, text: str):
        self.text = text

    def write(self, ctx: CaptionContext, length: str, rng: random.Random) -> str:
        return self.text


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("captions") / "data dir's: [x],y;z=%{n}\\"
    settings = Settings(_env_file=None, data_dir=root, clip_seconds=3.0, output_width=180, output_height=320,
                        x264_preset="ultrafast")
    workspace = make_workspace(settings.artists_dir / "hostile", songs=())
    folder = workspace / "songs" / "track"
    folder.mkdir(parents=True)
    make_tone(folder / "track.mp3", seconds=4.0)
    lrc = "\n".join(f"[00:0{i}.{i}0] {line}" for i, line in enumerate(HOSTILE_LYRICS))
    (folder / "track.lrc").write_text(lrc + "\n", encoding="utf-8")
    providers = providers_from_settings(settings)
    providers.caption = FixedCaption(HOSTILE_CAPTION)
    plan = RunPlan(run_id="run_hostile", artist=find_artist(settings, "hostile"), template_id="artist-caption-stage",
                   caption_length="long", seed=1, out_dir=settings.runs_dir / "run_hostile")
    return settings, run_video(plan, settings, providers=providers)


def test_the_lyrics_are_read_as_text(rendered) -> None:
    settings, _ = rendered
    artist = find_artist(settings, "hostile")
    song = artist.root / "songs" / "track"
    from pipeline.artists import list_songs

    lines = load_lyrics(next(s for s in list_songs(artist) if s.path.parent == song), None)
    assert [line.text for line in lines] == HOSTILE_LYRICS


def test_a_hostile_caption_renders_as_a_finished_video(rendered) -> None:
    _, result = rendered
    info = probe(result.video_path)
    assert (info.width, info.height) == (180, 320) and abs(info.duration - 3.0) < 0.2
    assert result.output["captionText"] == HOSTILE_CAPTION  # kept exactly, for the record
    for line in HOSTILE_LYRICS[:3]:
        assert line in result.output["audio"]["clipLyrics"]


def test_the_caption_is_drawn_as_plain_white_text_with_no_injected_style(rendered) -> None:
    _, result = rendered
    frame = decode_frames(result.video_path, at=[1.5])[0].astype(int)
    white = frame.min(axis=2) > 215
    ys, xs = np.nonzero(white)
    assert len(ys) > 150  # the text is there
    # {\pos(0,0)} would put it in the top-left corner, {\fs200} would make it huge: neither happened
    assert ys.min() > 320 * 0.10 and xs.min() > 180 * 0.03
    assert ys.max() - ys.min() < 320 * 0.75
    # {\c&H0000FF&} would turn it red
    red = (frame[..., 0] > 170) & (frame[..., 1] < 70) & (frame[..., 2] < 70)
    assert red.sum() < 20


# --- many hostile captions, each through the whole pipeline ----------------------------------------------------

HOSTILE_CAPTIONS = [
    'he said "hi" and \'bye\'',
    "at 3:00: the drop, key: value",
    "one, two, three,,, go",
    "\\N \\n \\h {\\b1} {\\fnArial}\\an8 \\\\",
    "100% %{pts} %% %s %d",
    "{} ${HOME} $(whoami) `id`",
    "line one\r\nline two\rline three\n\n",
    "👩\u200d👩\u200d👧 family مرحبا بالعالم שלום עולם",
    "drawtext=text='x':fontfile=/etc/passwd [in]scale=2:2[out]; -y /tmp/owned",
]
OUR_BLOCKS = re.compile(r"(\\(an\d|pos\(\d+,\d+\)|fad\(\d+,\d+\)|blur[\d.]+|fn[\w ]+))+")


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("many") / "data"
    settings = Settings(_env_file=None, data_dir=root, clip_seconds=1.5, output_width=90, output_height=160,
                        x264_preset="ultrafast")
    make_workspace(settings.artists_dir / "dj", account_id="5b0d3c55-0000-4000-8000-00000000cafe")
    meta = settings.artists_dir / "dj" / "artist.json"
    meta.write_text(meta.read_text().replace('"name": "dj"', '"name": "DJ \\"{\\\\b1}\\" 50% \u00dcBER:\u00fcnd"'))
    return settings


@pytest.mark.parametrize("text", HOSTILE_CAPTIONS)
def test_each_hostile_caption_renders_and_stays_text(tiny_settings: Settings, text: str) -> None:
    settings = tiny_settings
    providers = providers_from_settings(settings)
    providers.caption = FixedCaption(text)
    run_id = f"run_{HOSTILE_CAPTIONS.index(text)}"
    plan = RunPlan(run_id=run_id, artist=find_artist(settings, "dj"), template_id="artist-caption-bedroom",
                   caption_length="medium", seed=3, out_dir=settings.runs_dir / run_id)
    result = run_video(plan, settings, providers=providers)
    assert abs(probe(result.video_path).duration - 1.0) < 0.2  # the workspace song is 1 s
    assert result.output["captionText"] == text
    style = caption_style_from_template(load_template("artist-caption-bedroom"), FONTS_DIR)
    dialogue = [ln for ln in build_ass(text, style, width=90, height=160, duration=1.0).splitlines()
                if ln.startswith("Dialogue:")]
    assert len(dialogue) == 1  # no newline of the user's ended the event line
    blocks = re.findall(r"(?<!\\)\{([^}]*)\}", dialogue[0])
    assert blocks and all(OUR_BLOCKS.fullmatch(b) for b in blocks), blocks


def test_the_local_writer_fed_hostile_lyrics_and_name_renders(tiny_settings: Settings) -> None:
    settings = tiny_settings
    song = settings.artists_dir / "dj" / "songs" / "hiccups"
    (song / "hiccups.lrc").write_text("\n".join(f"[00:00.{i}0] {line}" for i, line in enumerate(HOSTILE_LYRICS)),
                                      encoding="utf-8")
    artist = find_artist(settings, "dj")
    assert "{" in artist.name and "%" in artist.name
    plan = RunPlan(run_id="run_local", artist=artist, template_id="artist-caption-outside", caption_length="long",
                   seed=4, out_dir=settings.runs_dir / "run_local")
    result = run_video(plan, settings)
    assert result.video_path.is_file() and result.output["captionText"]
