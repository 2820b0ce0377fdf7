"""Wrong passwords are counted per email and per address, in this process or shared by every web server in Redis."""

from __future__ import annotations

import uuid

import pytest
from redis import Redis

from api.edge import PER_CLIENT, PER_EMAIL, SignInThrottle
from tests.conftest import REDIS_URL


def test_five_failures_for_an_email_lock_it_and_a_success_unlocks() -> None:
    throttle = SignInThrottle()
    for _ in range(PER_EMAIL.failures):
        assert throttle.retry_after("ann@example.com", "ip:1") is None
        throttle.failed("Ann@Example.com ", "ip:1")  # the same email, however it is typed
    wait = throttle.retry_after("ann@example.com", "ip:2")  # from another address too
    assert wait is not None and 0 < wait <= PER_EMAIL.window_seconds
    assert throttle.retry_after("bo@example.com", "ip:1") is None  # another email from that address is not
    throttle.succeeded("ann@example.com")
    assert throttle.retry_after("ann@example.com", "ip:1") is None


def test_one_address_trying_many_emails_is_locked() -> None:
    throttle = SignInThrottle()
    for i in range(PER_CLIENT.failures):
        throttle.failed(f"guess{i}@example.com", "ip:9")
    assert throttle.retry_after("anyone@example.com", "ip:9") is not None
    assert throttle.retry_after("anyone@example.com", "ip:8") is None


@pytest.mark.redis
def test_web_servers_share_the_count_through_redis(queue_name: str) -> None:
    prefix = f"{queue_name}-{uuid.uuid4().hex[:6]}"
    one, two = SignInThrottle(REDIS_URL, prefix), SignInThrottle(REDIS_URL, prefix)
    for _ in range(PER_EMAIL.failures):
        one.failed("ann@example.com", "ip:1")
    assert two.retry_after("ann@example.com", "ip:2") is not None  # the other server knows
    two.succeeded("ann@example.com")
    assert one.retry_after("ann@example.com", "ip:3") is None
    conn = Redis.from_url(REDIS_URL)
    for key in conn.scan_iter(f"*{prefix}*"):
        conn.delete(key)
