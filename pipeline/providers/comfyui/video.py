"""The clip on ComfyUI: video.json animates the still; with the clip's audio, lipsync.json makes it sing."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.models import StyledImage
from pipeline.providers.comfyui.client import ComfyUIClient
from pipeline.providers.comfyui.image import NEGATIVE_PROMPT, SIZE_STEP
from pipeline.providers.comfyui.run import VIDEO_SUFFIXES, execute, fetch_output, load_step_workflows
from pipeline.providers.results import check_video
from pipeline.settings import Settings


def frame_count(seconds: float, fps: int) -> int:
    """Frames for `seconds`, as 4n+1 (what Wan and most open video models take)."""
    return 4 * max(1, math.ceil(seconds * fps / 4)) + 1


def video_size(width: int, height: int, resolution: str) -> tuple[int, int]:
    """The still's shape with its short side at the resolution asked for (REMOTE_VIDEO_RESOLUTION, e.g. 480p)."""
    digits = "".join(c for c in resolution if c.isdigit())
    short = int(digits) if digits else 480
    scale = short / max(1, min(width, height))
    return (max(SIZE_STEP, round(width * scale / SIZE_STEP) * SIZE_STEP),
            max(SIZE_STEP, round(height * scale / SIZE_STEP) * SIZE_STEP))


def still_seed(path: Path) -> int:
    """The sampler's seed from the still itself: the same run makes the same clip (the step gets no rng)."""
    return zlib.crc32(path.read_bytes()) % 2**31


@dataclass
class ComfyUIVideoMaker:
    settings: Settings
    name: str = "comfyui:video.json"
    needs_audio_clip: bool = True  # run_video cuts the clip's audio for lip-sync runs

    def __post_init__(self) -> None:
        self.workflows = load_step_workflows(self.settings, ("video", "lipsync"))
        self.client = ComfyUIClient(self.settings)

    def make(self, image: StyledImage, prompt: str, *, duration: float, audio_clip: Path | None,
             out_path: Path, cut_points: Sequence[float] = ()) -> Path | None:
        workflow = self.workflows["lipsync" if audio_clip is not None else "video"]
        self.name = workflow.label
        # a lip-sync clip is as long as its audio; image-to-video models make a few seconds
        seconds = duration if audio_clip is not None else min(duration, self.settings.remote_video_seconds)
        fps = self.settings.comfyui_video_fps
        width, height = video_size(image.width, image.height, self.settings.remote_video_resolution)
        values = {"prompt": prompt, "negative_prompt": NEGATIVE_PROMPT, "seed": still_seed(image.path),
                  "width": width, "height": height, "fps": fps, "frames": frame_count(seconds, fps),
                  "seconds": seconds}
        uploads = {"image": image.path, **({"audio": audio_clip} if audio_clip is not None else {})}
        entry = execute(self.client, workflow, values, uploads)
        fetch_output(self.client, workflow, entry, VIDEO_SUFFIXES, out_path)
        check_video(out_path, self.name, self.settings.ffmpeg_binary)
        return out_path
