"""The camera path over the still: Ken Burns moves per template movement and mood, or audio-reactive motion.

A plan is three ffmpeg expressions of `t` (zoom, centre x, centre y); the renderer turns them into a
sub-pixel camera. Expressions stay compact (bounded number of terms) so ffmpeg parses them quickly.
"""

from __future__ import annotations

import math

from pipeline.models import AudioAnalysis, FaceBox, MotionPlan
from pipeline.templates import Mood, Movement, Template

MAX_PULSES = 48  # beat pulses in one expression (a 15 s clip at 150 BPM has 38)
MAX_KNOTS = 64  # points of the loudness envelope (4 per second for clips up to 16 s, fewer beyond)
ENVELOPE_HZ = 4.0
PULSE_SECONDS = 0.09  # a beat's zoom peaks this long after the beat, then decays (no jolt: it starts from 0)


def plan_motion(template: Template, *, mood: Mood, movement: Movement, face: FaceBox | None, src_width: int,
                src_height: int, duration: float, lipsync: bool, analysis: AudioAnalysis | None = None,
                clip_start: float = 0.0) -> MotionPlan:
    """The camera path for one clip of `duration` seconds over a src_width x src_height still."""
    energy = min(1.0, max(0.0, mood.energy))
    duration = max(0.5, duration)
    fx, fy = _target(template, face, src_width, src_height)
    if lipsync and analysis is not None:
        zoom, x, y = _audio_reactive(analysis, clip_start, duration, energy, fx, fy)
        return MotionPlan(movement=movement.prompt, mood=mood.name, style="audio-reactive", zoom_expr=zoom,
                          x_expr=x, y_expr=y, audio_reactive=True)
    zoom, x, y = camera_move(movement.style, energy, duration, fx, fy)
    return MotionPlan(movement=movement.prompt, mood=mood.name, style=movement.style, zoom_expr=zoom, x_expr=x,
                      y_expr=y, audio_reactive=False)


def _target(template: Template, face: FaceBox | None, width: int, height: int) -> tuple[float, float]:
    """Where the camera leans: the face's centre, else the template's anchor (0..1 of the still)."""
    if face is None or width <= 0 or height <= 0:
        return template.image.face_anchor
    return ((face.x + face.w / 2) / width, (face.y + face.h * 0.55) / height)


def _n(value: float) -> str:
    """A number for an expression: short, no exponent notation ffmpeg might misread."""
    text = f"{value:.5f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def _ease(duration: float) -> str:
    """Progress 0..1 over the clip: half linear, half smoothstep, so it never stands still at the start."""
    u = f"clip(t/{_n(duration)},0,1)"
    return f"(0.5*{u}+0.5*{u}*{u}*(3-2*{u}))"


def _toward(start: float, end: float, ease: str) -> str:
    return f"({_n(start)}+{_n(end - start)}*{ease})"


def _room(zoom: float) -> float:
    """How far the centre may sit from 0.5 at this zoom with the window still on the still."""
    return 0.5 - 0.5 / zoom


def _bounded(aim: float, swing: float, min_zoom: float) -> float:
    """The aim, pulled in so that aim +- swing stays on the still at the path's smallest zoom."""
    limit = max(0.0, _room(min_zoom) * 0.98 - swing)
    return 0.5 + min(max(aim - 0.5, -limit), limit)


