"""The API's defences over real HTTP: body size cap, odd bodies, per-key rate limit, Idempotency-Key, owners."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from api.limits import RequestLimiter, client_address
from tests.conftest import missing_tool
from tests.servers import KEY_A, KEY_B, Studio, running_studio

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"
CREATE = "/api/content/create"
# Keys the rate-limited studio knows besides KEY_A, which its start-up check already spends requests of
KEY_C, KEY_D = "test-key-rate-c-" + "0" * 12, "test-key-rate-d-" + "1" * 12
KEY_E = "test-key-rate-e-" + "2" * 12  # the batch test's own budget
KEY_F = "test-key-rate-f-" + "3" * 12  # the idempotent replay test's

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    # No consumer: every accepted run stays QUEUED, which is all these tests need to count.
    with running_studio(tmp_path_factory.mktemp("hardening"), worker=False, MAX_BODY_BYTES="4096") as s:
        yield s


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    with running_studio(tmp_path_factory.mktemp("ratelimit"), worker=False, RATE_LIMIT_PER_MINUTE="10",
                        API_KEYS=json.dumps([KEY_A, KEY_B, KEY_C, KEY_D, KEY_E, KEY_F])) as s:
        yield s


def _runs_of(studio: Studio, key: str = KEY_A) -> set[str]:
    r = httpx.get(studio.url("/api/tasks/runs"), params={"limit": 100}, headers={"x-api-key": key}, timeout=30)
    assert r.status_code == 200, r.text
    return {run["id"] for run in r.json()["runs"]}


def _assert_error(r: httpx.Response, status: int, words: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["status"] == "error" and words.lower() in body["error"].lower(), body
    return body


# --- body size and shape -----------------------------------------------------------------------


def test_a_body_over_the_cap_gets_413(studio: Studio) -> None:
    body = {"artist_account_id": DEMO, "songs": ["x" * 5000]}
    with studio.client() as c:
        r = c.post(CREATE, json=body)
    _assert_error(r, 413, "larger than the 4 KB limit")


def test_a_streamed_body_over_the_cap_gets_413_without_a_length(studio: Studio) -> None:
    def chunks() -> Iterator[bytes]:  # a generator makes httpx send Transfer-Encoding: chunked
        yield b'{"artist_account_id": "' + DEMO.encode() + b'", "songs": ["'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"]}'

    with studio.client() as c:
        r = c.post(CREATE, content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    _assert_error(r, 413, "limit")


def test_a_body_under_the_cap_still_works(studio: Studio) -> None:
    with studio.client() as c:
        r = c.post(CREATE, json={"artist_account_id": DEMO})
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("raw", ["[]", '"text"', "3", "true", "null", '[{"artist_account_id": "x"}]'])
def test_json_that_is_not_an_object_gets_400(studio: Studio, raw: str) -> None:
    with studio.client() as c:
        r = c.post(CREATE, content=raw, headers={"content-type": "application/json"})
    body = _assert_error(r, 400, "")
    assert "object" in body["error"] or "required" in body["error"], body


@pytest.mark.parametrize("raw", ["{", "{'a': 1}", "\x00\xff", '{"artist_account_id": "' + DEMO + '",}'])
def test_broken_json_gets_400(studio: Studio, raw: str) -> None:
    with studio.client() as c:
        r = c.post(CREATE, content=raw.encode("latin-1"), headers={"content-type": "application/json"})
    _assert_error(r, 400, "")


@pytest.mark.parametrize(("patch", "field"), [
    ({"batch": 0}, "batch"), ({"batch": 31}, "batch"), ({"batch": -1}, "batch"), ({"batch": "3"}, "batch"),
    ({"batch": 1.5}, "batch"), ({"batch": None}, "batch"),
    ({"artist_account_id": "1873859c-dd37"}, "artist_account_id"),
    ({"artist_account_id": 12}, "artist_account_id"), ({"songs": "one"}, "songs"), ({"songs": [""]}, "songs"),
    ({"images": ["file:///etc/passwd"]}, "images"), ({"images": ["ftp://example.com/a.png"]}, "images"),
    ({"lipsync": "maybe"}, "lipsync"), ({"caption_length": "huge"}, "caption_length"),
    ({"admin": True, "upscale": 1}, "upscale"),
])
def test_wrong_values_get_400_naming_the_field(studio: Studio, patch: dict, field: str) -> None:
    with studio.client() as c:
        r = c.post(CREATE, json={"artist_account_id": DEMO, **patch})
    body = _assert_error(r, 400, "")
    assert body.get("field", [None])[0] == field, body


# --- rate limit ----------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after_per_key(limited: Studio) -> None:
    statuses = []
    with limited.client(KEY_C) as c:
        for _ in range(14):
            statuses.append(c.get("/api/tasks/runs").status_code)
        r = c.get("/api/tasks/runs")
    assert statuses[:10] == [200] * 10, statuses  # the burst: a whole minute's budget
    assert 429 in statuses[10:], statuses
    body = _assert_error(r, 429, "too many requests")
    assert 1 <= int(r.headers["retry-after"]) <= 60, r.headers
    assert "RATE_LIMIT_PER_MINUTE" in body["error"]
    with limited.client(KEY_D) as other:  # another key has its own budget
        assert other.get("/api/tasks/runs").status_code == 200


def test_the_rate_limit_counts_a_batch_as_its_runs(limited: Studio) -> None:
    """A minute's budget of 10: a batch of 8 takes 8 of it, so a batch of 5 after it is refused whole."""
    from taskqueue.store import RunStore, account_for_configured_key

    def create(batch: int) -> httpx.Response:
        with limited.client(KEY_E) as c:
            return c.post("/api/content/create", json={"artist_account_id": DEMO, "batch": batch})

    assert create(8).status_code == 202
    over = create(5)
    body = _assert_error(over, 429, "batch of 5")
    assert body["field"] == ["batch"] and 1 <= int(over.headers["retry-after"]) <= 60
    store = RunStore(f"sqlite:///{limited.data_dir / 'runs.sqlite3'}")
    try:
        assert len(store.list_runs(account_for_configured_key(KEY_E), limit=100)) == 8  # nothing of the refused one
    finally:
        store.close()
    assert create(1).status_code == 202  # the refused batch used none of the budget: the tenth request fits


