"""REQUIRE_SERVICES=1 (CI) turns every skip for a missing tool or service into a failure."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# Skips that are not about a missing tool: the machine has nothing to test (every GPU encoder works), or a
# generated asset is absent; and the helpers themselves.
ALLOWED_SKIPS = {"conftest.py": 2, "test_encoder.py": 1, "test_detect_face.py": 1, "test_make_image.py": 1,
                 "test_choose_clip.py": 1}


def _run(tmp_path: Path, require: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_needs_tool.py").write_text(
        "from tests.conftest import missing_tool\n\n"
        "def test_needs_tool():\n    missing_tool('the frobnicator is not installed')\n")
    env = {k: v for k, v in os.environ.items() if k != "REQUIRE_SERVICES"}
    if require:
        env["REQUIRE_SERVICES"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           str(tmp_path / "test_needs_tool.py")], capture_output=True, text=True, env=env,
                          cwd=TESTS.parent, timeout=120)


def test_a_missing_tool_skips_by_default_and_fails_under_require_services(tmp_path: Path) -> None:
    relaxed = _run(tmp_path, require=False)
    assert relaxed.returncode == 0 and "1 skipped" in relaxed.stdout, relaxed.stdout
    strict = _run(tmp_path, require=True)
    assert strict.returncode == 1 and "1 failed" in strict.stdout, strict.stdout
    assert "REQUIRE_SERVICES=1 but the frobnicator is not installed" in strict.stdout


def test_no_test_skips_for_a_missing_tool_behind_the_flags_back() -> None:
    """Every skip goes through missing_tool, except the few that are not about a tool (listed above)."""
    found = {}
    for path in sorted(TESTS.glob("*.py")):
        if path.name == Path(__file__).name:
            continue
        count = len(re.findall(r"pytest\.skip\(|importorskip\(|mark\.skipif\(", path.read_text()))
        if count:
            found[path.name] = count
    assert found == ALLOWED_SKIPS, found
