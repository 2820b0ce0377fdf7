"""The seed page's contract over real HTTP: a server and a consumer on 127.0.0.1, real renders, real files."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from pipeline.ffmpeg import probe
from tests.original_contract import ORIGINAL
from tests.servers import ACCOUNT_A, FAST_RENDER_ENV, KEY_A, KEY_B, Studio, running_studio
from tests.test_artists import make_workspace

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"
BARE = str(uuid.UUID("00000000-0000-4000-8000-00000000bbbb"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    root = tmp_path_factory.mktemp("contract")
    make_workspace(root / "data" / "artists" / "bare-artist", account_id=BARE, face=False, songs=(), context=False)
    with running_studio(root, **FAST_RENDER_ENV) as s:
        s.response_hooks.append(ORIGINAL.check)  # every answer below is also checked against the original's schemas
        yield s


@pytest.fixture(scope="module")
def a(studio: Studio) -> Iterator[httpx.Client]:
    with studio.client(KEY_A) as c:
        yield c


@pytest.fixture(scope="module")
def batch(studio: Studio, a: httpx.Client) -> dict:
    """The seed's example as a batch of 3, polled to COMPLETED (shared by the tests that read its runs)."""
    r = a.post("/api/content/create", json={"artist_account_id": DEMO, "template": "artist-caption-stage",
                                            "caption_length": "short", "batch": 3})
    assert r.status_code == 202, r.text
    answer = r.json()
    runs = studio.wait_for(answer["runIds"], timeout=240)
    return {"answer": answer, "runs": runs}


def test_create_answers_202_with_the_seed_pages_response(batch: dict) -> None:
    answer = batch["answer"]
    assert set(answer) == {"runIds", "status", "artist_account_id", "template", "lipsync"}  # no `failed`
    assert answer["status"] == "triggered" and answer["artist_account_id"] == DEMO
    assert answer["template"] == "artist-caption-stage" and answer["lipsync"] is False
    assert len(answer["runIds"]) == 3 and all(rid.startswith("run_") for rid in answer["runIds"])


def test_a_batch_of_three_completes_and_every_video_downloads(batch: dict, tmp_path: Path) -> None:
    seeds = set()
    for run_id, run in batch["runs"].items():
        assert run["status"] == "COMPLETED", run["error"]
        assert run["id"] == run_id and run["progress"] == 100.0 and run["attemptCount"] == 1
        assert run["createdAt"] <= run["startedAt"] <= run["finishedAt"] and run["durationSeconds"] > 0
        steps = [t["step"] for t in run["timeline"]]
        assert steps[:2] == ["song", "lyrics"] and steps[-1] == "render"
        assert all(t["startedAt"] and t["finishedAt"] for t in run["timeline"])
        seeds.add(run["seed"])
        out = run["output"]
        assert out["videoSourceUrl"] == out["video"]["url"] and out["video"]["url"].startswith("http://127.0.0.1:")
        assert out["imageUrl"] and out["posterUrl"] and out["artistSlug"] == "demo-artist"
        assert out["template"] == "artist-caption-stage" and out["lipsync"] is False
        assert set(out["audio"]) >= {"songTitle", "songFilename", "startSeconds", "durationSeconds", "clipLyrics",
                                     "clipMood"}
        assert 1 <= len(out["captionText"].split()) <= 10
        video = httpx.get(out["videoSourceUrl"], timeout=30)  # the signed link needs no key
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        path = tmp_path / f"{run_id}.mp4"
        path.write_bytes(video.content)
        info = probe(path)
        assert (info.width, info.height, info.video_codec, info.audio_codec) == (360, 640, "h264", "aac")
        assert info.duration == pytest.approx(4.0, abs=0.25) == out["audio"]["durationSeconds"]
        for url in (out["imageUrl"], out["posterUrl"]):
            pic = httpx.get(url, timeout=30)
            assert pic.status_code == 200 and pic.headers["content-type"] == "image/jpeg"
            assert pic.content[:2] == b"\xff\xd8"
    assert len(seeds) == 3


