"""Remote calls' retries and errors: backoff, Retry-After, and HTTP failures turned into clear ProviderErrors."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from pipeline.errors import ProviderError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3
    backoff_seconds: float = 2.0
    timeout_seconds: float = 600.0
    poll_seconds: float = 2.0
    max_wait_seconds: float = 60.0  # no single wait (backoff or Retry-After) is longer than this

    @classmethod
    def from_settings(cls, settings) -> RetryPolicy:  # noqa: ANN001 - Settings; kept light for tests
        return cls(retries=max(0, settings.provider_retries), backoff_seconds=settings.provider_backoff_seconds,
                   timeout_seconds=settings.provider_timeout_seconds, poll_seconds=settings.provider_poll_seconds)


class Retryable(Exception):
    """A failure worth another try (429, 5xx, time-out); `retry_after` is the server's wish, if it said one."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def call_with_retries(call: Callable[[], T], policy: RetryPolicy, label: str,
                      sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `call`; on Retryable wait (Retry-After, else exponential backoff) and try again, then give up clearly."""
    attempt = 0
    while True:
        try:
            return call()
        except Retryable as exc:
            if attempt >= policy.retries:
                tries = "1 try" if attempt == 0 else f"{attempt + 1} tries"
                raise ProviderError(f"{label}: gave up after {tries}: {exc.message}", transient=True) from None
            wait = exc.retry_after if exc.retry_after is not None else policy.backoff_seconds * 2**attempt
            sleep(max(0.0, min(wait, policy.max_wait_seconds)))
            attempt += 1


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    lower = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lower:
        try:
            return float(lower["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = lower.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def reason_from_body(body: object) -> str:
    """The human part of an error body: OpenAI's error.message, fal's detail (text or validation list)."""
    if isinstance(body, (bytes, str)):
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        try:
            body = json.loads(text)
        except ValueError:
            return text.strip()[:300] or "no reason given"
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str) and err:
            return err
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list):
            parts = []
            for item in detail:
                if isinstance(item, dict):
                    loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                    parts.append(f"{loc}: {item.get('msg', '')}".strip(": "))
            if parts:
                return "; ".join(parts)
        if body.get("message"):
            return str(body["message"])
    return json.dumps(body)[:300] if body is not None else "no reason given"


def raise_for_status(label: str, status: int, body: object, headers: Mapping[str, str], key_name: str) -> None:
    """Turn an HTTP failure into the right error: retry 429/5xx, explain 401/400/422, refuse the rest."""
    if status < 400:
        return
    reason = reason_from_body(body)
    if status == 429:
        raise Retryable(f"rate limited (429): {reason}", parse_retry_after(headers))
    if status >= 500 or status == 408:
        raise Retryable(f"server error {status}: {reason}", parse_retry_after(headers))
    if status in (401, 403):
        raise ProviderError(f"{label}: the API key was refused ({status}, bad key): {reason}. Check {key_name}.")
    if status in (400, 422):
        raise ProviderError(f"{label} refused the input ({status}): {reason}")
    if status == 404:
        raise ProviderError(f"{label}: not found (404): {reason}. Is the model name right?")
    raise ProviderError(f"{label}: unexpected answer {status}: {reason}")


def malformed(label: str, what: str) -> ProviderError:
    return ProviderError(f"{label}: malformed answer: {what}")
