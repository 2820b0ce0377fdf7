"""The caption as a picture layer: the ASS script drawn once by libass, laid over the video by ffmpeg's overlay and
over the poster here. libass on every frame cost ~0.7 s of a 15 s render; once, it costs ~0.1 s."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.caption_ass import caption_fade
from pipeline.errors import RenderError
from pipeline.ffmpeg import escape_filter_value, ffmpeg_exe


@dataclass(frozen=True)
class CaptionLayer:
    """The caption drawn once: an RGBA image cropped to its ink, where it sits, and how long it fades."""

    path: Path
    x: int
    y: int
    fade: float
    ink: np.ndarray  # the same image in memory (straight-alpha RGBA, float32), for the poster


def rasterise_caption(ass_path: Path, fonts_dir: Path, *, width: int, height: int, duration: float, out: Path,
                      ffmpeg: str | None = None) -> CaptionLayer | None:
    """The ASS caption drawn by libass once, mid-clip (fully faded in), onto a transparent frame; saved cropped to
    its ink (even offsets, for 4:2:0). None when the caption draws nothing."""
    at = max(0.0, duration / 2)
    graph = (f"color=c=black@0:s={width}x{height}:r=25:d=0.04,format=rgba,setpts=PTS+{at:.3f}/TB,"
             f"ass=filename={escape_filter_value(str(ass_path))}:fontsdir={escape_filter_value(str(fonts_dir))}"
             ":alpha=1")
    cmd = [ffmpeg_exe(ffmpeg), "-hide_banner", "-nostdin", "-v", "error", "-f", "lavfi", "-i", graph,
           "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgba", "pipe:1"]
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    if proc.returncode != 0 or len(proc.stdout) != width * height * 4:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise RenderError(f"the caption could not be drawn: {tail[0] if tail else 'no frame'}")
    rgba = np.frombuffer(proc.stdout, dtype=np.uint8).reshape(height, width, 4)
    ys, xs = np.nonzero(rgba[..., 3])
    if not len(xs):
        return None
    x0, y0 = int(xs.min()) // 2 * 2, int(ys.min()) // 2 * 2
    x1, y1 = min(width, (int(xs.max()) + 2) // 2 * 2), min(height, (int(ys.max()) + 2) // 2 * 2)
    ink = rgba[y0:y1, x0:x1].astype(np.float32)
    # libass blends onto the transparent frame, leaving colour premultiplied by alpha; overlay wants it straight
    alpha = ink[..., 3:4]
    ink[..., :3] = np.where(alpha > 0, ink[..., :3] * 255.0 / np.maximum(alpha, 1.0), 0.0)
    ink = np.clip(ink + 0.5, 0, 255).astype(np.uint8)
    Image.fromarray(ink, "RGBA").save(out, compress_level=1)
    return CaptionLayer(path=out, x=x0, y=y0, fade=caption_fade(duration), ink=ink.astype(np.float32))


def with_caption(rgb: np.ndarray, caption: CaptionLayer | None) -> np.ndarray:
    """The frame with the caption (fully faded in) laid over it, as the overlay filter lays it in the video."""
    if caption is None:
        return rgb
    ink = caption.ink
    h, w = min(ink.shape[0], rgb.shape[0] - caption.y), min(ink.shape[1], rgb.shape[1] - caption.x)
    alpha = ink[:h, :w, 3:4] / 255.0
    region = rgb[caption.y: caption.y + h, caption.x: caption.x + w].astype(np.float32)
    out = rgb.copy()
    out[caption.y: caption.y + h, caption.x: caption.x + w] = np.clip(
        region * (1 - alpha) + ink[:h, :w, :3] * alpha + 0.5, 0, 255).astype(np.uint8)
    return out