def camera_move(style: str, energy: float, duration: float, fx: float, fy: float) -> tuple[str, str, str]:
    """Zoom, x and y expressions for one Ken Burns style; amplitude and speed grow with the mood's energy."""
    ease = _ease(duration)
    push = 0.07 + 0.16 * energy  # how far a push-in travels in zoom
    room_zoom = 1.10 + 0.08 * energy  # pans and tilts need the frame zoomed in to have somewhere to go
    # Aim at the face, but only partway: the full offset would slam the frame against the still's edge.
    aim_x, aim_y = 0.5 + (fx - 0.5) * 0.8, 0.5 + (fy - 0.5) * 0.8
    if style in ("push-in", "pull-out"):
        # The centre is a share of the room the zoom leaves, so the window never leaves the still.
        end_room = _room(1.0 + push)
        ox = min(max((aim_x - 0.5) / end_room, -0.95), 0.95) if end_room else 0.0
        oy = min(max((aim_y - 0.5) / end_room, -0.95), 0.95) if end_room else 0.0
        zoom = _toward(1.0, 1.0 + push, ease) if style == "push-in" else _toward(1.0 + push, 1.0, ease)
        room = f"(0.5-0.5/{zoom})"
        return zoom, f"(0.5+{_n(ox)}*{room})", f"(0.5+{_n(oy)}*{room})"
    if style in ("pan-left", "pan-right", "tilt-up", "tilt-down"):
        reach = _room(room_zoom) * (0.55 + 0.4 * energy)
        start, end = (0.5 + reach, 0.5 - reach) if style in ("pan-left", "tilt-up") else (0.5 - reach, 0.5 + reach)
        zoom = _toward(room_zoom, room_zoom + 0.03, ease)
        moving = _toward(start, end, ease)
        if style.startswith("pan"):
            return zoom, moving, _n(_bounded(0.5 + (fy - 0.5) * 0.6, 0.0, room_zoom))
        return zoom, _n(_bounded(0.5 + (fx - 0.5) * 0.6, 0.0, room_zoom)), moving
    if style == "handheld":
        # Several slow sines at unrelated rates read as a person holding a phone, not a machine.
        amp = 0.004 + 0.008 * energy
        wobble = 0.012 + 0.01 * energy
        min_zoom = room_zoom - 0.03 - wobble
        cx, cy = _bounded(aim_x, amp * 1.85, min_zoom), _bounded(aim_y, amp * 1.5, min_zoom)
        zoom = f"({_n(room_zoom - 0.03)}+{_n(wobble)}*sin(0.53*t+0.4))"
        x = f"({_n(cx)}+{_n(amp)}*sin(1.13*t+0.7)+{_n(amp * 0.6)}*sin(2.71*t+2.1)+{_n(amp * 0.25)}*sin(5.3*t))"
        y = f"({_n(cy)}+{_n(amp * 0.8)}*sin(0.91*t+1.9)+{_n(amp * 0.5)}*sin(2.23*t+0.3)+{_n(amp * 0.2)}*sin(4.7*t+1))"
        return zoom, x, y
    # drift: a slow figure over the still with a gentle breath of zoom
    speed = (0.6 + 0.8 * energy) * math.tau / max(duration, 4.0)
    breath = 0.02 + 0.02 * energy
    amp = _room(room_zoom - breath) * (0.35 + 0.3 * energy)
    cx, cy = _bounded(aim_x, amp, room_zoom - breath), _bounded(aim_y, amp * 0.5, room_zoom - breath)
    zoom = f"({_n(room_zoom)}+{_n(breath)}*sin({_n(speed * 0.7)}*t))"
    x = f"({_n(cx)}+{_n(amp)}*sin({_n(speed)}*t))"
    y = f"({_n(cy)}+{_n(amp * 0.5)}*sin({_n(speed * 0.5)}*t+1.2))"
    return zoom, x, y


# --- audio-reactive (the local stand-in for lip-sync) --------------------------------------------------------------


def clip_beats(analysis: AudioAnalysis, clip_start: float, duration: float) -> list[tuple[float, float]]:
    """(time in the clip, strength 0..1) of each beat inside the clip, at most MAX_PULSES (the strongest)."""
    hop = analysis.hop_seconds or 0.01
    beats: list[tuple[float, float]] = []
    for b in analysis.beats:
        rel = b - clip_start
        if 0.0 <= rel < duration - 0.05:
            i = min(len(analysis.onset) - 1, max(0, round(b / hop))) if analysis.onset else -1
            strength = analysis.onset[i] if i >= 0 else 1.0
            beats.append((rel, float(strength)))
    if len(beats) > MAX_PULSES:
        beats = sorted(sorted(beats, key=lambda b: -b[1])[:MAX_PULSES])
    top = max((s for _, s in beats), default=1.0) or 1.0
    return [(t, 0.45 + 0.55 * s / top) for t, s in beats]


