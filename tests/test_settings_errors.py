"""Settings from the environment: API_KEYS as a plain comma-separated list, and a bad value as one readable line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.settings import PROJECT_ROOT, Settings, SettingsError, load_settings


@pytest.mark.parametrize(("raw", "keys"), [
    ("mykey", ["mykey"]),
    ("one, two ,three", ["one", "two", "three"]),
    ('["json-one", "json-two"]', ["json-one", "json-two"]),
    ("", []),
])
def test_api_keys_read_as_json_or_comma_separated(monkeypatch: pytest.MonkeyPatch, raw: str, keys: list[str]) -> None:
    monkeypatch.setenv("API_KEYS", raw)
    assert Settings().api_keys == keys


@pytest.mark.parametrize(("env", "words"), [
    ({"WORKERS": "many"}, "Invalid setting WORKERS: Input should be a valid integer"),
    ({"FETCH_ALLOW_HOSTS": "[not json"}, "Invalid setting FETCH_ALLOW_HOSTS: not valid JSON"),
    ({"IMAGE_PROVIDER": "magic"}, "Invalid setting IMAGE_PROVIDER: Input should be 'local', 'openai', 'fal' or 'auto'"),
])
def test_a_bad_setting_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict, words: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert str(info.value).startswith(words) and "\n" not in str(info.value)


def _cli(tmp_path, **env: str) -> subprocess.CompletedProcess:
    environ = {"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path), "HOME": str(tmp_path), **env}
    return subprocess.run([sys.executable, "-m", "taskqueue", "create-key", "--label", "t"], cwd=PROJECT_ROOT,
                          env=environ, capture_output=True, text=True, timeout=60)


def test_the_cli_accepts_a_plain_api_key_and_reports_a_bad_setting_without_a_traceback(tmp_path) -> None:
    ok = _cli(tmp_path, API_KEYS="mykey")
    assert ok.returncode == 0 and "apiKey" in ok.stdout, ok.stderr
    bad = _cli(tmp_path, API_KEYS="mykey", WORKERS="lots")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "Invalid setting WORKERS: Input should be a valid integer, unable to parse string as an integer"]
