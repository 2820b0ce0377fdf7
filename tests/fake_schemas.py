"""The documented input schemas of the remote models and calls we use, as data, and a validator for the fakes.

Written from the providers' pages (listed with each model in docs/PROVIDERS.md), independently of the client's
own limits (pipeline/providers/fal_models.py), so a request the client builds wrong is caught here. The fakes
are stricter than the services in one way: an unknown field is refused (fal ignores it), so a misspelt field
name fails a test instead of being silently dropped.
"""

from __future__ import annotations

import base64
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from pipeline.ffmpeg import ffmpeg_exe

SAFETY = ["1", "2", "3", "4", "5", "6"]
FAL_IMAGE_SIZES = ["square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"]
NANO_ASPECTS = ["auto", "21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16", "4:1", "1:4", "8:1",
                "1:8"]
LTX_FPS = 25  # frames = audio seconds x fps when match_audio_length is on (the default)

_NANO_COMMON: dict[str, dict] = {
    "prompt": {"type": "string", "required": True},
    "num_images": {"type": "integer", "min": 1, "max": 4},
    "aspect_ratio": {"type": "string", "enum": NANO_ASPECTS},
    "resolution": {"type": "string", "enum": ["0.5K", "1K", "2K", "4K"]},
    "output_format": {"type": "string", "enum": ["jpeg", "png", "webp"]},
    "seed": {"type": "integer"},
    "safety_tolerance": {"type": "string", "enum": SAFETY},
    "limit_generations": {"type": "boolean"},
    "enable_web_search": {"type": "boolean"},
    "thinking_level": {"type": "string", "enum": ["minimal", "high"]},
    "sync_mode": {"type": "boolean"},
}
_LTX_A2V: dict[str, dict] = {
    "prompt": {"type": "string", "required": True},
    "audio_url": {"type": "file", "required": True, "media": "audio"},
    "image_url": {"type": "file", "media": "image"},
    "end_image_url": {"type": "file", "media": "image"},
    "match_audio_length": {"type": "boolean"},
    "num_frames": {"type": "integer", "min": 9, "max": 481},
    "video_size": {"type": "size", "enum": ["auto", *FAL_IMAGE_SIZES]},
    "generate_audio": {"type": "boolean"},
    "use_multiscale": {"type": "boolean"},
    "seed": {"type": "integer"},
    "negative_prompt": {"type": "string"},
    "enable_safety_checker": {"type": "boolean"},
}
_SEEDVR: dict[str, dict] = {
    "upscale_mode": {"type": "string", "enum": ["factor", "target"]},
    "upscale_factor": {"type": "number", "min": 1, "max": 10},
    "target_resolution": {"type": "string", "enum": ["720p", "1080p", "1440p", "2160p"]},
    "seed": {"type": "integer"},
    "noise_scale": {"type": "number", "min": 0, "max": 1},
}

FAL_SCHEMAS: dict[str, dict[str, Any]] = {
    "fal-ai/nano-banana-2/edit": {"fields": {
        **_NANO_COMMON,
        "image_urls": {"type": "array", "required": True, "min": 1, "max": 14,
                       "items": {"type": "file", "media": "image"}},
    }},
    "fal-ai/nano-banana-2": {"fields": _NANO_COMMON},
    "fal-ai/veo3.1/fast/image-to-video": {"fields": {
        "prompt": {"type": "string", "required": True},
        "image_url": {"type": "file", "required": True, "media": "image"},
        "aspect_ratio": {"type": "string", "enum": ["auto", "16:9", "9:16"]},
        "duration": {"type": "string", "enum": ["4s", "6s", "8s"]},
        "negative_prompt": {"type": "string"},
        "resolution": {"type": "string", "enum": ["720p", "1080p", "4k"]},
        "generate_audio": {"type": "boolean"},
        "seed": {"type": "integer"},
        "auto_fix": {"type": "boolean"},
        "safety_tolerance": {"type": "string", "enum": SAFETY},
    }},
    # frames = seconds x 25 must lie in num_frames' range (9..481): 0.36 s to 19.24 s of audio
    "fal-ai/ltx-2-19b/audio-to-video": {"fields": _LTX_A2V, "audio_seconds": (9 / LTX_FPS, 481 / LTX_FPS)},
    "fal-ai/ltx-2/audio-to-video": {"fields": _LTX_A2V, "audio_seconds": (2.0, 10.0)},
    "fal-ai/seedvr/upscale/image": {"fields": {
        "image_url": {"type": "file", "required": True, "media": "image"}, **_SEEDVR,
        "output_format": {"type": "string", "enum": ["png", "jpg", "webp"]},
    }},
    "fal-ai/seedvr/upscale/video": {"fields": {
        "video_url": {"type": "file", "required": True, "media": "video"}, **_SEEDVR,
        "output_format": {"type": "string", "enum": ["X264 (.mp4)", "VP9 (.webm)", "PRORES4444 (.mov)",
                                                     "GIF (.gif)"]},
        "output_quality": {"type": "string", "enum": ["low", "medium", "high", "maximum"]},
        "output_write_mode": {"type": "string", "enum": ["fast", "balanced", "small"]},
    }},
    "fal-ai/whisper": {"fields": {
        "audio_url": {"type": "file", "required": True, "media": "audio"},
        "task": {"type": "string", "enum": ["transcribe", "translate"]},
        "language": {"type": "string", "pattern": r"^[a-z]{2,3}$"},
        "diarize": {"type": "boolean"},
        "chunk_level": {"type": "string", "enum": ["none", "segment", "word"]},
        "version": {"type": "string", "enum": ["3"]},
        "batch_size": {"type": "integer", "min": 1, "max": 64},
        "prompt": {"type": "string"},
        "num_speakers": {"type": "integer", "min": 1},
    }},
}

