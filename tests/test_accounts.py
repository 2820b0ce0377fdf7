"""Accounts end to end on a real server: users and keys made with the CLI, every door scoped by account
(another account's run, file, artist or key is a 404), admins acting for any account, revocation, quotas,
trusted hosts, and the refusals to start. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pipeline.settings import DEMO_ARTIST_DIR, PROJECT_ROOT
from taskqueue.__main__ import DEMO_ARTIST_ID
from tests.conftest import throwaway_database
from tests.servers import KEY_A, Studio, free_port, running_studio, studio_env

pytestmark = pytest.mark.slow  # two real servers (SQLite, PostgreSQL), argon2 hashes and one-second sign-in delays

PASSWORD = "correct horse battery"
QUOTA = 4


def cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taskqueue", *args], cwd=PROJECT_ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=60)


@dataclass
class Person:
    email: str
    account: str
    key: str
    key_id: str


def make_person(env: dict[str, str], email: str, *, admin: bool = False) -> Person:
    made = cli(env, "create-user", email, *(["--admin"] if admin else []), stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    key = cli(env, "create-key", "--user", email, "--label", "test")
    assert key.returncode == 0, key.stderr
    user, answer = json.loads(made.stdout), json.loads(key.stdout)
    assert answer["accountId"] == user["accountId"]
    return Person(email, user["accountId"], answer["apiKey"], answer["keyId"])


def own_artist(data_dir: Path, owner: str) -> str:
    """A copy of the demo artist's files as an artist of `owner`'s own."""
    root = data_dir / "artists" / "a-private"
    shutil.copytree(DEMO_ARTIST_DIR, root)
    artist_id = str(uuid.uuid4())
    (root / "artist.json").write_text(json.dumps({"account_id": artist_id, "name": "A Private", "owner": owner}))
    return artist_id


@dataclass
class World:
    studio: Studio
    env: dict[str, str]
    a: Person
    b: Person
    c: Person
    admin: Person
    a_artist: str

    def api(self, who: Person | None) -> httpx.Client:
        return self.studio.client(who.key if who else None)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp(f"accounts-{request.param}")
    with throwaway_database("studio_accounts_") if request.param == "postgres" else nullcontext() as url:
        extra = {"AUTH": "required", "MAX_ACTIVE_RUNS_PER_ACCOUNT": str(QUOTA),
                 **({"DATABASE_URL": url} if url else {})}
        env = studio_env(root / "data", 0, **extra)
        a, b = make_person(env, "a@example.com"), make_person(env, "B@Example.com")
        c, admin = make_person(env, "c@example.com"), make_person(env, "admin@example.com", admin=True)
        a_artist = own_artist(root / "data", a.account)
        with running_studio(root, worker=False, **extra) as studio:
            yield World(studio, env, a, b, c, admin, a_artist)


def create(world: World, who: Person, artist: str, batch: int = 1) -> httpx.Response:
    with world.api(who) as api:
        return api.post("/api/content/create", json={"artist_account_id": artist, "batch": batch})


def test_another_account_s_runs_files_and_artists_are_not_found(world: World) -> None:
    a, b = world.a, world.b
    shared = create(world, a, DEMO_ARTIST_ID)
    private = create(world, a, world.a_artist)
    assert shared.status_code == private.status_code == 202, (shared.text, private.text)
    run_ids = shared.json()["runIds"] + private.json()["runIds"]

    with world.api(a) as api:
        assert {r["id"] for r in api.get("/api/tasks/runs").json()["runs"]} >= set(run_ids)
        assert world.a_artist in [x["account_id"] for x in api.get("/api/artists").json()["artists"]]
        assert api.get(f"/api/artists/{world.a_artist}/image").status_code == 200
    with world.api(b) as api:
        assert api.get("/api/tasks/runs").json()["runs"] == []
        for run_id in run_ids:
            assert api.get("/api/tasks/runs", params={"runId": run_id}).status_code == 404
            assert api.get(f"/api/files/{run_id}/video.mp4").status_code == 404
            assert api.post(f"/api/tasks/runs/{run_id}/cancel").status_code == 404
        artists = [x["account_id"] for x in api.get("/api/artists").json()["artists"]]
        assert DEMO_ARTIST_ID in artists and world.a_artist not in artists  # shared yes, A's own no
        assert api.get("/api/content/validate", params={"artist_account_id": world.a_artist}).status_code == 404
        assert api.get(f"/api/artists/{world.a_artist}/image").status_code == 404
        taken = api.post("/api/content/create", json={"artist_account_id": world.a_artist})
        assert taken.status_code == 404 and taken.json()["field"] == ["artist_account_id"]
        # account_id for an account this key may not act for: refused, as the original does
        assert api.get("/api/tasks/runs", params={"account_id": a.account}).status_code == 403
    with world.api(world.admin) as api:  # an admin acts for any account
        mine = api.get("/api/tasks/runs", params={"account_id": a.account}).json()["runs"]
        assert set(run_ids) <= {r["id"] for r in mine}
        assert api.get("/api/tasks/runs", params={"runId": run_ids[1]}).status_code == 200
        assert world.a_artist in [x["account_id"] for x in api.get("/api/artists").json()["artists"]]
        assert api.get("/api/tasks/runs", params={"account_id": "not-a-uuid"}).status_code == 400


def test_a_revoked_key_is_refused_at_once(world: World) -> None:
    key = cli(world.env, "create-key", "--user", world.b.email, "--label", "short-lived")
    made = json.loads(key.stdout)
    with world.studio.client(made["apiKey"]) as api:
        assert api.get("/api/accounts/id").json()["accountId"] == world.b.account
        listed = json.loads(cli(world.env, "list-keys", "--user", world.b.email).stdout)
        assert made["keyId"] in [k["keyId"] for k in listed] and made["apiKey"] not in json.dumps(listed)
        assert cli(world.env, "revoke-key", made["keyId"]).returncode == 0
        refused = api.get("/api/accounts/id")  # another process revoked it; the server's next request refuses it
        assert refused.status_code == 401 and refused.json()["status"] == "error"
    with world.api(world.b) as api:  # B's other key still works
        assert api.get("/api/accounts/id").status_code == 200


def test_a_batch_over_the_quota_is_refused_whole(world: World) -> None:
    c = world.c
    assert create(world, c, DEMO_ARTIST_ID, batch=QUOTA - 1).status_code == 202
    over = create(world, c, DEMO_ARTIST_ID, batch=2)
    assert over.status_code == 429
    body = over.json()
    assert body["field"] == ["batch"]
    assert f"at most {QUOTA}" in body["error"] and f"has {QUOTA - 1} runs" in body["error"]
    assert int(over.headers["Retry-After"]) >= 1
    with world.api(c) as api:
        assert len(api.get("/api/tasks/runs").json()["runs"]) == QUOTA - 1  # nothing of the refused batch
    assert create(world, c, DEMO_ARTIST_ID, batch=1).status_code == 202  # exactly up to the limit is fine
    assert create(world, world.b, DEMO_ARTIST_ID, batch=QUOTA).status_code == 202  # per account, not global


def test_a_forged_host_header_is_400(world: World) -> None:
    forged = {"Host": "rebound.attacker.example", "x-api-key": world.a.key}
    for path in ("/api/tasks/runs", "/api/accounts/id", "/", "/runs", "/auth/sign-in"):
        r = httpx.get(world.studio.url(path), headers=forged, timeout=10)
        assert r.status_code == 400 and r.json()["status"] == "error", path
    named = {"Host": f"localhost:{world.studio.port}", "x-api-key": world.a.key}
    assert httpx.get(world.studio.url("/api/tasks/runs"), headers=named, timeout=10).status_code == 200
    # a load balancer's probe by address still gets liveness (and nothing else)
    probe = httpx.get(world.studio.url("/api/health"), headers={"Host": "10.0.0.7"}, timeout=10)
    assert probe.status_code == 200 and probe.json() == {"status": "ok", "ok": True}


def test_anonymous_requests_get_the_sign_in_page(world: World) -> None:
    for path in ("/", "/runs", "/developers", "/static/whatever.js"):
        r = httpx.get(world.studio.url(path), timeout=10)
        assert r.status_code == 303 and r.headers["location"].startswith("/auth/sign-in?next="), path
    page = httpx.get(world.studio.url("/auth/sign-in"), timeout=10)
    assert page.status_code == 200 and 'name="password"' in page.text and "sk_" not in page.text


def test_sign_in_says_the_same_for_a_wrong_password_and_an_unknown_email(world: World) -> None:
    def sign_in(email: str, password: str) -> httpx.Response:
        return httpx.post(world.studio.url("/auth/sign-in"), data={"email": email, "password": password,
                                                                   "next": "/runs"}, timeout=30)

    wrong, unknown = sign_in(world.a.email, "wrong password"), sign_in("nobody@example.com", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong email or password" in wrong.text and wrong.text == unknown.text.replace(
        "nobody@example.com", world.a.email)
    ok = sign_in(world.a.email.upper(), PASSWORD)
    assert ok.status_code == 303 and ok.headers["location"] == "/runs"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=" in cookie
    home = httpx.get(world.studio.url("/"), cookies={"studio_session": ok.cookies["studio_session"]}, timeout=10)
    assert home.status_code == 200 and "<title>Sign in" not in home.text
    forged = httpx.get(world.studio.url("/"), cookies={"studio_session": ok.cookies["studio_session"] + "x"},
                       timeout=10)
    assert forged.status_code == 303
    # signing out ends the session on the server too: a copy of the cookie no longer opens anything
    session = {"studio_session": ok.cookies["studio_session"]}
    out = httpx.get(world.studio.url("/auth/sign-out"), cookies=session, timeout=10)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    assert httpx.get(world.studio.url("/"), cookies=session, timeout=10).status_code == 303


def test_wrong_passwords_are_throttled(world: World) -> None:
    email = world.c.email  # five failures in five minutes, then 429 even for the right password
    answers = [httpx.post(world.studio.url("/auth/sign-in"), data={"email": email, "password": f"nope{i}"},
                          timeout=30).status_code for i in range(6)]
    assert answers == [401] * 5 + [429]
    right = httpx.post(world.studio.url("/auth/sign-in"), data={"email": email, "password": PASSWORD}, timeout=30)
    assert right.status_code == 429 and int(right.headers["Retry-After"]) > 0


def test_cli_bad_input_is_one_line_and_exit_code_2(world: World) -> None:
    for args, stdin in ((["create-user", world.a.email], PASSWORD + "\n"),
                        (["create-user", "new@example.com"], "short\n"),
                        (["create-user", "not-an-email"], PASSWORD + "\n"),
                        (["create-key", "--user", "nobody@example.com"], ""),
                        (["list-keys", "--user", "nobody@example.com"], ""),
                        (["revoke-key", "key_0000000000000000"], "")):
        done = cli(world.env, *args, stdin=stdin)
        assert done.returncode == 2 and done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, args


def test_no_user_on_a_public_host_refuses_to_start(tmp_path: Path) -> None:
    for extra in ({"HOST": "0.0.0.0"}, {"HOST": "127.0.0.1", "AUTH": "required"}):
        env = studio_env(tmp_path / "data", free_port(), **extra)
        done = cli(env, "serve")
        assert done.returncode == 2 and "create-user" in done.stderr, done.stderr
    env = studio_env(tmp_path / "data", free_port(), HOST="0.0.0.0", AUTH="off")
    done = cli(env, "serve")
    assert done.returncode == 2 and "AUTH=off" in done.stderr
    # uvicorn started by hand (as docs/DEPLOY.md does) refuses the same way, before it listens
    env = studio_env(tmp_path / "data", free_port(), HOST="0.0.0.0")
    done = subprocess.run([sys.executable, "-m", "uvicorn", "server:app", "--host", "127.0.0.1", "--port",
                           env["PORT"]], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "create-user" in done.stderr.strip().splitlines()[-1], done.stderr


def test_serve_on_loopback_without_users_opens_the_studio_without_sign_in(tmp_path: Path) -> None:
    """What `make run` does: `python -m taskqueue serve` on 127.0.0.1 with no user, straight into the studio."""
    port = free_port()
    env = studio_env(tmp_path / "data", port)
    serve = subprocess.Popen([sys.executable, "-m", "taskqueue", "serve"], cwd=PROJECT_ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, home = time.monotonic() + 90, None
        while time.monotonic() < deadline and serve.poll() is None:
            with suppress(httpx.HTTPError):
                home = httpx.get(f"http://127.0.0.1:{port}/runs", timeout=2)
                if home.status_code == 200:
                    break
            time.sleep(0.3)
        assert home is not None and home.status_code == 200 and "<title>Sign in" not in home.text
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()


def test_the_api_served_alone_checks_the_host_too(tmp_path: Path) -> None:
    port = free_port()
    env = studio_env(tmp_path / "data", port)
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.app:standalone_app", "--factory", "--host",
                             "127.0.0.1", "--port", str(port)], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            with suppress(httpx.HTTPError):
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        key = KEY_A
        forged = httpx.get(f"{base}/api/content/templates", headers={"Host": "rebound.attacker.example",
                                                                      "x-api-key": key}, timeout=10)
        assert forged.status_code == 400 and forged.json()["status"] == "error"
        named = httpx.get(f"{base}/api/content/templates", headers={"x-api-key": key}, timeout=10)
        assert named.status_code == 200, named.text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
