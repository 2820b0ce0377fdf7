"""Upscaling on ComfyUI: upscale_image.json for the still, upscale_video.json for the model's clip."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipeline.models import StyledImage
from pipeline.providers.comfyui.client import ComfyUIClient
from pipeline.providers.comfyui.run import IMAGE_SUFFIXES, VIDEO_SUFFIXES, execute, fetch_output, load_step_workflows
from pipeline.providers.results import check_video, upscaled_still
from pipeline.settings import Settings


def _even(value: int) -> int:
    return max(2, value // 2 * 2)


@dataclass
class ComfyUIUpscaler:
    settings: Settings
    name: str = "comfyui:upscale_video.json"

    def __post_init__(self) -> None:
        self.workflows = load_step_workflows(self.settings, ("upscale_image", "upscale_video"))
        self.client = ComfyUIClient(self.settings)

    def upscale_image(self, image: StyledImage, out_path: Path) -> StyledImage:
        """The still at 1/factor goes up, the model's detail comes back at the still's own size."""
        workflow = self.workflows["upscale_image"]
        self.name = workflow.label
        factor = max(1, self.settings.upscale_factor)
        small = out_path.with_name(out_path.stem + ".in.png")
        with Image.open(image.path) as img:
            img.convert("RGB").resize((max(1, image.width // factor), max(1, image.height // factor)),
                                      Image.Resampling.LANCZOS).save(small)
        try:
            entry = execute(self.client, workflow, {"width": image.width, "height": image.height, "seed": 0},
                            {"image": small})
        finally:
            small.unlink(missing_ok=True)
        raw = out_path.with_name(out_path.stem + ".model.img")
        fetch_output(self.client, workflow, entry, IMAGE_SUFFIXES, raw)
        return upscaled_still(raw, out_path, image, self.name)

    def upscale_video(self, video: Path, out_path: Path) -> Path:
        workflow = self.workflows["upscale_video"]
        self.name = workflow.label
        ffmpeg = self.settings.ffmpeg_binary
        info = check_video(video, self.name, ffmpeg)
        factor = max(1, self.settings.upscale_factor)
        fps = round(info.fps or self.settings.comfyui_video_fps)
        values = {"width": _even((info.width or 0) * factor), "height": _even((info.height or 0) * factor),
                  "fps": fps, "frames": round((info.duration or 0) * fps), "seconds": info.duration or 0, "seed": 0}
        entry = execute(self.client, workflow, values, {"video": video})
        fetch_output(self.client, workflow, entry, VIDEO_SUFFIXES, out_path)
        check_video(out_path, self.name, ffmpeg)
        return out_path
