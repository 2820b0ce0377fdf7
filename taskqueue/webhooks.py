"""Webhooks, sent by the worker side from rows in the run store: signed, retried with backoff, restart-proof.

A thread in each worker process (started with the Huey worker, like its heartbeat) turns the waiting rows of
finished runs and batches into pending deliveries with a frozen body, and tries each due one: a 2xx answer
within WEBHOOK_TIMEOUT_SECONDS delivers it, anything else waits WEBHOOK_BACKOFF_SECONDS x 2^(tries-1) and tries
again, up to WEBHOOK_MAX_ATTEMPTS. Receivers check `X-Studio-Signature` (see `signature`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx

from pipeline.errors import FetchError
from pipeline.fetch import check_url, limits_from_settings, pinned_transport, resolve_host
from pipeline.settings import Settings
from taskqueue.background import BackgroundLoop
from taskqueue.keys import webhook_secret
from taskqueue.store import CANCELED, COMPLETED, CRASHED, FAILED, TIMED_OUT, Run, RunStore

log = logging.getLogger("taskqueue.webhooks")

RUN_EVENTS = {COMPLETED: "run.completed", FAILED: "run.failed", CANCELED: "run.canceled", CRASHED: "run.crashed",
              TIMED_OUT: "run.timed_out"}
LEASE_GRACE_SECONDS = 5.0  # a try's lease outlives its time-out by this much


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`: what X-Studio-Signature carries."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def backoff_seconds(settings: Settings, attempt: int) -> float:
    """The wait after failed try number `attempt` (1-based)."""
    return settings.webhook_backoff_seconds * 2 ** (attempt - 1)


def api_base(settings: Settings) -> str:
    """The API's address for links in webhook bodies (no request to take it from on the worker side)."""
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/") + "/api"
    return f"http://{settings.host}:{settings.port}/api"


def batch_status(batch: list[Run]) -> str:
    done = sum(r.status == COMPLETED for r in batch)
    return "completed" if done == len(batch) else ("failed" if done == 0 else "partial")


class WebhookSender:
    """Makes deliveries of finished runs and batches, and sends the due ones (one pass per `run_once`)."""

    def __init__(self, settings: Settings, store: RunStore):
        self.settings, self.store = settings, store
        self.secret = webhook_secret(settings)
        from api.context import UrlSigner  # the run object of the API, signed download links and all
        from api.shapes import shape_run

        self._shape_run = shape_run
        self._signer = UrlSigner.for_settings(settings)
        self._base = api_base(settings)

    def run_object(self, run: Run) -> dict:
        return self._shape_run(run, self._base, self._signer)

    def promote(self) -> int:
        """Freeze the body of each delivery whose run (or whole batch) is now final."""
        made = 0
        for row in self.store.webhooks_to_promote():
            batch = self.store.runs_of_batch(row["batch_id"])
            if row["run_id"] is None:
                event = "batch.finished"
                payload: dict[str, Any] = {"type": event, "batchId": row["batch_id"], "status": batch_status(batch),
                                           "runs": [self.run_object(r) for r in batch]}
            else:
                run = next(r for r in batch if r.id == row["run_id"])
                event = RUN_EVENTS.get(run.status, "run." + run.status.lower())
                payload = {"type": event, "run": self.run_object(run)}
            made += self.store.promote_webhook(row["id"], event, payload)
        return made

    def send_due(self) -> int:
        sent = 0
        for row in self.store.due_webhooks():
            if self.store.claim_webhook(row, self.settings.webhook_timeout_seconds + LEASE_GRACE_SECONDS):
                self.send(row)
                sent += 1
        return sent

    def send(self, row: dict) -> None:
        """One try of one delivery, and its outcome in the row."""
        attempt = int(row["attempts"]) + 1
        body = json.dumps(row["payload"], separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        status, error = self._post(row["url"], body, row["id"], row["event"])
        delivered = status is not None and 200 <= status < 300
        now = time.time()
        if delivered:
            next_at = None
        elif attempt < self.settings.webhook_max_attempts:
            next_at = now + backoff_seconds(self.settings, attempt)
        else:
            next_at = None
        self.store.record_webhook_try(row["id"], {"attempt": attempt, "at": now, "status": status, "error": error},
                                      delivered=delivered, next_at=next_at)
        log.info("webhook %s (%s) try %s to %s: %s", row["id"], row["event"], attempt, row["url"],
                 status if delivered else (error or status))

    def _post(self, url: str, body: bytes, delivery_id: str, event: str) -> tuple[int | None, str | None]:
        limits = limits_from_settings(self.settings)
        try:
            # the same rules as any user-given URL, at send time too (the name may point elsewhere by now)
            check_url(url, limits, "webhook_url")
            timestamp = int(time.time())
            headers = {"Content-Type": "application/json", "User-Agent": "artist-content-studio-webhooks",
                       "X-Studio-Signature": signature(self.secret, timestamp, body),
                       "X-Studio-Delivery": delivery_id, "X-Studio-Event": event}
            transport = pinned_transport(limits, resolve_host, "webhook_url")
            with httpx.Client(transport=transport, timeout=self.settings.webhook_timeout_seconds,
                              follow_redirects=False) as client:
                answer = client.post(url, content=body, headers=headers)
        except FetchError as exc:
            return None, exc.message
        except httpx.TimeoutException:
            return None, f"no answer within {self.settings.webhook_timeout_seconds:g} s"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300]
        if 200 <= answer.status_code < 300:
            return answer.status_code, None
        return answer.status_code, f"HTTP {answer.status_code}"

    def run_once(self) -> int:
        return self.promote() + self.send_due()


class WebhookThread(BackgroundLoop):
    """The sender's loop in a worker process; several workers (and machines) share the rows safely."""

    def __init__(self, settings: Settings, store: RunStore):
        super().__init__("webhooks", max(0.1, settings.webhook_poll_seconds))
        self.sender = WebhookSender(settings, store)

    def tick(self) -> None:
        self.sender.run_once()  # a failing pass (the database away) is logged; the rows wait for the next

    def stop(self) -> None:
        self._stop.set()  # a delivery in progress may take its whole time limit to answer
        self._thread.join(timeout=self.sender.settings.webhook_timeout_seconds + 1)