def test_a_replayed_batch_costs_one_request_not_its_runs_again(limited: Studio) -> None:
    def create(batch: int, key: str) -> httpx.Response:
        with limited.client(KEY_F) as c:
            return c.post("/api/content/create", json={"artist_account_id": DEMO, "batch": batch},
                          headers={"Idempotency-Key": key})

    first = create(6, "replay-1")
    assert first.status_code == 202
    again = create(6, "replay-1")  # 7 of 10 used: the replay was one request
    assert again.status_code == 202 and again.headers.get("idempotent-replayed") == "true"
    assert again.json()["runIds"] == first.json()["runIds"]
    assert create(3, "replay-2").status_code == 202  # exactly the budget's last 3
    assert create(1, "replay-3").status_code == 429


def test_rotating_wrong_keys_gets_no_fresh_budget(limited: Studio) -> None:
    """Wrong keys (each a new one) and no key count against the client address, not a bucket of their own."""
    statuses = []
    for _ in range(13):
        with limited.client("guess-" + secrets.token_hex(8)) as c:
            statuses.append(c.get("/api/tasks/runs").status_code)
    assert statuses[:10] == [401] * 10 and statuses[-1] == 429, statuses
    with limited.client(None) as anonymous:  # the same address without a key: the same budget
        assert anonymous.get("/api/tasks/runs").status_code == 429
    with limited.client(KEY_A) as c:  # an account from that address still has its own
        assert c.get("/api/tasks/runs").status_code == 200


