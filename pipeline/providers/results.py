"""Remote results: inputs sent as data URIs, results fetched within the fetch limits and decoded before use."""

from __future__ import annotations

import base64
import mimetypes
import shutil
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.errors import BadInput, FetchError, ProviderError
from pipeline.fetch import Fetcher, limits_from_settings
from pipeline.ffmpeg import MediaInfo, probe
from pipeline.image_file import open_image
from pipeline.models import FaceBox, StyledImage
from pipeline.providers.http_retries import malformed

MIN_IMAGE_SIDE = 64  # anything smaller is not a usable result


def data_uri(path: Path, mime: str | None = None) -> str:
    """A file as a base64 data URI (how fal takes inputs without a separate upload)."""
    mime = mime or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def check_image(path: Path, label: str) -> tuple[int, int]:
    """The result must decode as an image of a usable size."""
    try:
        with open_image(path, label) as img:  # the one pixel limit, before decoding
            img.load()
            size = img.size
    except BadInput as exc:
        raise malformed(label, exc.message) from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError):
        raise malformed(label, "the returned image could not be decoded") from None
    if min(size) < MIN_IMAGE_SIDE:
        raise malformed(label, f"the returned image is only {size[0]}x{size[1]}")
    return size


def check_video(path: Path, label: str, ffmpeg: str | None) -> MediaInfo:
    """The result must be a decodable video with frames and a duration."""
    try:
        info = probe(path, ffmpeg)
    except BadInput:
        info = None
    if info is None or not info.has_video or not info.duration or not info.width:
        raise malformed(label, "the returned video could not be decoded")
    if min(info.width, info.height or 0) < MIN_IMAGE_SIDE:
        raise malformed(label, f"the returned video is only {info.width}x{info.height}")
    return info


def check_audio(path: Path, label: str, ffmpeg: str | None) -> float:
    """The seconds of audio a file holds (what a lip-sync model will hear)."""
    try:
        info = probe(path, ffmpeg)
    except BadInput:
        info = None
    if info is None or not info.has_audio or not info.duration:
        raise ProviderError(f"{label}: the clip's audio could not be read")
    return float(info.duration)


class ResultDownloader:
    """Remote results come back as URLs: fetched within the fetch limits, then moved where the step wants them."""

    def __init__(self, settings) -> None:  # noqa: ANN001 - Settings
        self.fetcher = Fetcher(settings.cache_dir / "remote-results", limits_from_settings(settings))

    def download(self, url: str, out_path: Path, label: str) -> Path:
        if url.startswith("data:"):
            header, _, payload = url.partition(",")
            try:
                data = base64.b64decode(payload) if header.endswith(";base64") else payload.encode()
            except ValueError:
                raise malformed(label, "the returned data URI is not valid base64") from None
            out_path.write_bytes(data)
            return out_path
        try:
            cached = self.fetcher.fetch(url, field_name="result", suffix=Path(url.split("?", 1)[0]).suffix[:8])
        except FetchError as exc:
            raise ProviderError(f"{label}: its result could not be downloaded: {exc.message}",
                                transient=True) from None
        shutil.copyfile(cached, out_path)
        return out_path


def fit_still(src: Path, out_path: Path, width: int, height: int) -> None:
    """Crop a model's image to the frame's aspect ratio (centred) and size it to width x height."""
    with Image.open(src) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
        fitted = ImageOps.fit(img, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.4))
    fitted.save(out_path, "JPEG", quality=92)


def upscaled_still(raw: Path, out_path: Path, image: StyledImage, label: str) -> StyledImage:
    """A model's upscale of `image`, checked, fitted to the frame and recorded as the image's upscale (`raw` goes)."""
    check_image(raw, label)
    fit_still(raw, out_path, image.width, image.height)
    raw.unlink(missing_ok=True)
    return StyledImage(path=out_path, width=image.width, height=image.height, face=image.face,
                       provider=f"{image.provider}, upscaled by {label}")


def styled_from_file(path: Path, width: int, height: int, provider: str) -> StyledImage:
    """A still made elsewhere, with its face found here (the camera motion aims at it)."""
    from pipeline.detect_face import detect_face

    face: FaceBox | None = detect_face(path)
    return StyledImage(path=path, width=width, height=height, face=face, provider=provider)
