"""Which picture of the artist a run starts from: the first given image that shows a face, else the
artist's face guide."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from pipeline.artists import checked_face_guide
from pipeline.detect_face import detect_face
from pipeline.errors import BadInput, FetchError
from pipeline.fetch import Fetcher
from pipeline.image_file import open_image
from pipeline.models import Artist


def load_checked_image(path: Path, source: str) -> None:
    """Make sure a file is an image Pillow can decode (content, not extension, decides)."""
    try:
        with open_image(path, source) as img:  # the pixel limit, from the header, before anything is decoded
            img.verify()
    except BadInput as exc:
        raise FetchError(exc.message, field=["images"]) from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError, SyntaxError):
        raise FetchError(f"{source} is not an image that can be decoded", field=["images"]) from None


def resolve_image(spec: str, fetcher: Fetcher, uploads_dir: Path) -> Path:
    """A URL is fetched; a local path is accepted only from the uploads folder (the UI's uploads)."""
    if "://" in spec:
        path = fetcher.fetch(spec, field_name="images")
        try:
            load_checked_image(path, spec)
        except FetchError:
            path.unlink(missing_ok=True)  # a refused download is not kept (nor served from the cache next time)
            raise
        return path
    path = Path(spec).resolve()
    if uploads_dir.resolve() not in path.parents or not path.is_file():
        raise BadInput(f"{spec} is not an uploaded image", field=["images"])
    load_checked_image(path, spec)
    return path


def choose_face_guide(artist: Artist, images: list[str], fetcher: Fetcher, uploads_dir: Path,
                      *, needs_face: bool = True) -> Path | None:
    """The first of `images` with a face, else the artist's face-guide.png; None when the template needs none."""
    if not needs_face:
        return None
    checked: list[Path] = []
    for spec in images:
        path = resolve_image(spec, fetcher, uploads_dir)
        checked.append(path)
        if detect_face(path) is not None:
            return path
    guide = checked_face_guide(artist)  # a file inside the workspace, checked like any other image
    if guide is not None:
        load_checked_image(guide, "The artist's face guide")
        return guide
    if checked:
        # No face found anywhere; the caller's own first image is still the best guide we have.
        return checked[0]
    raise BadInput("The artist has no face guide: add context/images/face-guide.png or pass `images`",
                   field=["images"])
