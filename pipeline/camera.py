"""The camera: the motion plan's window over the still, drawn frame by frame as raw YUV 4:2:0 for the encoder.

Why here and not in an ffmpeg filter: `zoompan` crops at whole pixels and steps; `perspective` glides but
rebuilds a per-pixel lookup table every frame and resamples a 1.25x copy that `scale` then shrinks (~60 % of a
720x1280 render). The move is only ever a zoom and a pan (an axis-aligned window), so one bilinear
`cv2.warpAffine` per plane, straight from the 1.25x copy to the output size, draws each frame at sub-pixel
precision for a fraction of the cost (bench/run.py, docs/PERFORMANCE.md).
"""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from pipeline.errors import RenderError
from pipeline.ffmpeg import IMAGE_FORMATS, ffmpeg_exe, input_args
from pipeline.models import MotionPlan

OVERSAMPLE = 1.25  # the still's working copy, relative to the output: every plan zooms at most ~1.25x

# --- the plan's expressions, evaluated for every frame at once --------------------------------------------------

_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "clip": np.clip, "max": np.maximum, "min": np.minimum, "sin": np.sin, "cos": np.cos, "exp": np.exp,
}
_OPERATORS: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide,
}


def evaluate(expr: str, t: np.ndarray) -> np.ndarray:
    """The value of a plan expression (ffmpeg's syntax, the subset plan_motion writes) at every time in `t`.

    Walks the parsed tree instead of calling eval: the expressions travel through the run store and the API,
    so only numbers, `t`, the four operators and the functions above are accepted.
    """
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise RenderError(f"the camera path is not a valid expression: {expr[:80]!r}") from exc

    def walk(node: ast.AST) -> np.ndarray:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return np.asarray(float(node.value))
        if isinstance(node, ast.Name) and node.id == "t":
            return t
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](walk(node.left), walk(node.right))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
                and not node.keywords):
            return _FUNCTIONS[node.func.id](*(walk(a) for a in node.args))
        raise RenderError(f"the camera path uses something it may not: {ast.dump(node)[:80]}")

    with np.errstate(all="ignore"):
        return np.broadcast_to(walk(tree.body), t.shape).astype(np.float64)


@dataclass(frozen=True)
class CameraPath:
    """Per frame: zoom (>= 1) and the window's centre (0..1 of the still), clamped so it never leaves the still."""

    zoom: np.ndarray
    cx: np.ndarray
    cy: np.ndarray


def camera_path(motion: MotionPlan, frames: int, fps: int) -> CameraPath:
    t = np.arange(frames, dtype=np.float64) / fps
    zoom = np.nan_to_num(evaluate(motion.zoom_expr, t), nan=1.0, posinf=1.0, neginf=1.0)
    zoom = np.maximum(zoom, 1.0)
    half = 0.5 / zoom
    cx = np.clip(np.nan_to_num(evaluate(motion.x_expr, t), nan=0.5), half, 1 - half)
    cy = np.clip(np.nan_to_num(evaluate(motion.y_expr, t), nan=0.5), half, 1 - half)
    return CameraPath(zoom=zoom, cx=cx, cy=cy)


# --- the still, decoded once -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StillPlanes:
    """The still as BT.709 limited-range YUV 4:2:0 planes (the colours the encoder is told it gets)."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def working_size(still_w: int, still_h: int, width: int, height: int) -> tuple[int, int]:
    """OVERSAMPLE x the output, or the still's own size when it is smaller (never upscaled here)."""
    sw, sh = _even(width * OVERSAMPLE), _even(height * OVERSAMPLE)
    if still_w <= sw * 1.02:
        return _even(still_w), _even(still_h)
    return sw, sh


