"""The create-load bench, run small: 100 requests from 20 clients against a real server, nothing lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.load_create import main

pytestmark = pytest.mark.slow


def test_one_hundred_concurrent_creates_lose_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "summary.json"
    code = main(["--requests", "100", "--clients", "20", "--invalid-share", "0.15", "--seed", "7",
                 "--json", str(out)])
    summary = json.loads(out.read_text())
    assert code == 0, summary
    assert summary["requests"] == 100 and summary["accepted"] > 60
    assert summary["lost"] == 0 and summary["extra"] == 0 and summary["duplicate_run_ids"] == 0
    assert summary["no_answer"] == 0 and summary["server_errors"] == 0
    assert set(summary["rejected_by_status"]) <= {"400", "404"} and sum(summary["rejected_by_status"].values()) > 5
    assert summary["store_status"] == {"CANCELED": summary["accepted_runs"]} and summary["not_final"] == 0
    assert summary["server_answering_after"] is True
    assert "lost / extra / duplicate run ids   0 / 0 / 0" in capsys.readouterr().out
