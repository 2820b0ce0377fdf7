"""The studio's pages driven by Streamlit's AppTest, on a real run store and queue in a temporary DATA_DIR."""

from __future__ import annotations

import html
import io
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from pages._studio import CreateChoices, build_request, form_problems
from pages._uploads import Upload, check_image, check_song, create_artist
from pipeline.artists import find_artist, list_songs
from pipeline.errors import BadInput
from pipeline.settings import PROJECT_ROOT, Settings, get_settings
from taskqueue.store import CANCELED, EXECUTING, QUEUED, NewRun, RunStore
from tests.media import ffmpeg_make, make_tone

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"
APP = str(PROJECT_ROOT / "app.py")
TIMEOUT = 60


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """DATA_DIR for the app under test; the real Huey queue is pointed at it too."""
    data = tmp_path / "data"
    monkeypatch.setenv("DATA_DIR", str(data))
    for name in ("ARTISTS_DIR", "DATABASE_URL", "REDIS_URL", "API_KEYS", "WORKERS", "INCLUDE_DEMO_ARTIST"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    from taskqueue import tasks
    from taskqueue.huey_app import make_huey

    monkeypatch.setattr(tasks.huey, "storage", make_huey(get_settings()).storage)
    yield data
    get_settings.cache_clear()


@pytest.fixture
def store(data_dir: Path) -> Iterator[RunStore]:
    s = RunStore(get_settings().sqlalchemy_url)
    yield s
    s.close()


def local_account(data_dir: Path, store: RunStore) -> str:
    from taskqueue.keys import local_account_id

    return local_account_id(get_settings(), store)


def app(page: str | None = None, **query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(query)
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error]
    parts += [s.value for s in at.success] + [w.value for w in at.warning] + [t.value for t in at.title]
    parts += [h.value for h in at.subheader]
    return "\n".join(str(p) for p in parts)


def badges(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if "-badge[" in m.value]


def png_bytes(size: tuple[int, int] = (64, 80)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 120, 90)).save(buf, format="PNG")
    return buf.getvalue()


# --- pure helpers -----------------------------------------------------------------------------


def test_uploaded_images_are_checked_by_decoding_not_by_name() -> None:
    assert check_image(Upload("face.webp", png_bytes())) == "png"  # the content decides the type
    with pytest.raises(BadInput, match="not an image"):
        check_image(Upload("face.png", b"<html>not a picture</html>"))
    with pytest.raises(BadInput, match="not an image"):
        check_image(Upload("cut.png", png_bytes((400, 400))[:300]))  # truncated: the header alone is not enough
    with pytest.raises(BadInput, match="at most 1 MB"):
        check_image(Upload("big.png", b"\0" * (1024 * 1024 + 1)), max_mb=1)


def test_uploaded_songs_are_probed_with_ffmpeg(tmp_path: Path) -> None:
    tone = make_tone(tmp_path / "tone.wav", seconds=1.5)
    assert check_song(Upload("tone.wav", tone.read_bytes())) == pytest.approx(1.5, abs=0.1)
    with pytest.raises(BadInput, match="not audio"):
        check_song(Upload("fake.mp3", b"ID3 but not really" * 100))
    with pytest.raises(BadInput, match="must be"):
        check_song(Upload("notes.txt", tone.read_bytes()))


def test_form_problems_name_the_control_and_readiness_can_be_covered(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)
    bare = create_artist(settings, "No Files Yet")
    choices = CreateChoices(artist_account_id=bare.account_id, batch=31, song_urls=["ftp://x/y.mp3"],
                            image_urls=["https://example.com/face.png"])
    problems = form_problems(choices, bare, [])
    assert set(problems) == {"batch", "song_urls", "songs"}  # the image URL covers the missing face guide
    assert "http" in problems["song_urls"][0] and "songs/<slug>" in problems["songs"][0]
    request = build_request(CreateChoices(artist_account_id=DEMO, image_urls=["https://example.com/a.png"],
                                          image_paths=[str(settings.data_dir / "uploads" / "x.png")]))
    assert request.images == [str(settings.data_dir / "uploads" / "x.png"), "https://example.com/a.png"]
    with pytest.raises(BadInput, match="batch"):
        build_request(CreateChoices(artist_account_id=DEMO, batch=0))


