"""Sample frames of each template, made from the demo artist by the local image step and cached on disk."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

from pipeline.errors import StudioError
from pipeline.settings import DEMO_ARTIST_DIR, PROJECT_ROOT, Settings
from pipeline.templates import Template

SAMPLE_WIDTH, SAMPLE_HEIGHT = 360, 640
SAMPLE_SEED = 7


IMAGE_STEP = PROJECT_ROOT / "pipeline" / "make_image.py"


def sample_key(template: Template) -> str:
    """Changes whenever the template's image part or the image step changes, so the frame is never stale."""
    digest = hashlib.sha256(template.image.model_dump_json().encode("utf-8"))
    if IMAGE_STEP.is_file():
        digest.update(IMAGE_STEP.read_bytes())
    return digest.hexdigest()[:12]


def sample_path(template: Template, settings: Settings) -> Path:
    return settings.cache_dir / "samples" / f"{template.id}-{sample_key(template)}.jpg"


def cached_sample(template: Template, settings: Settings) -> Path | None:
    path = sample_path(template, settings)
    return path if path.is_file() else None


def render_sample(template: Template, settings: Settings) -> Path | None:
    """The template's sample frame (made once); None when the image step cannot make one here."""
    path = sample_path(template, settings)
    if path.is_file():
        return path
    try:
        from pipeline.make_image import make_image
    except ImportError:
        return None
    face = DEMO_ARTIST_DIR / "context" / "images" / "face-guide.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.jpg")
    try:
        image = make_image(face if template.image.uses_face_guide else None, template, width=SAMPLE_WIDTH,
                           height=SAMPLE_HEIGHT, rng=random.Random(SAMPLE_SEED), out_path=tmp)
        os.replace(image.path, path)
    except (StudioError, OSError):
        return None
    finally:
        tmp.unlink(missing_ok=True)
    return path
