"""Schemathesis fuzzes every operation of our OpenAPI against a real server: no answer may be a 500."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import missing_tool
from tests.servers import KEY_A, Studio, running_studio

pytestmark = pytest.mark.slow

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
TIME_BUDGET_SECONDS = 35  # the whole fuzzing run; the suite must stay quick


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    with running_studio(tmp_path_factory.mktemp("schemathesis"), worker=False) as s:
        yield s


def test_no_operation_answers_500(studio: Studio, tmp_path: Path) -> None:
    if not SCHEMATHESIS.exists():
        missing_tool("schemathesis is not installed in this environment")
    result = subprocess.run(
        [str(SCHEMATHESIS), "run", studio.url("/api/openapi.json"), "--url", studio.url("/api"),
         "--checks", "not_a_server_error", "--max-examples", "25", "--seed", "20261128",
         "--phases", "examples,coverage,fuzzing", "--workers", "2", "--max-time", str(TIME_BUDGET_SECONDS),
         "--header", f"Authorization: Bearer {KEY_A}", "--request-timeout", "10", "--no-color"],
        capture_output=True, text=True, timeout=TIME_BUDGET_SECONDS + 60, cwd=tmp_path,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:] + "\n--- server log ---\n" + studio.log_tail("server")
    generated = re.search(r"(\d+) generated", out)
    assert generated and int(generated.group(1)) >= 200, out[-3000:]  # it really exercised the API
    assert "unhandled error" not in studio.log_tail("server", 2000)
