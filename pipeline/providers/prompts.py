"""The prompts remote image models get, from the template's scene and style rules."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.templates import Template


def image_prompt(template: Template, *, reference: bool = True) -> str:
    """The template's scene and style rules, written for an image model that edits the reference photo."""
    rules = template.image.style_rules
    parts = [template.image.prompt]
    for name, value in (("Camera", rules.camera), ("Environment", rules.environment), ("Subject", rules.subject),
                        ("Realism", rules.realism)):
        if value:
            parts.append(f"{name}: {value}.")
    parts.append("Vertical 9:16 framing.")
    if reference:
        parts.append("Keep the person's face and identity exactly as in the reference photo.")
    return " ".join(parts)