# --- pages ------------------------------------------------------------------------------------


def test_empty_install_says_what_to_do_next(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCLUDE_DEMO_ARTIST", "false")
    get_settings.cache_clear()
    at = app()
    assert "No artists yet" in texts(at)
    assert "create_submit" not in [b.key for b in at.button]
    assert "No runs yet" in texts(app("runs"))
    assert "Nothing here yet" in texts(app("gallery"))
    assert "No artists yet" in texts(app("artists"))


def test_create_explains_invalid_choices_before_submit(data_dir: Path) -> None:
    at = app()
    assert at.selectbox(key="create_artist").value == DEMO
    assert "Ready" in texts(at)
    assert at.button(key="create_submit").disabled is False
    at.text_area(key="create_song_urls").input("not-a-url").run()
    at.file_uploader(key="create_uploads").set_value(("face.png", b"GIF89a but broken", "image/png"))
    at.run()
    page = texts(at)
    assert "“not-a-url” is not a web address" in page
    assert "face.png is not an image that can be opened" in page
    assert "Fix 2 things above to continue." in page
    assert at.button(key="create_submit").disabled is True


def test_create_preselects_the_linked_artist_and_says_what_it_lacks(data_dir: Path) -> None:
    bare = create_artist(get_settings(), "Just A Name")
    at = app(artist=bare.account_id)  # the Artists page's "Create videos" link
    assert at.selectbox(key="create_artist").value == bare.account_id
    page = texts(at)
    assert "**context/images/face-guide.png** —" in page and "Add at least one song" in page
    assert at.button(key="create_submit").disabled is True
    at.text_area(key="create_image_urls").input("https://example.com/face.png").run()
    assert "**context/images/face-guide.png** —" not in texts(at)  # an image URL stands in for the face guide
    assert at.button(key="create_submit").disabled is True  # still no song


def test_create_queues_a_batch_through_trigger_and_shows_it_on_runs(data_dir: Path, store: RunStore) -> None:
    from taskqueue import tasks

    at = app()
    at.segmented_control(key="create_caption").set_value("short")
    at.segmented_control(key="create_aspect").set_value("4:5")
    at.run()
    at.segmented_control(key="create_lyrics_malleable").set_value("word")
    at.number_input(key="create_batch").set_value(2)
    at.file_uploader(key="create_uploads").set_value(("me.jpg", png_bytes(), "image/jpeg"))
    at.run()
    assert "2 videos" in texts(at)
    at.button(key="create_submit").click().run()
    assert not at.exception, [e.value for e in at.exception]

    owner = local_account(data_dir, store)
    runs = store.list_runs(owner)
    assert len(runs) == 2 and {r.status for r in runs} == {QUEUED}
    assert {t.id for t in tasks.huey.pending()} == {r.id for r in runs}  # really on the queue
    request = runs[0].request
    assert request["caption_length"] == "short" and request["batch"] == 2
    assert request["lyrics"] == "word" and request["aspect_ratio"] == "4:5"
    (upload,) = request["images"]
    assert Path(upload).parent == data_dir / "uploads" / owner and Path(upload).suffix == ".png"
    Image.open(upload).verify()

    assert at.title[0].value == "Runs"  # st.switch_page took the user to their runs
    page = texts(at)
    assert all(r.id in page for r in runs) and "Started 2 videos" in page
    assert "Waiting for a worker" in "\n".join(p.proto.text for p in at.get("progress"))


def make_run(store: RunStore, owner: str, *, template: str | None = "artist-caption-stage") -> str:
    (run,) = store.create_batch(owner, [NewRun(DEMO, "demo-artist", template,
                                               {"artist_account_id": DEMO, "template": template,
                                                "caption_length": "short", "batch": 1, "lipsync": False,
                                                "upscale": False, "songs": None, "images": None}, seed=5)])
    return run.id


def complete(store: RunStore, data_dir: Path, run_id: str, *, caption: str = "Sing it back.") -> None:
    """A run taken through the store's real transitions, with a real video on disk (as the worker leaves it)."""
    out = data_dir / "runs" / run_id
    out.mkdir(parents=True)
    ffmpeg_make("-f", "lavfi", "-i", "testsrc2=s=180x320:d=1", "-f", "lavfi", "-i", "sine=d=1",
                "-shortest", "-pix_fmt", "yuv420p", str(out / "video.mp4"))
    ffmpeg_make("-f", "lavfi", "-i", "testsrc2=s=180x320", "-frames:v", "1", str(out / "poster.jpg"))
    assert store.claim(run_id, "test-worker")
    t0 = store.get(run_id).started_at  # type: ignore[union-attr]
    timeline = [{"step": "clip", "started_at": t0, "finished_at": t0 + 1.5},
                {"step": "render", "started_at": t0 + 1.5, "finished_at": t0 + 4.0}]
    assert store.finish(run_id, {"audio": {"songTitle": "Glass Summer", "startSeconds": 32.0,
                                           "durationSeconds": 15.0, "clipMood": "euphoric"},
                                 "captionText": caption, "movement": "fast push in",
                                 "providers": {"render": "ffmpeg (one filter graph)"},
                                 "files": {"video": "video.mp4", "poster": "poster.jpg"}}, timeline)


def test_runs_page_lists_newest_first_with_progress_and_detail_actions(data_dir: Path, store: RunStore) -> None:
    owner = local_account(data_dir, store)
    done = make_run(store, owner)
    complete(store, data_dir, done)
    running = make_run(store, owner, template=None)
    assert store.claim(running, "w")
    store.progress(running, "render", 61.0, [{"step": "render", "started_at": 1.0, "finished_at": None}])
    queued = make_run(store, owner)
    make_run(store, "someone-else")  # another account's run never shows

    at = app("runs")
    cards = [b.key for b in at.button if (b.key or "").startswith("open_")]
    assert cards == [f"open_{queued}", f"open_{running}", f"open_{done}"]
    bars = [p.proto.text for p in at.get("progress")]
    assert bars == ["Waiting for a worker", "Rendering the video · 61%", "Finished"]

    # the detail of a finished run: timeline with durations, choices, video, downloads, re-run
    at = app("runs", run=done)
    page = texts(at)
    assert "Sing it back." in page and "Glass Summer" in page and "0:32–0:47" in page and "euphoric" in page
    timeline = at.table[0].value
    assert list(timeline["Step"]) == ["Finding the hook", "Rendering the video"]
    assert list(timeline["Time"]) == ["1.5 s", "2.5 s"]
    assert {label for label, _ in downloads(at)} == {"Download MP4", "Download poster"}
    assert all(signed_for(href, done) for _, href in downloads(at))
    at.button(key="rerun_run").click().run()
    again = [r for r in store.list_runs(owner) if r.id not in (done, running, queued)]
    assert len(again) == 1 and again[0].status == QUEUED and again[0].request["caption_length"] == "short"
    assert at.query_params["run"] == [again[0].id] or at.query_params["run"] == again[0].id

    # cancel: a queued run stops at once, a running one is flagged for its worker
    at = app("runs", run=queued)
    at.button(key="cancel_run").click().run()
    assert store.get(queued).status == CANCELED  # type: ignore[union-attr]
    at = app("runs", run=running)
    at.button(key="cancel_run").click().run()
    after = store.get(running)
    assert after.status == EXECUTING and after.cancel_requested  # type: ignore[union-attr]

    # a failed run says where it stopped
    failed = make_run(store, owner)
    store.fail(failed, "FAILED", "image", "The face guide could not be read")
    assert "Failed while styling the image." in texts(app("runs", run=failed))


def test_expired_runs_are_counted_as_expired_not_as_stopped(data_dir: Path, store: RunStore) -> None:
    owner = local_account(data_dir, store)
    kept, gone, broken = make_run(store, owner), make_run(store, owner), make_run(store, owner)
    complete(store, data_dir, kept)
    complete(store, data_dir, gone)
    assert store.expire(gone, "Removed after OUTPUT_RETENTION_DAYS")
    store.fail(broken, "FAILED", "image", "The face guide could not be read")
    page = texts(app("runs"))
    assert "1 completed" in page and "1 stopped" in page and "1 expired" in page, page
    assert "Expired" in texts(app("runs", run=gone))  # its own badge, not a bare status code


def downloads(at: AppTest) -> list[tuple[str, str]]:
    """(label, href) of each download link the page drew (pages/_ui.py download_link)."""
    found = []
    for element in at.get("html"):
        for href, label in re.findall(r'class="studio-download[^"]*" href="([^"]+)" download="[^"]+">([^<]+)</a>',
                                      element.proto.body):
            found.append((html.unescape(label), html.unescape(href)))
    return found


def signed_for(href: str, run_id: str) -> bool:
    """The link names one file of `run_id` on the API's files route with a token the API accepts."""
    from api.context import UrlSigner

    path, _, query = href.partition("?token=")
    parts = path.split("/")  # "", "api", "files", run, name
    signer = UrlSigner.for_settings(get_settings())
    return parts[:4] == ["", "api", "files", run_id] and signer.verify(query, "run", run_id, parts[4])


def test_gallery_shows_finished_videos_with_downloads_and_filters(data_dir: Path, store: RunStore) -> None:
    owner = local_account(data_dir, store)
    stage = make_run(store, owner)
    complete(store, data_dir, stage, caption="Louder on the last chorus.")
    plain = make_run(store, owner, template=None)
    complete(store, data_dir, plain, caption="this one is for the late drives")
    make_run(store, owner)  # still queued: not in the gallery

    at = app("gallery")
    assert len(at.get("video")) == 2
    links = downloads(at)
    labels = [label for label, _ in links]
    assert labels.count("MP4") == 2 and labels.count("Poster") == 2
    assert sorted(href.split("/")[3] for label, href in links if label == "MP4") == sorted([stage, plain])
    assert all(signed_for(href, href.split("/")[3]) for _, href in links)
    at.selectbox(key="gallery_template").set_value("").run()  # malleable only
    assert len(at.get("video")) == 1 and "this one is for the late drives" in texts(at)


def test_artists_page_creates_a_workspace_from_uploads(data_dir: Path, tmp_path: Path) -> None:
    song = make_tone(tmp_path / "Night Drive.wav", seconds=2.0)
    at = app("artists")
    form = "new_0"
    at.text_input(key=f"{form}_name").input("Mira Vale")
    at.file_uploader(key=f"{form}_face").set_value(("mira.jpg", png_bytes((120, 160)), "image/jpeg"))
    at.file_uploader(key=f"{form}_songs").set_value([("Night Drive.wav", song.read_bytes(), "audio/wav")])
    at.file_uploader(key=f"{form}_lyrics").set_value([("night-drive.lrc", b"[00:00.50]we drive all night\n",
                                                       "text/plain")])
    at.text_area(key=f"{form}_artist_text").input("Dream pop from Lisbon.")
    at.run()
    at.button(key=f"{form}_save").click().run()
    assert not at.exception
    assert "Added Mira Vale" in texts(at)

    artist = find_artist(get_settings(), "mira-vale")
    assert json.loads((artist.root / "artist.json").read_text())["name"] == "Mira Vale"
    assert Image.open(artist.face_guide).format == "PNG"
    (song_entry,) = list_songs(artist)
    assert song_entry.slug == "night-drive" and song_entry.lrc_path is not None
    assert artist.artist_context.read_text().strip() == "Dream pop from Lisbon."

    # a picture that is not one is refused, and nothing is written
    at.text_input(key="new_1_name").input("Broken Face")
    at.file_uploader(key="new_1_face").set_value(("face.png", b"not an image", "image/png"))
    at.run()
    at.button(key="new_1_save").click().run()
    assert "face.png is not an image that can be opened" in texts(at)
    assert not (data_dir / "artists" / "broken-face").exists()


def test_artists_page_fixes_readiness_by_adding_files(data_dir: Path, tmp_path: Path) -> None:
    bare = create_artist(get_settings(), "Half Ready")
    at = app("artists")
    assert any("Needs files" in b for b in badges(at))
    assert "context/images/face-guide.png" in texts(at) and "songs/" in texts(at)
    form = f"fix_{bare.account_id}_0"
    at.file_uploader(key=f"{form}_face").set_value(("face.png", png_bytes(), "image/png"))
    at.file_uploader(key=f"{form}_songs").set_value([("hook.wav", make_tone(tmp_path / "hook.wav").read_bytes(),
                                                       "audio/wav")])
    at.run()
    at.button(key=f"{form}_save").click().run()
    assert "Saved Half Ready's files." in texts(at)
    artist = find_artist(get_settings(), bare.account_id)
    assert artist.face_guide.is_file() and [s.slug for s in list_songs(artist)] == ["hook"]
    assert f"fix_{bare.account_id}_1_face" in [u.key for u in at.file_uploader]  # the form starts empty again


def test_artists_page_connects_a_git_repository(data_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPOSITORY_ALLOW_FILE", "true")  # file:// is refused unless this setting allows it
    get_settings.cache_clear()
    repo = tmp_path / "workspace-repo"
    (repo / "songs" / "tone").mkdir(parents=True)
    make_tone(repo / "songs" / "tone" / "tone.wav", seconds=1.0)
    (repo / "context" / "images").mkdir(parents=True)
    (repo / "context" / "images" / "face-guide.png").write_bytes(png_bytes())
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "workspace"], check=True)

    at = app("artists")
    at.text_input(key="repo_0_name").input("Repo Artist")
    at.text_input(key="repo_0_url").input("not a url")
    at.run()
    at.button(key="repo_0_save").click().run()
    assert "does not look like a git repository" in texts(at)
    at.text_input(key="repo_0_url").input(f"file://{repo}")
    at.run()
    at.button(key="repo_0_save").click().run()
    assert "Connected Repo Artist" in texts(at)
    meta = json.loads((data_dir / "artists" / "repo-artist" / "artist.json").read_text())
    assert meta["repository"] == f"file://{repo}"
    assert "Tone" in texts(at)  # the clone's songs are listed