def test_videos_answer_range_requests(batch: dict) -> None:
    url = next(iter(batch["runs"].values()))["output"]["video"]["url"]
    whole = httpx.get(url).content
    size = len(whole)
    part = httpx.get(url, headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.content == whole[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{size}" and part.headers["accept-ranges"] == "bytes"
    assert part.headers["content-length"] == "200"
    tail = httpx.get(url, headers={"Range": "bytes=-64"})
    assert tail.status_code == 206 and tail.content == whole[-64:]
    rest = httpx.get(url, headers={"Range": f"bytes={size - 10}-"})
    assert rest.status_code == 206 and rest.content == whole[-10:]
    assert httpx.get(url, headers={"Range": f"bytes={size + 5}-{size + 10}"}).status_code == 416
    head = httpx.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(size) and not head.content


def test_files_need_a_valid_link_or_the_owners_key(studio: Studio, batch: dict) -> None:
    run_id, run = next(iter(batch["runs"].items()))
    plain = studio.url(f"/api/files/{run_id}/video.mp4")
    assert httpx.get(plain).status_code == 401
    assert httpx.get(plain, headers={"x-api-key": KEY_A}).status_code == 200
    assert httpx.get(plain, headers={"x-api-key": KEY_B}).status_code == 404  # someone else's run
    token = run["output"]["video"]["url"].split("token=", 1)[1]
    assert httpx.get(studio.url(f"/api/files/{run_id}/poster.jpg?token={token}")).status_code == 401  # other file
    assert httpx.get(plain + "?token=" + token[:-2] + "xx").status_code == 401  # tampered
    secret = (studio.data_dir / "secret.key").read_text().strip()

    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 3 * 86400

    old = URLSafeTimedSerializer(secret, salt="studio-files", signer=Past).dumps(["run", run_id, "video.mp4"])
    expired = httpx.get(plain + "?token=" + old)
    assert expired.status_code == 401 and "expired" in expired.json()["error"]
    assert httpx.get(studio.url(f"/api/files/{run_id}/meta.json"), headers={"x-api-key": KEY_A}).status_code == 404


def test_one_owner_cannot_see_or_touch_anothers_runs(studio: Studio, batch: dict) -> None:
    run_id = next(iter(batch["runs"]))
    with studio.client(KEY_B) as b:
        r = b.get("/api/tasks/runs", params={"runId": run_id})
        assert r.status_code == 404 and r.json() == {"status": "error", "error": "Run not found", "field": ["runId"]}
        assert run_id not in [x["id"] for x in b.get("/api/tasks/runs").json()["runs"]]
        assert b.post(f"/api/tasks/runs/{run_id}/cancel").status_code == 404
        assert b.get("/api/accounts/id").json()["accountId"] != ACCOUNT_A


def test_the_run_list_is_newest_first_with_limit_and_filters(a: httpx.Client, batch: dict) -> None:
    ids = set(batch["answer"]["runIds"])
    runs = a.get("/api/tasks/runs").json()["runs"]
    created = [r["createdAt"] for r in runs]
    assert created == sorted(created, reverse=True) and ids <= {r["id"] for r in runs}
    assert len(a.get("/api/tasks/runs", params={"limit": 1}).json()["runs"]) == 1
    completed = a.get("/api/tasks/runs", params={"status": "COMPLETED", "limit": 100}).json()["runs"]
    assert ids <= {r["id"] for r in completed} and all(r["status"] == "COMPLETED" for r in completed)
    assert a.get("/api/tasks/runs", params={"artist_account_id": BARE}).json()["runs"] == []
    assert ids <= {r["id"] for r in a.get("/api/tasks/runs", params={"artist_account_id": DEMO}).json()["runs"]}
    for bad in ({"limit": 0}, {"limit": 101}, {"limit": "x"}):
        r = a.get("/api/tasks/runs", params=bad)
        assert r.status_code == 400 and r.json()["field"] == ["limit"]
    r = a.get("/api/tasks/runs", params={"status": "DONE"})
    assert r.status_code == 400 and r.json()["field"] == ["status"]
    r = a.get("/api/tasks/runs", params={"runId": "run_doesnotexist"})
    assert r.status_code == 404 and r.json()["error"] == "Run not found"


BAD_BODIES = [
    ({}, ["artist_account_id"], "artist_account_id is required"),
    ({"artist_account_id": "not-a-uuid"}, ["artist_account_id"], "UUID"),
    ({"batch": 0}, ["batch"], "greater than or equal to 1"),
    ({"batch": 31}, ["batch"], "less than or equal to 30"),
    ({"batch": "2"}, ["batch"], "integer"),
    ({"batch": 1.5}, ["batch"], "integer"),
    ({"lipsync": "yes"}, ["lipsync"], "boolean"),
    ({"upscale": 1}, ["upscale"], "boolean"),
    ({"caption_length": "huge"}, ["caption_length"], "'none', 'short', 'medium' or 'long'"),
    ({"template": "x" * 101}, ["template"], "at most 100"),
    ({"lyrics": "karaoke"}, ["lyrics"], "'none', 'line' or 'word'"),
    ({"lyrics": True}, ["lyrics"], "'none', 'line' or 'word'"),
    ({"aspect_ratio": "3:4"}, ["aspect_ratio"], "'9:16', '4:5', '1:1' or '16:9'"),
    ({"songs": "hiccups"}, ["songs"], "list"),
    ({"songs": [""]}, ["songs", 0], "at least 1"),
    ({"songs": ["s"] * 51}, ["songs"], "at most 50"),
    ({"images": ["ftp://example.com/a.png"]}, ["images", 0], "http(s) URL"),
    ({"images": ["https://example.com/a.png"] * 21}, ["images"], "at most 20"),
]


@pytest.mark.parametrize(("patch", "field", "message"), BAD_BODIES, ids=[json.dumps(b[0])[:40] for b in BAD_BODIES])
def test_every_bound_of_the_body_is_a_400_naming_the_field(a: httpx.Client, patch: dict, field: list,
                                                           message: str) -> None:
    body = {} if patch == {} else {"artist_account_id": DEMO, **patch}
    r = a.post("/api/content/create", json=body)
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    got = r.json()
    assert got["status"] == "error" and got["field"] == field and message in got["error"]


def test_unknown_fields_are_ignored_and_named_in_warnings(a: httpx.Client) -> None:
    r = a.post("/api/content/create", json={"artist_account_id": DEMO, "colour": "red", "captionLength": "short"})
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["warnings"] == ["Unknown field ignored: colour", "Unknown field ignored: captionLength"]
    run = a.get("/api/tasks/runs", params={"runId": answer["runIds"][0]}).json()["runs"][0]
    assert "colour" not in run["request"] and run["request"]["caption_length"] == "none"
    a.post(f"/api/tasks/runs/{answer['runIds'][0]}/cancel")
    r = a.post("/api/content/create", json={"artist_account_id": DEMO, "colour": "red", "batch": "2"})
    assert r.status_code == 400 and r.json()["field"] == ["batch"]  # known fields stay strictly typed


def test_malformed_bodies_are_400s_too(a: httpx.Client) -> None:
    for content, headers in ((b"{bad", {"content-type": "application/json"}), (b"[1,2]", {}), (b"", {})):
        r = a.post("/api/content/create", content=content, headers=headers)
        assert r.status_code == 400 and r.json()["status"] == "error", r.text


def test_the_defaults_of_the_seed_page_and_cancelling_a_queued_run(studio: Studio, a: httpx.Client) -> None:
    r = a.post("/api/content/create", json={"artist_account_id": DEMO.upper(), "batch": 30})
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["template"] is None and answer["lipsync"] is False and len(answer["runIds"]) == 30
    assert answer["artist_account_id"] == DEMO
    for run_id in answer["runIds"]:
        assert a.post(f"/api/tasks/runs/{run_id}/cancel").status_code == 200
    runs = studio.wait_for(answer["runIds"], timeout=60)
    assert {r["status"] for r in runs.values()} == {"CANCELED"}
    request = next(iter(runs.values()))["request"]
    defaults = {"template": None, "lipsync": False, "caption_length": "none", "upscale": False, "batch": 30,
                "songs": None, "images": None}
    assert {k: request[k] for k in defaults} == defaults
    again = a.post(f"/api/tasks/runs/{answer['runIds'][0]}/cancel")
    assert again.status_code == 409 and "already finished" in again.json()["error"]
    assert a.post("/api/tasks/runs/run_nope/cancel").status_code == 404


def test_cancelling_a_running_run_stops_it(studio: Studio, a: httpx.Client) -> None:
    # upscaled: a longer render, so the cancel lands while it runs
    run_id = a.post("/api/content/create", json={"artist_account_id": DEMO, "upscale": True}).json()["runIds"][0]
    studio.wait_for([run_id], {"EXECUTING", "COMPLETED"}, timeout=60, poll=0.1)
    r = a.post(f"/api/tasks/runs/{run_id}/cancel")
    if r.status_code == 409:
        pytest.fail("the run finished before it could be cancelled; the test needs a longer run")
    assert r.status_code == 200 and r.json()["run"]["cancelRequested"] is True
    run = studio.wait_for([run_id], timeout=60)[run_id]
    assert run["status"] == "CANCELED" and run["error"]["message"] == "Cancelled by its owner" and run["output"] is None
    assert not (studio.data_dir / "runs" / run_id / "video.mp4").exists()


def test_user_mistakes_get_the_originals_messages(a: httpx.Client) -> None:
    r = a.post("/api/content/create", json={"artist_account_id": DEMO, "template": "nope"})
    assert (r.status_code, r.json()) == (400, {"status": "error", "error": "Unsupported template: nope",
                                               "field": ["template"],
                                               "available_templates": a.get("/api/content/validate", params={
                                                   "artist_account_id": DEMO}).json()["templates"]})
    assert "artist-caption-stage" in r.json()["available_templates"]
    r = a.post("/api/content/create", json={"artist_account_id": str(uuid.uuid4())})
    assert r.status_code == 404 and r.json()["error"] == "Artist not found for the provided artist_account_id"
    r = a.post("/api/content/create", json={"artist_account_id": DEMO, "songs": ["no-such-song"]})
    assert r.status_code == 400 and "no-such-song" in r.json()["error"] and r.json()["field"] == ["songs"]
    r = a.post("/api/content/create", json={"artist_account_id": BARE})
    body = r.json()
    assert r.status_code == 400 and [m["file"] for m in body["missing"]] == ["context/images/face-guide.png", "songs/"]
    assert all(m["fix"] and m["description"] for m in body["missing"]) and body["ready"] is False


@pytest.mark.parametrize(("headers", "message"), [
    ({}, "Missing API key"),
    ({"x-api-key": "wrong"}, "Invalid API key"),
    ({"authorization": "Bearer wrong"}, "Invalid API key"),
    ({"authorization": f"Basic {KEY_A}"}, "Bearer"),
    ({"authorization": "Bearer"}, "Bearer"),
    ({"x-api-key": KEY_A, "authorization": f"Bearer {KEY_A}"}, "exactly one"),
])
def test_auth_failures_are_401s(studio: Studio, headers: dict, message: str) -> None:
    for method, path in (("GET", "/api/accounts/id"), ("POST", "/api/content/create"), ("GET", "/api/tasks/runs"),
                         ("GET", "/api/artists"), ("GET", "/api/content/templates")):
        r = httpx.request(method, studio.url(path), headers=headers, json={} if method == "POST" else None)
        assert r.status_code == 401 and message in r.json()["error"] and r.json()["status"] == "error"


def test_either_header_works_and_a_stored_key_has_its_own_account(studio: Studio) -> None:
    via_header = httpx.get(studio.url("/api/accounts/id"), headers={"x-api-key": KEY_A}).json()
    via_bearer = httpx.get(studio.url("/api/accounts/id"), headers={"authorization": f"Bearer {KEY_A}"}).json()
    assert via_header == via_bearer == {"status": "success", "accountId": ACCOUNT_A}
    made = subprocess.run([sys.executable, "-m", "taskqueue", "create-key", "--label", "ci"], env=studio.env,
                          capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
    key = json.loads(made.stdout)
    got = httpx.get(studio.url("/api/accounts/id"), headers={"x-api-key": key["apiKey"]}).json()
    assert got == {"status": "success", "accountId": key["accountId"]}


def test_templates_validate_estimate_and_artists(studio: Studio, a: httpx.Client, batch: dict) -> None:
    listed = a.get("/api/content/templates").json()
    ids = [t["id"] for t in listed["templates"]]
    assert listed["status"] == "success" and "artist-caption-stage" in ids and all(t["description"] for t in
                                                                                   listed["templates"])
    one = a.get("/api/content/templates/artist-caption-stage").json()
    assert one["status"] == "success" and one["id"] == "artist-caption-stage"
    assert one["video"]["moods"] == [m["name"] for m in one["video"]["moodDetails"]] and one["video"]["moods"]
    assert all(isinstance(m, str) for m in one["video"]["movements"] + one["video"]["moods"])
    assert {op["type"] for op in one["edit"]["operations"]} == {"crop", "trim", "overlay_text", "mux_audio"}
    missing = a.get("/api/content/templates/nope")
    assert (missing.status_code, missing.json()) == (404, {"status": "error", "error": "Template not found"})

    ready = a.get("/api/content/validate", params={"artist_account_id": DEMO}).json()
    assert ready["ready"] is True and ready["missing"] == [] and ready["warnings"] == []
    assert ready["songs"] == 2 and ready["checks"]["songs"] == {"status": "ok", "count": 2}
    assert ids == ready["templates"]
    assert {k: v["status"] for k, v in ready["checks"].items()} == dict.fromkeys(ready["checks"], "ok")
    bare = a.get("/api/content/validate", params={"artist_account_id": BARE}).json()
    assert bare["ready"] is False and {m["severity"] for m in bare["missing"]} == {"required", "recommended"}
    assert len(bare["warnings"]) == 2 and bare["checks"]["face_guide"]["status"] == "missing"
    assert bare["checks"]["artist_context"]["status"] == "warning" and bare["songs"] == 0
    r = a.get("/api/content/validate")
    assert r.status_code == 400 and r.json()["error"] == "artist_account_id is required"
    assert a.get("/api/content/validate", params={"artist_account_id": str(uuid.uuid4())}).status_code == 404

    est = a.get("/api/content/estimate", params={"lipsync": "false", "batch": 3}).json()
    time = est["time"]
    assert time["basis"].startswith("the median of the last") and time["sampleSize"] >= 3
    assert time["totalSeconds"] == pytest.approx(time["perVideoSeconds"] * 3, abs=0.2)  # one worker
    [current] = est["workflows"]  # all local here: every step free
    assert current["perVideo"] == 0.0 and {s["model"] for s in current["steps"]} == {"local"}
    assert est["batch"] == {"count": 3, "cheapestTotal": 0.0, "mostExpensiveTotal": 0.0} and "comparison" not in est
    runs = batch["runs"].values()
    assert min(r["durationSeconds"] for r in runs) - 0.1 <= time["perVideoSeconds"] <= max(
        r["durationSeconds"] for r in runs) + 0.1
    compared = a.get("/api/content/estimate", params={"lipsync": "true", "compare": "true"}).json()
    assert len(compared["workflows"]) == 3 and "batch" not in compared
    original = next(w for w in compared["workflows"] if w["name"].startswith("The original's"))
    video = next(s for s in original["steps"] if s["name"] == "Generate Video")
    assert video["model"] == "fal-ai/ltx-2-19b/audio-to-video" and video["cost"] > 0 and video["unit"] == "megapixels"
    assert compared["comparison"]["mostExpensive"] == original["name"]
    assert compared["comparison"]["cheapestPerVideo"] == 0.0 and compared["comparison"]["savingsPercent"] == 100
    assert a.get("/api/content/estimate", params={"batch": 0}).status_code == 400

    artists = a.get("/api/artists").json()["artists"]
    demo = next(x for x in artists if x["account_id"] == DEMO)
    assert demo["name"] and demo["ready"] and "late-bus-home" in demo["songs"]
    assert demo["pinned"] is False and demo["socials"] == []
    image = httpx.get(demo["image"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert next(x for x in artists if x["account_id"] == BARE)["image"] is None


def test_no_redirects_and_json_for_every_error(studio: Studio, a: httpx.Client) -> None:
    for path in ("/api/content/templates/", "/api/tasks/runs/", "/api/accounts/id/", "/api/nothing-here"):
        r = a.get(path)
        assert r.status_code == 404 and r.headers["content-type"] == "application/json", path
    r = a.delete("/api/content/create")
    assert r.status_code == 405 and r.json()["status"] == "error"
    assert a.get("/api/docs").status_code == 200
    spec = a.get("/api/openapi.json").json()
    assert {"/content/create", "/tasks/runs", "/accounts/id"} <= set(spec["paths"])


def test_account_id_and_org_id_are_checked(a: httpx.Client) -> None:
    for path in ("/api/tasks/runs", "/api/artists"):
        bad = a.get(path, params={"account_id": "not-a-uuid"})
        assert bad.status_code == 400 and bad.json()["field"] == ["account_id"], path
        other = a.get(path, params={"account_id": str(uuid.uuid4())})
        assert other.status_code == 403 and other.json()["field"] == ["account_id"], path
        own = a.get(path, params={"account_id": ACCOUNT_A.upper()})
        assert own.status_code == 200, path
    assert a.get("/api/artists", params={"org_id": "x"}).status_code == 400
    assert a.get("/api/artists", params={"org_id": str(uuid.uuid4())}).status_code == 403


def test_runs_are_trigger_dev_run_objects(a: httpx.Client, batch: dict) -> None:
    run = a.get("/api/tasks/runs", params={"runId": batch["answer"]["runIds"][0]}).json()["runs"][0]
    assert run["taskIdentifier"] == "create-content" and run["updatedAt"] >= run["finishedAt"]
    assert [(x["status"], x["startedAt"]) for x in run["attempts"]] == [("COMPLETED", run["startedAt"])]
    assert run["attemptCount"] == 1 and run["costInCents"] == 0.0 and run["output"]["cost"]["totalUsd"] == 0.0
    assert run["durationMs"] == pytest.approx(run["durationSeconds"] * 1000, abs=1)


def test_every_operation_and_status_the_original_declares_was_checked(studio: Studio, a: httpx.Client,
                                                                      batch: dict) -> None:
    """Answers of each declared operation and status, each validated by the hook; then the tally."""
    run_id = batch["answer"]["runIds"][0]
    a.post("/api/content/create", json={"artist_account_id": DEMO, "template": "nope"})
    a.post("/api/content/create", json={"artist_account_id": str(uuid.uuid4())})
    a.get("/api/content/templates")
    a.get("/api/content/templates/artist-caption-stage")
    a.get("/api/content/templates/nope")
    a.get("/api/content/validate", params={"artist_account_id": DEMO})
    a.get("/api/content/validate")
    a.get("/api/content/validate", params={"artist_account_id": str(uuid.uuid4())})
    a.get("/api/content/estimate", params={"compare": "true", "batch": 30, "lipsync": "true"})
    a.get("/api/tasks/runs", params={"runId": run_id})
    a.get("/api/tasks/runs")
    a.get("/api/tasks/runs", params={"limit": 0})
    a.get("/api/tasks/runs", params={"account_id": str(uuid.uuid4())})
    a.get("/api/tasks/runs", params={"runId": "run_nope"})
    a.get("/api/artists")
    a.get("/api/artists", params={"account_id": "bad"})
    a.get("/api/accounts/id")
    with studio.client(None) as anonymous:
        for path in ("/api/content/templates", "/api/content/validate", "/api/content/estimate",
                     "/api/content/templates/x"):
            assert anonymous.get(path).status_code == 401
        assert anonymous.post("/api/content/create", json={}).status_code == 401
    declared = {(op, status) for op, answers in ORIGINAL.spec["operations"].items() for status in answers}
    assert declared - set(ORIGINAL.seen) == set()
