"""The studio's pages find run outputs wherever STORAGE_URL keeps them (local folder or an S3 bucket)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from pages._studio import run_file
from pipeline.settings import Settings
from taskqueue.storage import make_storage
from tests.s3_server import ACCESS_KEY, REGION, SECRET_KEY, running_s3


def test_run_files_come_from_the_bucket_into_a_local_cache(tmp_path: Path) -> None:
    payload = tmp_path / "video.mp4"
    payload.write_bytes(b"\x00\x01video-bytes" * 5000)
    with running_s3() as s3:
        settings = Settings(_env_file=None, data_dir=tmp_path / "web", storage_url=f"s3://{s3.bucket}/runs",
                            s3_endpoint_url=s3.endpoint, s3_region=REGION, s3_access_key_id=ACCESS_KEY,
                            s3_secret_access_key=SECRET_KEY)
        make_storage(settings).put("run_abc", "video.mp4", payload)
        run = SimpleNamespace(id="run_abc")
        local = run_file(settings, run, "video.mp4")  # type: ignore[arg-type]
        assert local.read_bytes() == payload.read_bytes()
        assert settings.cache_dir in local.parents  # the web machine never had the file in its runs folder
        assert not run_file(settings, SimpleNamespace(id="run_none"), "video.mp4").exists()  # type: ignore[arg-type]


def test_local_storage_is_read_in_place(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    (settings.runs_dir / "run_x").mkdir(parents=True)
    (settings.runs_dir / "run_x" / "poster.jpg").write_bytes(b"jpeg")
    assert run_file(settings, SimpleNamespace(id="run_x"), "poster.jpg") == settings.runs_dir / "run_x" / "poster.jpg"  # type: ignore[arg-type]
