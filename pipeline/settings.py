"""The one settings object, read from the environment and `.env`, passed down to whoever needs it."""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = PROJECT_ROOT / "assets"
TEMPLATES_DIR = ASSETS_DIR / "templates"
FONTS_DIR = ASSETS_DIR / "fonts"
DEMO_ARTIST_DIR = ASSETS_DIR / "demo-artist"

ProviderChoice = Literal["local", "openai", "fal", "comfyui", "auto"]
# Size caps of the caches under DATA_DIR (MB): downloads, provider results, analyses, transcripts, the UI's copies
# of stored outputs and template samples, the UI's uploads, and the artists' repository clones.
# CACHE_MAX_MB='{"downloads": 500}' changes one of them.
DEFAULT_CACHE_MAX_MB = {"cache/downloads": 2048, "cache/remote-results": 2048, "cache/analysis": 256,
                        "cache/transcripts": 256, "cache/outputs": 2048, "cache/samples": 64, "uploads": 2048,
                        "workspaces": 8192}
EncoderChoice = Literal["auto", "libx264", "h264_nvenc", "h264_vaapi"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Where things live
    data_dir: Path = Path("./data")
    artists_dir: Path | None = None  # default: DATA_DIR/artists
    include_demo_artist: bool = True

    # ffmpeg: the binary shipped by imageio-ffmpeg unless one is configured
    ffmpeg_binary: str | None = None

    # Output
    output_width: int = 720
    output_height: int = 1280
    fps: int = 30
    x264_preset: str = "veryfast"
    x264_crf: int = 20
    # On top of the preset, for what we encode (a still moving slowly): the fastest sub-pixel refinement and no
    # sub-partitions cut x264's CPU by a third at the same SSIM/PSNR, for ~10 % more bytes; a fixed B-frame
    # pattern, no weighted B prediction, diamond search and CAVLC take another 6 % off the whole run at the same
    # SSIM for ~5 % more bytes (docs/PERFORMANCE.md).
    x264_params: str = "subme=1:partitions=none:b-adapt=0:weightb=0:me=dia:cabac=0"
    # auto: a GPU's H.264 encoder (NVENC, then VA-API) when a test encode shows it works here, else x264;
    # a hardware encode that fails is done again with x264 (pipeline/encoder.py)
    video_encoder: EncoderChoice = "auto"
    audio_bitrate: str = "160k"
    loudness_lufs: float = -14.0
    clip_seconds: float | None = None  # overrides every template's clip length (previews, tests)

    # Which provider does each step: local, openai, fal, comfyui, or auto (openai/fal when its key is set, else
    # local; auto never picks comfyui, whose workflows need the user's own models)
    transcribe_provider: ProviderChoice = "local"
    caption_provider: ProviderChoice = "local"
    image_provider: ProviderChoice = "local"
    video_provider: ProviderChoice = "local"
    upscale_provider: ProviderChoice = "local"

    # Remote providers: keys, endpoints and model names (models retire, so none is a literal in code)
    openai_api_key: str | None = None
    openai_base_url: str | None = None  # any OpenAI-compatible server (e.g. a local LLM server)
    openai_caption_model: str = "gpt-4o-mini"
    openai_transcribe_model: str = "whisper-1"
    openai_image_model: str = "gpt-image-2"
    openai_image_size: str = "1024x1536"  # portrait; cropped to 9:16 here
    fal_key: str | None = None
    fal_base_url: str = "https://queue.fal.run"
    fal_image_model: str = "fal-ai/nano-banana-2/edit"
    fal_text_to_image_model: str = "fal-ai/nano-banana-2"  # templates that use no face guide
    fal_video_model: str = "fal-ai/veo3.1/fast/image-to-video"
    fal_lipsync_model: str = "fal-ai/ltx-2-19b/audio-to-video"
    fal_upscale_image_model: str = "fal-ai/seedvr/upscale/image"
    fal_upscale_video_model: str = "fal-ai/seedvr/upscale/video"
    fal_transcribe_model: str = "fal-ai/whisper"
    remote_video_seconds: int = 8  # what the image-to-video model is asked for
    remote_video_resolution: str = "720p"
    remote_aspect_ratio: str = "9:16"
    upscale_factor: int = 2
    provider_timeout_seconds: float = 600.0  # the longest one remote step may take (a request, or a queued job)
    provider_retries: int = 3  # extra tries on 429, 5xx and time-outs
    provider_backoff_seconds: float = 2.0  # first wait between tries; doubles each time
    provider_poll_seconds: float = 2.0  # how often a queued job's status is asked
    fallback_to_local: bool = False  # a failed remote step runs locally instead, and the run says so
    fal_max_in_flight: int = 10  # fal jobs one consumer has submitted and not yet fetched (fal rate-limits)
    openai_max_in_flight: int = 10  # OpenAI requests one consumer has open at once
    # A provider's clip shorter than the video: `end` ends the video with the clip (as the original does);
    # `chain` asks for a second clip from the first one's last frame and cuts it on a beat. Never a loop.
    remote_video_fill: Literal["end", "chain"] = "end"
    # A lip-sync clip longer than the model takes: `segments` sends pieces that fit, cut at lyric-line or beat
    # boundaries and joined (the song's audio stays whole); `shorten` cuts the clip to the model's limit.
    remote_lipsync_long: Literal["segments", "shorten"] = "segments"

    # A self-hosted ComfyUI server (the user's own: its host is allowed even on a private address)
    comfyui_url: str | None = None  # e.g. http://127.0.0.1:8188
    comfyui_headers: dict[str, str] = Field(default_factory=dict)  # JSON, e.g. {"Authorization": "Bearer ..."}
    comfyui_workflows_dir: Path = ASSETS_DIR / "comfyui"  # image.json, video.json, lipsync.json, ...
    comfyui_video_fps: int = 16  # the frame rate the video workflows are asked for (Wan makes 16 fps)
    comfyui_max_in_flight: int = 4  # prompts one consumer has queued on ComfyUI at once (it runs one at a time)

    # Fetching user-given URLs
    fetch_max_bytes: int = 60 * 1024 * 1024
    fetch_timeout_seconds: float = 20.0  # one URL, its redirects included
    fetch_run_timeout_seconds: float = 120.0  # all of one run's downloads together (songs and images)
    fetch_allow_hosts: list[str] = Field(default_factory=list)  # private hosts allowed (self-hosting, tests)

    # Artist git repositories (pipeline/repository.py): https only unless these allow more
    repository_allow_ssh: bool = False  # also ssh:// and git@host: addresses
    repository_allow_file: bool = False  # also file:// (repositories on this machine: tests, a local mirror)
    repository_max_bytes: int = 1024 * 1024 * 1024  # a clone over this is stopped and removed
    repository_timeout_seconds: float = 120.0  # one clone or fetch; past it the request gets 503
    repository_lock_wait_seconds: float = 15.0  # how long a request waits for another's fetch of the same artist

    # Queue, run store, server
    database_url: str | None = None  # default: sqlite in DATA_DIR
    migrations_dir: Path | None = None  # the run store's Alembic revisions; default: the bundled taskqueue/migrations
    redis_url: str | None = None  # set: RedisHuey instead of SqliteHuey
    queue_name: str = "studio"  # the Huey queue's name (separate installs can share one Redis)
    workers: int = 0  # runs doing local CPU work (render, analysis) at once in one consumer; 0: the CPU count
    runs_in_flight: int = 30  # runs one consumer holds at once: their remote waits overlap, CPU work takes turns
    run_timeout_seconds: int = 900
    heartbeat_seconds: float = 5.0
    crash_after_seconds: float = 60.0
    host: str = "127.0.0.1"
    port: int = 8501
    public_base_url: str | None = None
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)  # JSON list or comma-separated
    secret_key: str | None = None  # signs download URLs; default: generated once in DATA_DIR
    signed_url_seconds: int = 24 * 3600  # how long a signed download URL stays valid
    task_retries: int = 2  # retries of a run after a transient provider failure
    retry_delay_seconds: float = 5.0
    crash_retries: int = 1  # a run whose worker died is queued again this many times, then CRASHED
    reaper_interval_seconds: float = 15.0  # how often the server looks for runs whose worker died
    progress_interval_seconds: float = 0.5  # at most one progress write per run this often (plus step changes)

    # Where finished runs' files go: a folder (default DATA_DIR/runs; may be a shared mount) or s3://bucket/prefix
    storage_url: str | None = None
    s3_endpoint_url: str | None = None  # any S3-compatible server (MinIO, R2, ...); unset: AWS
    s3_region: str | None = None
    s3_access_key_id: str | None = None  # unset: boto3's usual chain (env, ~/.aws, instance role)
    s3_secret_access_key: str | None = None

    # Webhooks: a POST when each run ends and when its batch does (taskqueue/webhooks.py)
    webhook_url: str | None = None  # the installation's default receiver (a request's `webhook_url` wins)
    webhook_secret: str | None = None  # signs each delivery; default: generated once into DATA_DIR
    webhook_timeout_seconds: float = 10.0  # a receiver that has not answered by then counts as failed
    webhook_max_attempts: int = 8
    webhook_backoff_seconds: float = 30.0  # first wait after a failure; doubles each time (8 tries: ~1 hour)
    webhook_poll_seconds: float = 1.0  # how often the worker side looks for deliveries to make or retry

    # Prices of remote models, USD per the model's billing unit, over the list prices in pipeline/providers/pricing.py
    model_prices: dict[str, float] = Field(default_factory=dict)

    # Accounts and sign-in (taskqueue/accounts.py, server.py)
    # auto: sign-in required unless HOST is a loopback address; required; off (refused unless HOST is loopback)
    auth: Literal["auto", "required", "off"] = "auto"
    session_seconds: int = 7 * 24 * 3600  # how long a sign-in lasts
    # Host headers answered (others get 400, against DNS rebinding); default: HOST's and PUBLIC_BASE_URL's
    trusted_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_active_runs_per_account: int = 60  # queued + running; a create that would pass it is refused whole (429)

    # The disk: caches are capped (least recently used go first, by the worker's periodic task), outputs are
    # kept for ever unless a retention is set, idempotency keys are forgotten after a day
    cache_max_mb: dict[str, int] = Field(default_factory=dict)  # per cache folder, over DEFAULT_CACHE_MAX_MB
    output_retention_days: float = 0.0  # 0: finished runs' files are kept for ever; else deleted (run EXPIRED)
    idempotency_ttl_seconds: float = 24 * 3600.0  # an Idempotency-Key is remembered this long
    idempotency_pending_seconds: float = 300.0  # a key still "pending" after this (its server died) is released

    # API defences
    max_body_bytes: int = 64 * 1024  # larger request bodies get 413
    rate_limit_per_minute: int = 600  # requests per API key (or client address) per minute; 0 switches it off

    @field_validator("api_keys", "trusted_hosts", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        # `API_KEYS=one,two` as well as `API_KEYS=["one","two"]`
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [k.strip() for k in text.split(",") if k.strip()]
        return value

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        self.data_dir = self.data_dir.resolve()
        if self.artists_dir is None:
            self.artists_dir = self.data_dir / "artists"
        else:
            self.artists_dir = self.artists_dir.resolve()
        return self

    @property
    def cpu_slots(self) -> int:
        """How many runs of a consumer do local CPU work at once (WORKERS, else one per core)."""
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    def uploads_for(self, account: str | None) -> Path:
        """Where the UI keeps an account's uploaded images: the only local images that account's runs accept
        (None: the whole uploads folder, for the command line's runs, which belong to no account)."""
        return self.data_dir / "uploads" / account if account else self.data_dir / "uploads"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def cache_caps(self) -> dict[Path, int]:
        """{cache folder: its cap in bytes}; CACHE_MAX_MB names a folder by its last part ("downloads")."""
        caps = {}
        for folder, mb in DEFAULT_CACHE_MAX_MB.items():
            name = folder.rsplit("/", 1)[-1]
            caps[self.data_dir / folder] = int(self.cache_max_mb.get(name, mb)) * 1024 * 1024
        return caps

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'runs.sqlite3'}"


class SettingsError(SystemExit):
    """A setting that cannot be read, as one line naming the variable. A SystemExit, so a command that does not
    catch it prints that line and exits with status 1 instead of showing a traceback."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def readable_settings_error(exc: ValidationError) -> str:
    """`Setting API_KEYS: <what is wrong>` for each bad variable, on one line."""
    parts = []
    for err in exc.errors():
        name = "_".join(str(p) for p in err.get("loc", ())[:1]).upper() or "settings"
        parts.append(f"{name}: {str(err.get('msg', 'is invalid')).removeprefix('Value error, ')}")
    return "Invalid setting " + "; ".join(dict.fromkeys(parts))


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; a bad value raises SettingsError (one readable line)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(readable_settings_error(exc)) from None
    except ValueError as exc:  # a list or dict variable whose JSON does not parse
        field = re.search(r'field "(\w+)"', str(exc))
        name = field.group(1).upper() if field else "?"
        raise SettingsError(f"Invalid setting {name}: not valid JSON ({exc.__cause__ or exc})") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; only the edges (CLI, API, UI, worker) call this."""
    return load_settings()