@pytest.mark.parametrize("client, identity", [
    ("203.0.113.7", "ip:203.0.113.7"), ("::ffff:203.0.113.7", "ip:203.0.113.7"),
    ("2001:db8:1:2:aaaa::1", "ip:2001:db8:1:2::/64"), ("2001:db8:1:2:bbbb::9", "ip:2001:db8:1:2::/64")])
def test_addresses_are_counted_by_subscriber(client: str, identity: str) -> None:
    assert client_address({"type": "http", "client": (client, 1234)}) == identity


def test_an_account_keeps_its_budget_while_its_address_is_spent_by_made_up_keys() -> None:
    import asyncio

    from starlette.responses import PlainTextResponse

    from api.limits import RateLimit

    lookups: list[str] = []

    def account_of(key: str) -> str | None:  # the key store's answer: one good key
        lookups.append(key)
        return "account-1" if key == "good" else None

    limited_app = RateLimit(PlainTextResponse("ok"), RequestLimiter(3), account_of)
    transport = httpx.ASGITransport(app=limited_app, client=("203.0.113.9", 1234))

    async def calls() -> tuple[list[int], list[int]]:
        async with httpx.AsyncClient(transport=transport, base_url="http://studio.test") as c:
            made_up = [(await c.get("/api/x", headers={"x-api-key": f"guess-{i}"})).status_code for i in range(6)]
            good = [(await c.get("/api/x", headers={"x-api-key": "good"})).status_code for _ in range(4)]
        return made_up, good

    made_up, good = asyncio.run(calls())
    assert made_up == [200, 200, 200, 429, 429, 429]
    assert good == [200, 200, 200, 429]  # the account's own budget, not the spent address's
    assert lookups.count("good") == 1  # remembered after the first lookup


def test_the_limiter_refills_at_the_set_rate() -> None:
    limiter = RequestLimiter(3, window_seconds=1)
    assert [limiter.take("k") for _ in range(3)] == [0, 0, 0]
    assert 0 < limiter.take("k") <= 2
    assert limiter.take("other") == 0
    deadline = time.monotonic() + 10
    while limiter.take("k") > 0:
        assert time.monotonic() < deadline, "the budget never came back"
        time.sleep(0.1)


def test_many_identities_do_not_reset_an_exhausted_one() -> None:
    """The old bucket wiped every identity once it held 100 000, the exhausted caller with them."""
    limiter = RequestLimiter(5)
    for _ in range(5):
        limiter.take("abuser")
    for i in range(100_050):
        limiter.take(f"flood-{i}")
    assert limiter.take("abuser") > 0


def test_counters_expire_so_memory_stays_bounded() -> None:
    limiter = RequestLimiter(5, window_seconds=1)
    for i in range(1000):
        limiter.take(f"caller-{i}")
    assert len(limiter.storage.events) >= 1000
    deadline = time.monotonic() + 15
    # a window after their last request, the callers are forgotten when the limiter is next used
    while [k for k in limiter.storage.events if "caller-" in k]:
        assert time.monotonic() < deadline, "timestamps must expire a window after their request"
        time.sleep(0.2)
        limiter.take("newcomer")
    assert [k for k in limiter.storage.events if "newcomer" in k] and not limiter.storage.storage


def _redis_url() -> str | None:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception:
        return None
    return url


def test_redis_limit_is_shared_by_two_servers() -> None:
    url = _redis_url()
    if url is None:
        missing_tool("no Redis reachable here")
    prefix = "test-" + secrets.token_hex(4)
    first, second = RequestLimiter(6, url, prefix), RequestLimiter(6, url, prefix)
    waits = [(first if i % 2 else second).take("key") for i in range(8)]
    assert waits[:6] == [0] * 6 and all(w > 0 for w in waits[6:]), waits
    assert first.take("another-key") == 0


# --- Idempotency-Key ---------------------------------------------------------------------------


