"""The scene still on ComfyUI: image.json edits the face guide into it, text_to_image.json makes it from the prompt."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.models import StyledImage
from pipeline.providers.comfyui.client import ComfyUIClient
from pipeline.providers.comfyui.run import IMAGE_SUFFIXES, execute, fetch_output, load_step_workflows
from pipeline.providers.prompts import image_prompt
from pipeline.providers.results import check_image, fit_still, styled_from_file
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.templates import Template

NEGATIVE_PROMPT = "blurry, deformed face, extra fingers, watermark, text, logo, low quality"
SIZE_STEP = 16  # image models work in latents of 8 or 16 pixels
MODEL_PIXELS = 1024 * 1024  # open image models are trained at about one megapixel; the still is resized after


def model_size(width: int, height: int) -> tuple[int, int]:
    """The frame's shape at no more than MODEL_PIXELS, in whole latent steps."""
    scale = min(1.0, (MODEL_PIXELS / max(1, width * height)) ** 0.5)
    return (max(SIZE_STEP, int(width * scale) // SIZE_STEP * SIZE_STEP),
            max(SIZE_STEP, int(height * scale) // SIZE_STEP * SIZE_STEP))


@dataclass
class ComfyUIImageMaker:
    settings: Settings
    name: str = "comfyui:image.json"

    def __post_init__(self) -> None:
        self.workflows = load_step_workflows(self.settings, ("image", "text_to_image"))
        self.client = ComfyUIClient(self.settings)

    def make(self, face_guide: Path | None, template: Template, *, width: int, height: int, rng: random.Random,
             out_path: Path) -> StyledImage:
        workflow = self.workflows["image" if face_guide is not None else "text_to_image"]
        self.name = workflow.label
        model_w, model_h = model_size(width, height)
        values = {"prompt": image_prompt(template, reference=face_guide is not None),
                  "negative_prompt": NEGATIVE_PROMPT, "seed": rng.randrange(2**31), "width": model_w,
                  "height": model_h}
        entry = execute(self.client, workflow, values, {"image": face_guide} if face_guide else {})
        raw = out_path.with_name(out_path.stem + ".model.img")
        fetch_output(self.client, workflow, entry, IMAGE_SUFFIXES, raw)
        check_image(raw, self.name)
        fit_still(raw, out_path, width, height)
        raw.unlink(missing_ok=True)
        return styled_from_file(out_path, width, height, self.name)
