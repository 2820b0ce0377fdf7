"""Webhooks end to end: a real server and consumer, a loopback receiver that checks the signature.

Covers: run and batch events signed with the secret; a 500 retried with the same delivery id after backoff;
the consumer killed between two tries and started again (the delivery is in the database, not in memory);
a private-address URL refused with 400 before any run is made.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.servers import FAST_RENDER_ENV, KEY_A, Studio, running_studio

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"
SECRET = "test-webhook-secret"
WEBHOOK_ENV = {**FAST_RENDER_ENV, "WEBHOOK_SECRET": SECRET, "WEBHOOK_BACKOFF_SECONDS": "2",
               "WEBHOOK_POLL_SECONDS": "0.2", "WEBHOOK_TIMEOUT_SECONDS": "3"}

pytestmark = pytest.mark.slow


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    def signature_ok(self, secret: str = SECRET) -> bool:
        parts = dict(p.split("=", 1) for p in self.headers["x-studio-signature"].split(","))
        mac = hmac.new(secret.encode(), f"{parts['t']}.".encode() + self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(mac, parts["v1"]) and abs(time.time() - int(parts["t"])) < 120


@dataclass
class Receiver:
    """Answers each POST of an event with the next status in `answers[event]` (then 200), and records what came."""

    answers: dict[str, list[int]] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    hit = Hit({k.lower(): v for k, v in self.headers.items()}, body, time.time())
                    receiver.hits.append(hit)
                    planned = receiver.answers.get(hit.headers.get("x-studio-event", ""), [])
                    status = planned.pop(0) if planned else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def of(self, event: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.headers.get("x-studio-event") == event]

    def wait_for(self, predicate, timeout: float = 60.0) -> None:  # noqa: ANN001 - a callable of nothing
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, [(h.headers.get("x-studio-event"), h.at) for h in self.hits]
            time.sleep(0.1)


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    with running_studio(tmp_path_factory.mktemp("webhooks"), **WEBHOOK_ENV) as s:
        yield s


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.httpd.shutdown()
    r.httpd.server_close()


def test_a_batch_posts_a_signed_event_per_run_and_one_for_the_batch(studio: Studio, receiver: Receiver) -> None:
    with studio.client(KEY_A) as a:
        answer = a.post("/api/content/create", json={"artist_account_id": DEMO, "batch": 2,
                                                      "webhook_url": receiver.url}).json()
        ids = answer["runIds"]
        studio.wait_for(ids)
        receiver.wait_for(lambda: len(receiver.of("run.completed")) == 2 and receiver.of("batch.finished"))
        done = {h.json["run"]["id"]: h for h in receiver.of("run.completed")}
        assert set(done) == set(ids) and all(h.signature_ok() for h in receiver.hits)
        assert not any(h.signature_ok("another-secret") for h in receiver.hits)
        hit = done[ids[0]]
        assert hit.headers["content-type"] == "application/json" and hit.json["type"] == "run.completed"
        run = a.get("/api/tasks/runs", params={"runId": ids[0]}).json()["runs"][0]
        video = hit.json["run"]["output"]["videoSourceUrl"]
        assert video.split("?")[0] == run["output"]["videoSourceUrl"].split("?")[0]
        assert httpx.get(video).status_code == 200  # the body's signed link works
        assert hit.json["run"]["status"] == "COMPLETED" and hit.json["run"]["taskIdentifier"] == "create-content"
        [batch] = receiver.of("batch.finished")
        assert batch.json["batchId"] == run["batchId"] and batch.json["status"] == "completed"
        assert sorted(r["id"] for r in batch.json["runs"]) == sorted(ids) and batch.signature_ok()
        # the run object lists the delivery and its try
        receiver.wait_for(lambda: a.get("/api/tasks/runs", params={"runId": ids[0]}).json()["runs"][0]["webhook"][
            "deliveries"])
        webhook = a.get("/api/tasks/runs", params={"runId": ids[0]}).json()["runs"][0]["webhook"]
        assert webhook["url"] == receiver.url
        assert [(d["id"], d["attempt"], d["status"], d["error"]) for d in webhook["deliveries"]] == [
            (hit.headers["x-studio-delivery"], 1, 200, None)]


def test_a_failed_delivery_is_retried_with_the_same_id_even_across_a_consumer_restart(studio: Studio,
                                                                                      receiver: Receiver) -> None:
    receiver.answers = {"run.canceled": [500, 500]}  # two failures, then 200
    with studio.client(KEY_A) as a:
        run_id = a.post("/api/content/create", json={"artist_account_id": DEMO, "webhook_url": receiver.url}
                        ).json()["runIds"][0]
        a.post(f"/api/tasks/runs/{run_id}/cancel")  # a canceled run is final at once: run.canceled
        def tries_recorded() -> int:
            run = a.get("/api/tasks/runs", params={"runId": run_id}).json()["runs"][0]
            return len(run["webhook"]["deliveries"])

        receiver.wait_for(lambda: tries_recorded() == 1)  # the first try failed, and the store knows it
        studio.stop_worker(kill=True)  # the consumer dies between the first try and the retry
        first = receiver.of("run.canceled")[0]
        time.sleep(3.0)  # past the 2 s backoff: nobody may send while the consumer is down
        assert len(receiver.of("run.canceled")) == 1
        studio.start_worker()
        receiver.wait_for(lambda: len(receiver.of("run.canceled")) == 3, timeout=60)
        tries = receiver.of("run.canceled")
        assert {h.headers["x-studio-delivery"] for h in tries} == {first.headers["x-studio-delivery"]}
        assert [h.body for h in tries] == [first.body] * 3 and all(h.signature_ok() for h in tries)
        assert tries[2].at - tries[1].at >= 3.5  # the second wait is twice the first (2 s, then 4 s)
        receiver.wait_for(lambda: tries_recorded() == 3)
        deliveries = a.get("/api/tasks/runs", params={"runId": run_id}).json()["runs"][0]["webhook"]["deliveries"]
        assert [(d["attempt"], d["status"], d["error"]) for d in deliveries] == [
            (1, 500, "HTTP 500"), (2, 500, "HTTP 500"), (3, 200, None)]
        assert first.json == {"type": "run.canceled", "run": first.json["run"]}
        assert first.json["run"]["status"] == "CANCELED"
        receiver.wait_for(lambda: len(receiver.of("batch.finished")) == 1)
        assert receiver.of("batch.finished")[0].json["status"] == "failed"


@pytest.mark.parametrize("url", ["http://10.0.0.7/hook", "http://169.254.169.254/latest/meta-data",
                                 "http://[::1]:8080/hook", "http://localhost:9/hook", "ftp://example.com/hook",
                                 "file:///etc/passwd"])
def test_a_private_or_non_http_webhook_url_is_refused_and_no_run_is_made(studio: Studio, url: str) -> None:
    with studio.client(KEY_A) as a:
        before = len(a.get("/api/tasks/runs", params={"limit": 100}).json()["runs"])
        r = a.post("/api/content/create", json={"artist_account_id": DEMO, "webhook_url": url})
        assert r.status_code == 400 and r.json()["field"] == ["webhook_url"], r.text
        assert len(a.get("/api/tasks/runs", params={"limit": 100}).json()["runs"]) == before


def test_the_cli_prints_the_secret_receivers_verify_with(studio: Studio) -> None:
    import subprocess
    import sys

    from pipeline.settings import PROJECT_ROOT

    env = {k: v for k, v in studio.env.items() if k != "WEBHOOK_SECRET"}
    made = subprocess.run([sys.executable, "-m", "taskqueue", "webhook-secret"], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    again = subprocess.run([sys.executable, "-m", "taskqueue", "webhook-secret"], env=env, cwd=PROJECT_ROOT,
                           capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    assert len(made) >= 40 and made == again == (studio.data_dir / "webhook-secret.key").read_text().strip()
    set_one = subprocess.run([sys.executable, "-m", "taskqueue", "webhook-secret"], env=studio.env,
                             cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    assert set_one == SECRET
    assert httpx.get(studio.url("/api/health")).status_code == 200


def test_a_receiver_that_does_not_answer_in_time_counts_as_a_failed_try(tmp_path) -> None:
    """The sender alone, against a receiver that holds the connection: the try fails at the time limit."""
    from http.server import BaseHTTPRequestHandler as Base

    from pipeline.settings import Settings
    from taskqueue.store import FAILED, NewRun, RunStore
    from taskqueue.webhooks import WebhookSender, signature

    release = threading.Event()

    class Hang(Base):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            release.wait(10)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hang)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        settings = Settings(data_dir=tmp_path, webhook_secret=SECRET, webhook_timeout_seconds=0.5,
                            webhook_backoff_seconds=60, fetch_allow_hosts=["127.0.0.1"])
        store = RunStore(settings.sqlalchemy_url)
        url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
        [run] = store.create_batch("owner", [NewRun(DEMO, "demo-artist", None, {}, 1)], webhook_url=url)
        store.fail(run.id, FAILED, "render", "boom")
        sender = WebhookSender(settings, store)
        started = time.monotonic()
        assert sender.run_once() == 2 + 2  # the run's and the batch's deliveries made, and each tried once
        assert time.monotonic() - started < 5  # two tries of 0.5 s, not the receiver's 10 s
        [attempt] = store.webhooks_for_runs([run.id])[run.id]["history"]
        assert attempt["status"] is None and attempt["error"] == "no answer within 0.5 s"
        assert store.due_webhooks() == []  # both wait WEBHOOK_BACKOFF_SECONDS before the next try
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
    assert signature("k", 1700000000, b"{}") == (
        "t=1700000000,v1=" + hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest())


def test_the_installations_webhook_url_is_the_default_and_a_requests_own_wins(tmp_path) -> None:
    from pipeline.request import CreateContentRequest
    from pipeline.settings import Settings
    from taskqueue.store import RunStore
    from taskqueue.trigger import trigger

    settings = Settings(data_dir=tmp_path, webhook_url="http://127.0.0.1:9/default",
                        fetch_allow_hosts=["127.0.0.1"])
    store = RunStore(settings.sqlalchemy_url)
    queued: list[str] = []
    plain = trigger(CreateContentRequest(artist_account_id=DEMO), "owner", settings=settings, store=store,
                    enqueue=queued.extend)
    own = trigger(CreateContentRequest(artist_account_id=DEMO, webhook_url="http://127.0.0.1:9/mine"), "owner",
                  settings=settings, store=store, enqueue=queued.extend)
    hooks = store.webhooks_for_runs(plain["runIds"] + own["runIds"])
    assert hooks[plain["runIds"][0]]["url"] == "http://127.0.0.1:9/default"
    assert hooks[own["runIds"][0]]["url"] == "http://127.0.0.1:9/mine"
    no_default = Settings(data_dir=tmp_path)
    none = trigger(CreateContentRequest(artist_account_id=DEMO), "owner", settings=no_default, store=store,
                   enqueue=queued.extend)
    assert store.webhooks_for_runs(none["runIds"]) == {}
