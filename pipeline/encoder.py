"""The render's video encoder: x264 on the CPU, or a GPU's H.264 encoder (NVENC, VA-API) when one works here.

VIDEO_ENCODER=auto tries each hardware encoder once per process with a tiny encode and keeps x264 when none
works (no GPU, no driver, every session taken); a render whose hardware encode fails is done again with x264.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline.ffmpeg import ffmpeg_exe
from pipeline.settings import EncoderChoice

VAAPI_DEVICE = Path("/dev/dri/renderD128")  # the first GPU's render node (Intel, AMD)
PROBE_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class Encoder:
    name: str  # ffmpeg's encoder
    before_inputs: tuple[str, ...] = ()  # global options (a device to open)
    upload: str = ""  # appended to the video filter chain: hands the frames to the GPU
    options: tuple[str, ...] = ()  # -c:v and its quality options

    @property
    def hardware(self) -> bool:
        return self.name != "libx264"


def x264(preset: str, crf: int, params: str) -> Encoder:
    return Encoder("libx264", options=("-c:v", "libx264", "-preset", preset, "-crf", str(crf),
                                       *(("-x264-params", params) if params else ()), "-pix_fmt", "yuv420p"))


def nvenc(crf: int) -> Encoder:
    # constant quality (-cq, NVENC's CRF) on the "medium" preset; it takes the piped yuv420p frames as they are
    return Encoder("h264_nvenc", options=("-c:v", "h264_nvenc", "-preset", "p4", "-rc", "vbr", "-cq", str(crf),
                                          "-b:v", "0", "-pix_fmt", "yuv420p"))


def vaapi(crf: int) -> Encoder:
    return Encoder("h264_vaapi", before_inputs=("-vaapi_device", str(VAAPI_DEVICE)), upload=",format=nv12,hwupload",
                   options=("-c:v", "h264_vaapi", "-rc_mode", "CQP", "-qp", str(crf)))


HARDWARE = {"h264_nvenc": nvenc, "h264_vaapi": vaapi}


@functools.cache
def why_not(name: str, ffmpeg: str | None = None) -> str | None:
    """None when `name` encodes here (a 0.2 s test picture); otherwise ffmpeg's reason, in one line."""
    if name == "h264_vaapi" and not VAAPI_DEVICE.exists():
        return f"no {VAAPI_DEVICE}"
    encoder = HARDWARE[name](23)
    cmd = [ffmpeg_exe(ffmpeg), "-hide_banner", "-nostdin", "-v", "error", *encoder.before_inputs,
           "-f", "lavfi", "-i", "color=c=gray:s=256x256:r=30:d=0.2", "-vf", "format=yuv420p" + encoder.upload,
           *encoder.options, "-f", "null", "-"]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=PROBE_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return f"the test encode took over {PROBE_TIMEOUT_SECONDS:.0f} s"
    if done.returncode == 0:
        return None
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    return lines[0].split("] ", 1)[-1] if lines else f"ffmpeg exited {done.returncode}"


def choose_encoder(choice: EncoderChoice, *, preset: str, crf: int, params: str,
                   ffmpeg: str | None = None) -> Encoder:
    """The encoder a render starts with: the one asked for, or with auto the first hardware one that works."""
    if choice == "libx264":
        return x264(preset, crf, params)
    if choice != "auto":
        return HARDWARE[choice](crf)  # asked for by name: no test encode; the render falls back if it fails
    for name, make in HARDWARE.items():
        if why_not(name, ffmpeg) is None:
            return make(crf)
    return x264(preset, crf, params)