# OpenAI: the JSON body of chat completions and image generations, the multipart fields of the other two.
OPENAI_SCHEMAS: dict[str, dict[str, dict]] = {
    "chat": {
        "model": {"type": "string", "required": True},
        "messages": {"type": "array", "required": True, "min": 1, "items": {"type": "object"}},
        "seed": {"type": "integer"},
        "temperature": {"type": "number", "min": 0, "max": 2},
        "response_format": {"type": "object"},
    },
    "transcriptions": {
        "file": {"type": "upload", "required": True, "max_bytes": 25 * 1024 * 1024},
        "model": {"type": "string", "required": True},
        "response_format": {"type": "string", "enum": ["json", "text", "srt", "verbose_json", "vtt"]},
        "timestamp_granularities[]": {"type": "string", "enum": ["word", "segment"], "many": True},
        "language": {"type": "string"},
        "prompt": {"type": "string"},
        "temperature": {"type": "number", "min": 0, "max": 1},
    },
    "image_edit": {
        "image": {"type": "upload", "required": True, "max_bytes": 50 * 1024 * 1024},
        "prompt": {"type": "string", "required": True},
        "model": {"type": "string"},
        "size": {"type": "string", "enum": ["1024x1024", "1536x1024", "1024x1536", "auto"]},
        "n": {"type": "integer", "min": 1, "max": 10},
        "quality": {"type": "string", "enum": ["low", "medium", "high", "auto"]},
    },
    "image_generation": {
        "prompt": {"type": "string", "required": True},
        "model": {"type": "string"},
        "size": {"type": "string", "enum": ["1024x1024", "1536x1024", "1024x1536", "auto"]},
        "n": {"type": "integer", "min": 1, "max": 10},
        "quality": {"type": "string", "enum": ["low", "medium", "high", "auto"]},
    },
}

_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}


def _error(field: str, msg: str, kind: str) -> dict:
    return {"loc": ["body", field], "msg": msg, "type": kind}


def decode_file(value: str) -> bytes | None:
    """A data URI's bytes; None for an http(s) URL (not fetched here)."""
    header, _, payload = value.partition(",")
    return base64.b64decode(payload, validate=True) if header.endswith(";base64") else None


