"""Shared fixtures: an isolated data folder and settings, the real ffmpeg, and the real PostgreSQL and Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
from redis import Redis
from sqlalchemy import create_engine, text

from pipeline.ffmpeg import ffmpeg_exe
from pipeline.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with their own data folder; the bundled demo artist stays visible."""
    return Settings(data_dir=tmp_path / "data", _env_file=None)


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    return ffmpeg_exe()


PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _service_missing(what: str, exc: Exception) -> None:
    # CI sets REQUIRE_SERVICES=1 after starting both servers: there a missing service fails, it never skips.
    if os.environ.get("REQUIRE_SERVICES"):
        raise exc
    pytest.skip(f"{what}: {type(exc).__name__}")


def missing_tool(reason: str) -> NoReturn:
    """Skip for want of a tool or service (a browser, schemathesis, Redis, a tmpfs mount); under
    REQUIRE_SERVICES=1 (CI, where all of them are installed) the same absence is a failure, never a quiet skip."""
    if os.environ.get("REQUIRE_SERVICES"):
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)  # also from a module that cannot import its tool


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway database in the local PostgreSQL, dropped after the session."""
    with throwaway_database("studio_test_") as url:
        yield url


@contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """A new database in the local PostgreSQL (skipped when it is not there), dropped afterwards."""
    name = prefix + uuid.uuid4().hex[:10]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - depends on the machine
        admin.dispose()
        _service_missing(f"PostgreSQL is not reachable at {PG_ADMIN_URL}", exc)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def queue_name() -> Iterator[str]:
    """A Huey queue name of this module's own on the local Redis, its keys deleted afterwards."""
    name = "studio-test-" + uuid.uuid4().hex[:8]
    try:
        Redis.from_url(REDIS_URL).ping()
    except Exception as exc:  # pragma: no cover - depends on the machine
        _service_missing(f"Redis is not reachable at {REDIS_URL}", exc)
    yield name
    conn = Redis.from_url(REDIS_URL)
    for key in conn.scan_iter(f"huey.*{name}*"):
        conn.delete(key)
