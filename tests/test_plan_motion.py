"""Camera plans: each movement goes where it says, stays on the still, scales with energy; audio-reactive
plans pulse on the clip's beats; ffmpeg accepts every expression."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.camera import camera_path
from pipeline.camera import evaluate as evaluate_all
from pipeline.errors import RenderError
from pipeline.models import AudioAnalysis, FaceBox, MotionPlan
from pipeline.plan_motion import plan_motion
from pipeline.templates import Mood, Movement, malleable_template

TEMPLATE = malleable_template()
SRC_W, SRC_H = 1080, 1920
FACE = FaceBox(x=600, y=500, w=300, h=300)  # right of centre, upper third
STYLES = ["push-in", "pull-out", "pan-left", "pan-right", "tilt-up", "tilt-down", "drift", "handheld"]


def evaluate(expr: str, t: float) -> float:
    """Evaluate an ffmpeg expression of t in Python (the plans use only these functions)."""
    names = {"t": t, "clip": lambda v, lo, hi: min(max(v, lo), hi), "max": max, "min": min, "exp": math.exp,
             "sin": math.sin, "cos": math.cos}
    return float(eval(expr, {"__builtins__": {}}, names))  # noqa: S307 - our own generated arithmetic


def path(plan: MotionPlan, duration: float, fps: int = 30) -> np.ndarray:
    ts = np.arange(0, duration + 1e-9, 1 / fps)
    return np.array([[evaluate(plan.zoom_expr, t), evaluate(plan.x_expr, t), evaluate(plan.y_expr, t)] for t in ts])


def make_plan(style: str, energy: float = 0.5, duration: float = 6.0, face: FaceBox | None = FACE,
              lipsync: bool = False, **kw) -> MotionPlan:
    return plan_motion(TEMPLATE, mood=Mood(name="m", energy=energy), movement=Movement(prompt="p", style=style),
                       face=face, src_width=SRC_W, src_height=SRC_H, duration=duration, lipsync=lipsync, **kw)


@pytest.mark.parametrize("style", STYLES)
def test_every_style_stays_on_the_still_and_moves_smoothly(style: str) -> None:
    plan = make_plan(style)
    assert plan.style == style and not plan.audio_reactive
    p = path(plan, 6.0)
    zoom, x, y = p[:, 0], p[:, 1], p[:, 2]
    assert (zoom >= 1.0 - 1e-9).all() and (zoom < 1.6).all()
    assert (x >= 0.5 / zoom - 1e-6).all() and (x <= 1 - 0.5 / zoom + 1e-6).all()
    assert (y >= 0.5 / zoom - 1e-6).all() and (y <= 1 - 0.5 / zoom + 1e-6).all()
    # no jumps: the biggest frame-to-frame change is small and never far above the typical one
    steps = np.abs(np.diff(p, axis=0)).max(axis=1)
    assert steps.max() < 0.01
    assert steps.max() <= 6 * max(np.median(steps), 1e-4)


def test_directions() -> None:
    def ends(style: str) -> tuple[np.ndarray, np.ndarray]:
        p = path(make_plan(style), 6.0)
        return p[0], p[-1]

    a, b = ends("push-in")
    assert b[0] > a[0] + 0.05 and b[1] > a[1] and b[2] < a[2]  # closer, toward the face (right, up)
    a, b = ends("pull-out")
    assert b[0] < a[0] - 0.05
    a, b = ends("pan-left")
    assert b[1] < a[1] - 0.02
    a, b = ends("pan-right")
    assert b[1] > a[1] + 0.02
    a, b = ends("tilt-up")
    assert b[2] < a[2] - 0.02
    a, b = ends("tilt-down")
    assert b[2] > a[2] + 0.02


def test_energy_scales_the_move() -> None:
    calm = path(make_plan("push-in", energy=0.1), 6.0)
    wild = path(make_plan("push-in", energy=0.9), 6.0)
    assert wild[-1, 0] - wild[0, 0] > 1.5 * (calm[-1, 0] - calm[0, 0])
    calm = path(make_plan("handheld", energy=0.1), 6.0)
    wild = path(make_plan("handheld", energy=0.9), 6.0)
    assert np.ptp(wild[:, 1]) > 1.5 * np.ptp(calm[:, 1])


def test_without_a_face_the_camera_leans_to_the_anchor() -> None:
    p = path(make_plan("push-in", face=None), 6.0)
    ax, ay = TEMPLATE.image.face_anchor
    assert p[-1, 2] < 0.5 and abs(p[-1, 1] - 0.5) < 1e-6 and ay < 0.5 and ax == 0.5


def analysis_with_beats(duration: float = 40.0, bpm: float = 120.0) -> AudioAnalysis:
    hop = 0.02
    n = int(duration / hop)
    times = np.arange(n) * hop
    loud = np.where((times % 8) < 4, 0.9, 0.2)  # loud 4 s, quiet 4 s
    beats = tuple(float(b) for b in np.arange(0.25, duration, 60 / bpm))
    onset = np.zeros(n)
    onset[[round(b / hop) for b in beats if round(b / hop) < n]] = 1.0
    return AudioAnalysis(duration=duration, hop_seconds=hop, rms=tuple(loud), onset=tuple(onset), beats=beats,
                         tempo=bpm, repetition=tuple(np.zeros(n)))


def test_lipsync_without_a_model_is_audio_reactive() -> None:
    analysis = analysis_with_beats()
    plan = make_plan("push-in", duration=8.0, lipsync=True, analysis=analysis, clip_start=10.0)
    assert plan.audio_reactive and plan.style == "audio-reactive"
    # the clip starts at 10 s: beats at 10.25, 10.75, ... are at 0.25, 0.75, ... in the clip
    for beat in (0.25, 2.75, 5.25):
        at, peak, before = (evaluate(plan.zoom_expr, beat + d) for d in (0.0, 0.09, -0.02))
        assert peak > at + 0.004 and peak > before + 0.004
    # the sway is bigger while the song is loud (clip 0-2 s = song 10-12 s loud) than quiet (clip 2-6 s)
    x = np.array([evaluate(plan.x_expr, t) for t in np.arange(0, 8, 1 / 30)])
    loud, quiet = x[15:60], x[75:170]
    assert np.ptp(loud) > 2 * np.ptp(quiet)
    # no lipsync: the ordinary movement, not audio-reactive
    assert not make_plan("push-in", analysis=analysis).audio_reactive


def test_expressions_stay_compact_for_long_busy_clips() -> None:
    plan = make_plan("push-in", duration=60.0, lipsync=True, analysis=analysis_with_beats(200.0, 180.0),
                     clip_start=30.0)
    assert len(plan.zoom_expr) < 4000 and len(plan.x_expr) < 3000 and len(plan.y_expr) < 3000


@pytest.mark.parametrize("style", [*STYLES, "audio-reactive"])
def test_the_camera_follows_the_plan_frame_by_frame(style: str) -> None:
    if style == "audio-reactive":
        plan = make_plan("push-in", duration=60.0, lipsync=True, analysis=analysis_with_beats(200.0, 180.0))
    else:
        plan = make_plan(style)
    frames = 60 * 30 if plan.audio_reactive else 6 * 30
    cam = camera_path(plan, frames, 30)
    expected = np.array([[evaluate(e, i / 30) for e in (plan.zoom_expr, plan.x_expr, plan.y_expr)]
                         for i in range(0, frames, 7)])
    assert cam.zoom[::7] == pytest.approx(np.maximum(expected[:, 0], 1.0), abs=1e-9)
    # the window stays on the still: the plan already keeps it there, so the camera's clamp changes nothing
    assert cam.cx[::7] == pytest.approx(expected[:, 1], abs=1e-9)
    assert cam.cy[::7] == pytest.approx(expected[:, 2], abs=1e-9)
    assert np.all(cam.cx - 0.5 / cam.zoom >= -1e-9) and np.all(cam.cx + 0.5 / cam.zoom <= 1 + 1e-9)


@pytest.mark.parametrize("expr", ["__import__('os').system('id')", "t.real", "(lambda: 1)()", "t**9**9", "[t]",
                                  "open('x')", "sin(t, key=1)", "1 +"])
def test_the_camera_refuses_anything_but_arithmetic(expr: str) -> None:
    with pytest.raises(RenderError):
        evaluate_all(expr, np.arange(3.0))


def test_the_camera_clamps_a_plan_that_leaves_the_still() -> None:
    plan = MotionPlan(movement="m", mood="m", style="drift", zoom_expr="0.5", x_expr="2*t-1", y_expr="0.5")
    cam = camera_path(plan, 31, 30)
    assert np.all(cam.zoom == 1.0) and np.all(cam.cx == 0.5)  # at zoom 1 the only window is the whole still
