"""Shared fixtures: an isolated data folder and settings, and the real ffmpeg."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.ffmpeg import ffmpeg_exe
from pipeline.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with their own data folder; the bundled demo artist stays visible."""
    return Settings(data_dir=tmp_path / "data", _env_file=None)


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    return ffmpeg_exe()
