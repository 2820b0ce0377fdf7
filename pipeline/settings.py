"""The one settings object, read from the environment and `.env`, passed down to whoever needs it."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = PROJECT_ROOT / "assets"
TEMPLATES_DIR = ASSETS_DIR / "templates"
FONTS_DIR = ASSETS_DIR / "fonts"
DEMO_ARTIST_DIR = ASSETS_DIR / "demo-artist"

ProviderChoice = Literal["local", "openai", "fal", "auto"]


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
    audio_bitrate: str = "160k"
    loudness_lufs: float = -14.0
    clip_seconds: float | None = None  # overrides every template's clip length (previews, tests)

    # Providers (only `local` exists in the foundation; remote ones come with their keys)
    transcribe_provider: ProviderChoice = "local"
    caption_provider: ProviderChoice = "local"
    image_provider: ProviderChoice = "local"
    video_provider: ProviderChoice = "local"
    upscale_provider: ProviderChoice = "local"

    # Fetching user-given URLs
    fetch_max_bytes: int = 60 * 1024 * 1024
    fetch_timeout_seconds: float = 20.0
    fetch_allow_hosts: list[str] = Field(default_factory=list)  # private hosts allowed (self-hosting, tests)

    # Queue, run store, server
    database_url: str | None = None  # default: sqlite in DATA_DIR
    redis_url: str | None = None  # set: RedisHuey instead of SqliteHuey
    workers: int = 1
    run_timeout_seconds: int = 900
    heartbeat_seconds: float = 5.0
    crash_after_seconds: float = 60.0
    host: str = "127.0.0.1"
    port: int = 8501
    public_base_url: str | None = None
    api_keys: list[str] = Field(default_factory=list)
    secret_key: str | None = None  # signs download URLs; default: generated once in DATA_DIR

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        self.data_dir = self.data_dir.resolve()
        if self.artists_dir is None:
            self.artists_dir = self.data_dir / "artists"
        else:
            self.artists_dir = self.artists_dir.resolve()
        return self

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'runs.sqlite3'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; only the edges (CLI, API, UI, worker) call this."""
    return Settings()
