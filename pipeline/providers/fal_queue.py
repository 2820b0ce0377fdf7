"""fal's queue REST API: submit, poll the status until COMPLETED, fetch the result; cancel a job no one will fetch.

Each request is retried on 429/5xx/time-outs; a job holds no CPU slot while it waits (waits.remote_wait).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from pipeline.errors import Cancelled, ProviderError
from pipeline.providers.http_retries import Retryable, RetryPolicy, call_with_retries, malformed, raise_for_status
from pipeline.providers.waits import remote_wait, sleep_unless_cancelled, wait_cancellable
from pipeline.settings import Settings

KEY_NAME = "FAL_KEY"
REQUEST_TIMEOUT_CAP = 120.0  # one HTTP request (submit, status, result) never waits longer than this


@dataclass
class FalQueue:
    """A client for fal's queue: submit, status, result, cancel — with retries on each request."""

    settings: Settings
    sleep: Any = sleep_unless_cancelled  # a poll wait that a cancel ends early
    policy: RetryPolicy = field(init=False)

    def __post_init__(self) -> None:
        self.policy = RetryPolicy.from_settings(self.settings)
        self.base = self.settings.fal_base_url.rstrip("/")
        timeout = min(self.policy.timeout_seconds, REQUEST_TIMEOUT_CAP)
        self.http = httpx.Client(timeout=httpx.Timeout(timeout), trust_env=False,
                                 headers={"Authorization": f"Key {self.settings.fal_key or ''}",
                                          "Content-Type": "application/json"})
        self.request_timeout = timeout

    def _request(self, label: str, method: str, url: str, body: dict | None = None) -> Any:
        def attempt() -> Any:
            try:
                resp = wait_cancellable(lambda: self.http.request(method, url, json=body))
            except httpx.TimeoutException:
                raise Retryable(f"no answer within {self.request_timeout:g} s") from None
            except httpx.TransportError as exc:
                raise Retryable(f"could not connect ({type(exc).__name__})") from None
            raise_for_status(label, resp.status_code, resp.content, resp.headers, KEY_NAME)
            try:
                return resp.json()
            except ValueError:
                raise malformed(label, f"expected JSON, got {resp.text[:120]!r}") from None

        return call_with_retries(attempt, self.policy, label, self.sleep)

    def _urls(self, model: str, submitted: dict) -> tuple[str, str, str]:
        """status/result/cancel URLs: the ones fal returned, else built from owner/app (fal drops sub-paths)."""
        request_id = submitted["request_id"]
        app = "/".join(model.split("/")[:2])
        root = f"{self.base}/{app}/requests/{request_id}"
        return (submitted.get("status_url") or f"{root}/status", submitted.get("response_url") or root,
                submitted.get("cancel_url") or f"{root}/cancel")

    def run(self, model: str, arguments: dict) -> dict:
        """Submit a job and wait for its result (holding no CPU slot); cancel it at fal when the run is cancelled
        or the time-out passes."""
        with remote_wait("fal", self.settings.fal_max_in_flight):
            return self._run(model, arguments)

    def _run(self, model: str, arguments: dict) -> dict:
        label = f"fal:{model}"
        submitted = self._request(label, "POST", f"{self.base}/{model}", arguments)
        if not isinstance(submitted, dict) or not submitted.get("request_id"):
            raise malformed(label, "the submit answer has no request_id")
        status_url, result_url, cancel_url = self._urls(model, submitted)
        try:
            return self._wait(label, status_url, result_url, cancel_url)
        except Cancelled:
            self._cancel(label, cancel_url)  # nobody will fetch it: fal stops the job (and its bill)
            raise

    def _wait(self, label: str, status_url: str, result_url: str, cancel_url: str) -> dict:
        deadline = time.monotonic() + self.policy.timeout_seconds
        while True:
            status = self._request(label, "GET", status_url)
            state = status.get("status") if isinstance(status, dict) else None
            if state == "COMPLETED":
                if status.get("error"):
                    raise ProviderError(f"{label} failed: {status['error']}"
                                        + (f" ({status['error_type']})" if status.get("error_type") else ""))
                break
            if state in ("FAILED", "CANCELED", "CANCELLED"):
                raise ProviderError(f"{label} ended {state}: {status.get('error') or 'no reason given'}")
            if state not in ("IN_QUEUE", "IN_PROGRESS"):
                raise malformed(label, f"unknown job status {state!r}")
            if time.monotonic() >= deadline:
                self._cancel(label, cancel_url)
                raise ProviderError(f"{label}: the job did not finish within {self.policy.timeout_seconds:g} s "
                                    "and was cancelled", transient=True)
            self.sleep(min(self.policy.poll_seconds, max(0.0, deadline - time.monotonic())))
        result = self._request(label, "GET", result_url)
        if not isinstance(result, dict):
            raise malformed(label, "the result is not a JSON object")
        return result

    def _cancel(self, label: str, cancel_url: str) -> None:
        with contextlib.suppress(httpx.HTTPError):  # best effort: the job is abandoned either way
            self.http.put(cancel_url, timeout=10)