def load_still(path: Path, size: tuple[int, int], ffmpeg: str | None = None) -> StillPlanes:
    """Decode, resize (lanczos) and convert the still once, through ffmpeg, so its colour handling is the
    encoder's."""
    sw, sh = size
    cmd = [ffmpeg_exe(ffmpeg), "-hide_banner", "-nostdin", "-v", "error", *input_args(path, IMAGE_FORMATS),
           "-frames:v", "1",
           "-vf", f"scale={sw}:{sh}:flags=lanczos:out_color_matrix=bt709:out_range=tv,format=yuv420p",
           "-f", "rawvideo", "pipe:1"]
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    expected = sw * sh * 3 // 2
    if proc.returncode != 0 or len(proc.stdout) != expected:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise RenderError(f"the styled image could not be read: {tail[0] if tail else 'no frame'}")
    data = np.frombuffer(proc.stdout, dtype=np.uint8)
    y = data[: sw * sh].reshape(sh, sw)
    u = data[sw * sh: sw * sh * 5 // 4].reshape(sh // 2, sw // 2)
    v = data[sw * sh * 5 // 4:].reshape(sh // 2, sw // 2)
    return StillPlanes(y=y, u=u, v=v)


# --- drawing --------------------------------------------------------------------------------------------------------


def _window_matrix(zoom: float, cx: float, cy: float, src_w: int, src_h: int, out_w: int,
                   out_h: int) -> np.ndarray:
    """Output pixel -> source pixel (inverse map) for the window of 1/zoom of the source centred on cx, cy."""
    sx, sy = src_w / zoom / out_w, src_h / zoom / out_h
    left, top = cx * src_w - src_w / zoom / 2, cy * src_h - src_h / zoom / 2
    # pixel centres sit at +0.5: output centre (u + 0.5) lands on source centre (x + 0.5)
    return np.array([[sx, 0.0, left + 0.5 * sx - 0.5], [0.0, sy, top + 0.5 * sy - 0.5]])


def draw_frames(still: StillPlanes, path: CameraPath, width: int, height: int) -> Iterator[memoryview]:
    """Each frame of the move as one yuv420p buffer. The buffer is reused: consume it before the next."""
    frame = np.empty(width * height * 3 // 2, dtype=np.uint8)
    luma = width * height
    out_y = frame[:luma].reshape(height, width)
    out_u = frame[luma: luma * 5 // 4].reshape(height // 2, width // 2)
    out_v = frame[luma * 5 // 4:].reshape(height // 2, width // 2)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    sh, sw = still.y.shape
    for zoom, cx, cy in zip(path.zoom, path.cx, path.cy, strict=True):
        cv2.warpAffine(still.y, _window_matrix(zoom, cx, cy, sw, sh, width, height), (width, height), dst=out_y,
                       flags=flags, borderMode=cv2.BORDER_REPLICATE)
        chroma = _window_matrix(zoom, cx, cy, sw // 2, sh // 2, width // 2, height // 2)
        for src, dst in ((still.u, out_u), (still.v, out_v)):
            cv2.warpAffine(src, chroma, (width // 2, height // 2), dst=dst, flags=flags,
                           borderMode=cv2.BORDER_REPLICATE)
        yield memoryview(frame)


def write_frames(stream: BinaryIO, still: StillPlanes, path: CameraPath, width: int, height: int, *,
                 keep: int | None = None, on_kept: Callable[[np.ndarray], None] | None = None) -> None:
    """Every frame into `stream`; frame number `keep` is also handed (as RGB) to `on_kept`."""
    for index, frame in enumerate(draw_frames(still, path, width, height)):
        stream.write(frame)
        if index == keep and on_kept is not None:
            on_kept(yuv420_to_rgb(np.frombuffer(frame, dtype=np.uint8), width, height))


def yuv420_to_rgb(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """One BT.709 limited-range yuv420p frame as full-range RGB (what a player shows)."""
    luma = width * height
    y = frame[:luma].reshape(height, width).astype(np.float32)
    u = cv2.resize(frame[luma: luma * 5 // 4].reshape(height // 2, width // 2), (width, height),
                   interpolation=cv2.INTER_LINEAR).astype(np.float32)
    v = cv2.resize(frame[luma * 5 // 4:].reshape(height // 2, width // 2), (width, height),
                   interpolation=cv2.INTER_LINEAR).astype(np.float32)
    y = (y - 16.0) * (255.0 / 219.0)
    cb, cr = (u - 128.0) * (255.0 / 224.0), (v - 128.0) * (255.0 / 224.0)
    rgb = np.stack([y + 1.5748 * cr, y - 0.1873 * cb - 0.4681 * cr, y + 1.8556 * cb], axis=-1)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