def test_templates_and_api_pages(data_dir: Path, store: RunStore) -> None:
    at = app("templates")
    page = texts(at)
    for template_id in ("artist-caption-stage", "artist-caption-bedroom", "album-record-store"):
        assert template_id in page
    assert "Sing it back to me." in page  # a caption example
    assert "No template (malleable)" in page

    at = app("developers")
    key = (data_dir / "api-key.txt").read_text().strip()
    account = local_account(data_dir, store)
    codes = [c.value for c in at.code]
    tables = "\n".join(t.value.to_csv() for t in at.table)
    assert key not in "\n".join([*codes, texts(at), tables])  # the install's key is never shown, only listed
    (install_key,) = store.list_keys(account)
    assert install_key.id in tables
    curl = next(c for c in codes if "curl" in c and "/api/content/create" in c)
    assert '"x-api-key: $STUDIO_API_KEY"' in curl and DEMO in curl
    assert account in texts(at)
    assert (data_dir / "webhook-secret.key").read_text().strip() in codes  # what webhook receivers verify with

    # a new key is shown once, then only listed; revoking it makes the API refuse it
    at.text_input(key="key_label").input("ci")
    next(b for b in at.button if "Make a key" in (b.label or "")).click().run()
    made = [c.value for c in at.code if c.value.startswith("sk_")]
    assert len(made) == 1 and store.verify_key(made[0]) == account
    assert "ci" in "\n".join(t.value.to_csv() for t in at.table)
    at.run()  # any rerun: gone
    assert not [c.value for c in at.code if c.value.startswith("sk_")]
    new_id = next(k.id for k in store.list_keys(account) if k.label == "ci")
    at.selectbox(key="revoke_key_id").set_value(new_id)
    at.button(key="revoke_key").click().run()
    assert store.verify_key(made[0]) is None and store.verify_key(key) == account