def media_seconds(data: bytes) -> float | None:
    """A media file's duration, decoded by ffmpeg (None when it does not decode)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.bin"
        path.write_bytes(data)
        done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-f", "null", "-"],
                              capture_output=True, text=True, timeout=60)
    times = re.findall(r"time=(\d+):(\d+):([\d.]+)", done.stderr)
    if done.returncode != 0 or not times:
        return None
    h, m, s = times[-1]
    return int(h) * 3600 + int(m) * 60 + float(s)


def check_value(name: str, spec: dict, value: Any) -> list[dict]:
    kind = spec["type"]
    if kind == "file":
        if not isinstance(value, str) or not (value.startswith(("http://", "https://"))
                                              or re.match(r"^data:[\w.+-]+/[\w.+-]+;base64,", value)):
            return [_error(name, "Input should be a URL or a base64 data URI", "url_parsing")]
        try:
            decode_file(value)
        except ValueError:
            return [_error(name, "The data URI is not valid base64", "value_error")]
        return []
    if kind == "size":
        if isinstance(value, dict):
            ok = all(isinstance(value.get(k), int) and 64 <= value[k] <= 4096 for k in ("width", "height"))
            return [] if ok else [_error(name, "width and height must be integers from 64 to 4096", "value_error")]
        kind = "string"
    expected = _TYPES[kind]
    if not isinstance(value, expected) or (kind in ("integer", "number") and isinstance(value, bool)):
        return [_error(name, f"Input should be a valid {kind}", f"{kind}_type")]
    errors: list[dict] = []
    if "enum" in spec and value not in spec["enum"]:
        allowed = ", ".join(repr(v) for v in spec["enum"])
        errors.append(_error(name, f"Input should be {allowed}", "enum"))
    if "pattern" in spec and not re.match(spec["pattern"], value):
        errors.append(_error(name, f"String should match pattern '{spec['pattern']}'", "string_pattern_mismatch"))
    size = len(value) if kind == "array" else value if kind in ("integer", "number") else None
    if size is not None and "min" in spec and size < spec["min"]:
        errors.append(_error(name, f"Input should be greater than or equal to {spec['min']}", "greater_than_equal"))
    if size is not None and "max" in spec and size > spec["max"]:
        errors.append(_error(name, f"Input should be less than or equal to {spec['max']}", "less_than_equal"))
    if kind == "array" and "items" in spec:
        for i, item in enumerate(value):
            errors += check_value(f"{name}.{i}", spec["items"], item)
    return errors


def validate(fields: dict[str, dict], body: Any) -> list[dict]:
    """FastAPI-shaped validation errors (what fal answers with a 422) for a JSON body; [] when it is valid."""
    if not isinstance(body, dict):
        return [{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}]
    errors = [_error(n, "Field required", "missing") for n, s in fields.items() if s.get("required") and n not in body]
    errors += [_error(n, "Extra inputs are not permitted", "extra_forbidden") for n in body if n not in fields]
    for name, value in body.items():
        if name in fields:
            errors += check_value(name, fields[name], value)
    return errors


def validate_fal(model: str, body: Any) -> list[dict]:
    schema = FAL_SCHEMAS.get(model)
    if schema is None:
        return [{"loc": ["path"], "msg": f"Application '{model}' not found", "type": "not_found"}]
    errors = validate(schema["fields"], body)
    if not errors and "audio_seconds" in schema:
        low, high = schema["audio_seconds"]
        data = decode_file(body["audio_url"])
        seconds = media_seconds(data) if data is not None else None
        if data is not None and seconds is None:
            errors.append(_error("audio_url", "The audio could not be decoded", "value_error"))
        elif seconds is not None and not low <= seconds <= high:
            errors.append(_error("audio_url", f"Audio duration must be between {low:g} and {high:g} seconds, "
                                 f"got {seconds:.2f}", "value_error"))
    return errors


def validate_openai_form(route: str, fields: dict[str, list[str]], files: dict[str, bytes]) -> str | None:
    """The first problem with a multipart request (OpenAI answers 400 with it), or None."""
    schema = OPENAI_SCHEMAS[route]
    for name, spec in schema.items():
        present = name in files if spec["type"] == "upload" else name in fields
        if spec.get("required") and not present:
            return f"Missing required parameter: '{name}'."
    for name in list(fields) + list(files):
        if name not in schema:
            return f"Unrecognized request argument supplied: {name}"
    for name, values in fields.items():
        spec = schema[name]
        if len(values) > 1 and not spec.get("many"):
            return f"'{name}' was given more than once."
        for raw in values:
            value: Any = raw
            if spec["type"] in ("integer", "number"):
                try:
                    value = int(raw) if spec["type"] == "integer" else float(raw)
                except ValueError:
                    return f"Invalid type for '{name}': expected {spec['type']}, got {raw!r}."
            problems = check_value(name, spec, value)
            if problems:
                return f"Invalid value for '{name}': {problems[0]['msg']} (got {raw!r})."
    for name, data in files.items():
        if len(data) > schema[name].get("max_bytes", 1 << 62):
            return f"'{name}' is larger than {schema[name]['max_bytes'] // (1024 * 1024)} MB."
    return None