def test_a_retried_create_with_the_same_key_returns_the_same_runs(studio: Studio) -> None:
    key = "retry-" + uuid.uuid4().hex
    body = {"artist_account_id": DEMO, "batch": 3, "caption_length": "short"}
    with studio.client() as c:
        first = c.post(CREATE, json=body, headers={"Idempotency-Key": key})
        before = _runs_of(studio)
        # the same body in another key order and spacing is the same request
        again = c.post(CREATE, content=json.dumps(dict(reversed(body.items())), indent=2),
                       headers={"Idempotency-Key": key, "content-type": "application/json"})
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert again.json() == first.json() and len(first.json()["runIds"]) == 3
    assert again.headers.get("idempotent-replayed") == "true"
    assert _runs_of(studio) == before  # nothing new was queued


def test_the_same_key_with_another_body_is_409(studio: Studio) -> None:
    key = "conflict-" + uuid.uuid4().hex
    with studio.client() as c:
        assert c.post(CREATE, json={"artist_account_id": DEMO}, headers={"Idempotency-Key": key}).status_code == 202
        r = c.post(CREATE, json={"artist_account_id": DEMO, "batch": 2}, headers={"Idempotency-Key": key})
    body = _assert_error(r, 409, "different request body")
    assert body["field"] == ["Idempotency-Key"]


def test_keys_belong_to_their_owner(studio: Studio) -> None:
    key = "shared-" + uuid.uuid4().hex
    body = {"artist_account_id": DEMO}
    with studio.client(KEY_A) as a, studio.client(KEY_B) as b:
        ra = a.post(CREATE, json=body, headers={"Idempotency-Key": key})
        rb = b.post(CREATE, json=body, headers={"Idempotency-Key": key})
    assert ra.status_code == rb.status_code == 202
    assert set(ra.json()["runIds"]).isdisjoint(rb.json()["runIds"])
    assert set(rb.json()["runIds"]) <= _runs_of(studio, KEY_B)


def test_a_failed_request_does_not_use_up_its_key(studio: Studio) -> None:
    key = "failed-" + uuid.uuid4().hex
    missing_artist = {"artist_account_id": str(uuid.uuid4())}
    with studio.client() as c:
        r = c.post(CREATE, json=missing_artist, headers={"Idempotency-Key": key})
        assert r.status_code == 404, r.text
        r2 = c.post(CREATE, json={"artist_account_id": DEMO}, headers={"Idempotency-Key": key})
    assert r2.status_code == 202, r2.text


@pytest.mark.parametrize("value", ["", "x" * 201, "tab\there"])
def test_a_malformed_idempotency_key_is_400(studio: Studio, value: str) -> None:
    with studio.client() as c:
        r = c.post(CREATE, json={"artist_account_id": DEMO}, headers={"Idempotency-Key": value})
    _assert_error(r, 400, "Idempotency-Key")


def test_concurrent_retries_create_one_batch(studio: Studio) -> None:
    key = "race-" + uuid.uuid4().hex
    body = {"artist_account_id": DEMO, "batch": 2}
    before = _runs_of(studio)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        with studio.client() as c:
            r = c.post(CREATE, json=body, headers={"Idempotency-Key": key})
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r.json()["runIds"] for r in answers if r.status_code == 202]
    assert ok and all(ids == ok[0] for ids in ok), [r.text for r in answers]
    assert all(r.status_code in (202, 409) for r in answers), [r.text for r in answers]
    time.sleep(0.2)
    assert _runs_of(studio) - before == set(ok[0])


# --- owners ------------------------------------------------------------------------------------


def test_another_owners_run_is_404_not_403(studio: Studio) -> None:
    with studio.client(KEY_A) as a, studio.client(KEY_B) as b:
        run_id = a.post(CREATE, json={"artist_account_id": DEMO}).json()["runIds"][0]
        assert a.get("/api/tasks/runs", params={"runId": run_id}).status_code == 200
        _assert_error(b.get("/api/tasks/runs", params={"runId": run_id}), 404, "not found")
        _assert_error(b.post(f"/api/tasks/runs/{run_id}/cancel"), 404, "not found")
        assert run_id not in _runs_of(studio, KEY_B)