def clip_envelope(analysis: AudioAnalysis, clip_start: float, duration: float) -> list[tuple[float, float]]:
    """The clip's loudness, smoothed, normalised to 0..1 and sampled at up to ENVELOPE_HZ (at most MAX_KNOTS)."""
    hop = analysis.hop_seconds or 0.01
    rms = analysis.rms
    if not rms:
        return [(0.0, 0.5), (duration, 0.5)]
    step = max(1.0 / ENVELOPE_HZ, duration / (MAX_KNOTS - 1))
    count = int(duration / step) + 1
    half = max(1, round(0.25 / hop))  # average over half a second: a sway, not a flicker
    values = []
    for k in range(count):
        centre = round((clip_start + k * step) / hop)
        window = rms[max(0, centre - half): max(0, min(len(rms), centre + half + 1))]
        values.append(sum(window) / len(window) if window else 0.0)
    lo, hi = min(values), max(values)
    span = hi - lo
    norm = [(v - lo) / span if span > 1e-6 else 0.5 for v in values]
    return [(k * step, v) for k, v in enumerate(norm)]


def piecewise_linear(points: list[tuple[float, float]]) -> str:
    """An expression of t through the points (times ascending), as a sum of ramps: one short term per point."""
    if len(points) == 1:
        return _n(points[0][1])
    slopes = [(v1 - v0) / (t1 - t0) for (t0, v0), (t1, v1) in zip(points, points[1:], strict=False)]
    terms = [_n(points[0][1] - slopes[0] * points[0][0]), f"{_n(slopes[0])}*t"]
    for (tk, _), before, after in zip(points[1:-1], slopes, slopes[1:], strict=False):
        change = after - before
        if abs(change) > 1e-4:
            terms.append(f"{_n(change)}*max(t-{_n(tk)},0)")
    terms.append(f"{_n(-slopes[-1])}*max(t-{_n(points[-1][0])},0)")  # flat after the last point
    return "(" + "+".join(terms).replace("+-", "-") + ")"


def beat_pulses(beats: list[tuple[float, float]], amplitude: float) -> str:
    """A sum of smooth pulses, one per beat: rises from 0, peaks PULSE_SECONDS later, decays."""
    if not beats:
        return "0"
    k = 1.0 / PULSE_SECONDS
    terms = []
    for bt, strength in beats:
        d = f"max(t-{_n(bt)},0)"
        terms.append(f"{_n(amplitude * strength * k * math.e)}*{d}*exp(-{_n(k)}*{d})")
    return "(" + "+".join(terms) + ")"


def _audio_reactive(analysis: AudioAnalysis, clip_start: float, duration: float, energy: float, fx: float,
                    fy: float) -> tuple[str, str, str]:
    """Zoom pulses on the clip's beats and a sway whose size follows the vocal/loudness envelope."""
    beats = clip_beats(analysis, clip_start, duration)
    envelope = piecewise_linear(clip_envelope(analysis, clip_start, duration))
    pulse = beat_pulses(beats, 0.010 + 0.016 * energy)
    drift = f"{_n(0.04 + 0.03 * energy)}*clip(t/{_n(duration)},0,1)"
    zoom = f"(1.08+{drift}+0.02*{envelope}+{pulse})"
    sway = 0.006 + 0.01 * energy
    aim_x = _bounded(0.5 + (fx - 0.5) * 0.8, sway, 1.08)
    aim_y = _bounded(0.5 + (fy - 0.5) * 0.8, sway * 0.4, 1.08)
    x = f"({_n(aim_x)}+{_n(sway)}*{envelope}*sin(1.7*t))"
    y = f"({_n(aim_y)}+{_n(sway * 0.4)}*{envelope}*sin(1.1*t+0.8))"
    return zoom, x, y
