"""Load on POST /api/content/create: N requests from C concurrent clients, batch 1..30, some invalid on purpose.

    .venv/bin/python -m bench.load_create --requests 500 --clients 20

Without --base-url it starts its own server (no consumer) in a temporary folder. Runs are not rendered:
every accepted run must exist in the run store as QUEUED (`lost` counts accepted run ids the store lacks,
`extra` runs the store holds that no answer named); with --cancel (the default) every accepted run is then
cancelled through the API, so all of them end in a final state (CANCELED), which is checked too.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

DEMO = "1873859c-dd37-4e9a-9bac-80d3558527a9"


@dataclass(frozen=True)
class Planned:
    body: bytes
    valid: bool
    kind: str


@dataclass
class Result:
    kind: str
    valid: bool
    status: int  # 0: no answer (connection error or time-out)
    seconds: float
    run_ids: list[str] = field(default_factory=list)
    error: str = ""


INVALID_BODIES: list[tuple[str, object]] = [
    ("batch 0", {"artist_account_id": DEMO, "batch": 0}),
    ("batch 31", {"artist_account_id": DEMO, "batch": 31}),
    ("batch -1", {"artist_account_id": DEMO, "batch": -1}),
    ('batch "3"', {"artist_account_id": DEMO, "batch": "3"}),
    ("batch 1.5", {"artist_account_id": DEMO, "batch": 1.5}),
    ("bad uuid", {"artist_account_id": "1873859c-dd37-4e9a"}),
    ("unknown artist", {"artist_account_id": "00000000-0000-4000-8000-000000000000"}),
    ("private webhook", {"artist_account_id": DEMO, "webhook_url": "http://10.0.0.1/hook"}),  # extra fields are fine
    ("not an object", [DEMO]),
    ("file url", {"artist_account_id": DEMO, "images": ["file:///etc/passwd"]}),
]


def plan_requests(n: int, invalid_share: float, seed: int) -> list[Planned]:
    rng = random.Random(seed)
    planned = []
    for _ in range(n):
        if rng.random() < invalid_share:
            kind, body = rng.choice(INVALID_BODIES)
            planned.append(Planned(json.dumps(body).encode(), False, kind))
        else:
            body = {"artist_account_id": DEMO, "batch": rng.randint(1, 30),
                    "caption_length": rng.choice(["none", "short", "medium", "long"]),
                    "template": rng.choice([None, "artist-caption-stage"])}
            planned.append(Planned(json.dumps(body).encode(), True, f"batch {body['batch']}"))
    return planned


def send_all(base_url: str, key: str, planned: list[Planned], clients: int, timeout: float) -> list[Result]:
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base_url, headers={"x-api-key": key, "content-type":
                                        "application/json"}, timeout=timeout)
        return local.client

    def one(p: Planned) -> Result:
        start = time.perf_counter()
        try:
            r = client().post("/api/content/create", content=p.body)
        except httpx.HTTPError as exc:
            return Result(p.kind, p.valid, 0, time.perf_counter() - start, error=type(exc).__name__)
        seconds = time.perf_counter() - start
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        return Result(p.kind, p.valid, r.status_code, seconds, list(body.get("runIds") or []),
                      "" if r.status_code == 202 else str(body.get("error", r.text[:200])))

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, planned))


def cancel_all(base_url: str, key: str, run_ids: list[str], clients: int) -> Counter:
    local = threading.local()

    def one(run_id: str) -> int:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base_url, headers={"x-api-key": key}, timeout=60)
        try:
            return local.client.post(f"/api/tasks/runs/{run_id}/cancel").status_code
        except httpx.HTTPError:
            return 0

    with ThreadPoolExecutor(clients) as pool:
        return Counter(pool.map(one, run_ids))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def summarise(results: list[Result], store_ids: dict[str, str], wall: float, cancels: Counter | None) -> dict:
    accepted = [r for r in results if r.status == 202]
    accepted_ids = [rid for r in accepted for rid in r.run_ids]
    rejected = Counter(r.status for r in results if r.status not in (0, 202))
    latencies = [r.seconds * 1000 for r in results if r.status]
    accepted_latency = [r.seconds * 1000 for r in accepted]
    final = {"COMPLETED", "FAILED", "CANCELED", "CRASHED", "TIMED_OUT"}
    return {
        "requests": len(results),
        "wall_seconds": round(wall, 2),
        "requests_per_second": round(len(results) / wall, 1) if wall else None,
        "accepted": len(accepted),
        "accepted_runs": len(accepted_ids),
        "rejected_by_status": dict(sorted(rejected.items())),
        "no_answer": sum(r.status == 0 for r in results),
        "valid_rejected": sum(1 for r in results if r.valid and r.status != 202),
        "invalid_accepted": sum(1 for r in results if not r.valid and r.status == 202),
        "server_errors": sum(1 for r in results if r.status >= 500),
        "duplicate_run_ids": len(accepted_ids) - len(set(accepted_ids)),
        "lost": sum(1 for rid in accepted_ids if rid not in store_ids),
        "extra": len(set(store_ids) - set(accepted_ids)),
        "store_status": dict(Counter(store_ids.values())),
        "not_final": sum(1 for s in store_ids.values() if s not in final) if cancels is not None else None,
        "cancel_answers": dict(cancels) if cancels is not None else None,
        "latency_ms": {"p50": round(statistics.median(latencies), 1) if latencies else None,
                       "p99": round(percentile(latencies, 99), 1), "max": round(max(latencies, default=0), 1)},
        "accepted_latency_ms": {"p50": round(statistics.median(accepted_latency), 1) if accepted_latency else None,
                                "p99": round(percentile(accepted_latency, 99), 1)},
        "sample_errors": sorted({f"{r.status} {r.kind}: {r.error}" for r in results if r.status != 202})[:12],
    }


def store_statuses(database_url: str, owner: str | None) -> dict[str, str]:
    from taskqueue.store import RunStore, runs

    store = RunStore(database_url)
    try:
        query = runs.select().with_only_columns(runs.c.id, runs.c.status)
        if owner:
            query = query.where(runs.c.owner == owner)
        with store.engine.connect() as conn:
            return {row[0]: row[1] for row in conn.execute(query)}
    finally:
        store.close()


@contextmanager
def own_server(rate_limit: int) -> Iterator[tuple[str, str, str, str]]:
    """A studio (server only, no consumer) in a temporary folder: (base url, key, database url, owner)."""
    from tests.servers import ACCOUNT_A, KEY_A, running_studio

    with tempfile.TemporaryDirectory(prefix="load-create-") as tmp, \
            running_studio(Path(tmp), worker=False, RATE_LIMIT_PER_MINUTE=str(rate_limit),
                           MAX_ACTIVE_RUNS_PER_ACCOUNT="1000000") as studio:  # a load test, not a quota test
        yield studio.base_url, KEY_A, f"sqlite:///{studio.data_dir / 'runs.sqlite3'}", ACCOUNT_A


def run(args: argparse.Namespace) -> dict:
    planned = plan_requests(args.requests, args.invalid_share, args.seed)

    def go(base_url: str, key: str, database_url: str, owner: str | None) -> dict:
        before = set(store_statuses(database_url, owner))
        start = time.perf_counter()
        results = send_all(base_url, key, planned, args.clients, args.timeout)
        wall = time.perf_counter() - start
        alive = httpx.get(base_url + "/api/accounts/id", headers={"x-api-key": key}, timeout=10).status_code
        cancels = None
        if args.cancel:
            ids = [rid for r in results if r.status == 202 for rid in r.run_ids]
            cancels = cancel_all(base_url, key, ids, args.clients)
        after = {k: v for k, v in store_statuses(database_url, owner).items() if k not in before}
        summary = summarise(results, after, wall, cancels)
        summary["server_answering_after"] = alive == 200
        summary["clients"] = args.clients
        summary["runs_end_state"] = "CANCELED through the API" if args.cancel else "left QUEUED (no consumer)"
        return summary

    if args.base_url:
        return go(args.base_url, args.key, args.database_url, args.owner)
    with own_server(args.rate_limit) as (base_url, key, database_url, owner):
        return go(base_url, key, database_url, owner)


def print_table(s: dict) -> None:
    rows = [
        ("requests / clients", f"{s['requests']} / {s['clients']}"),
        ("wall time", f"{s['wall_seconds']} s ({s['requests_per_second']} req/s)"),
        ("accepted (202)", f"{s['accepted']} requests, {s['accepted_runs']} runs"),
        ("rejected by status", ", ".join(f"{k}: {v}" for k, v in s["rejected_by_status"].items()) or "none"),
        ("no answer / 5xx", f"{s['no_answer']} / {s['server_errors']}"),
        ("valid rejected / invalid accepted", f"{s['valid_rejected']} / {s['invalid_accepted']}"),
        ("lost / extra / duplicate run ids", f"{s['lost']} / {s['extra']} / {s['duplicate_run_ids']}"),
        ("runs in store by status", ", ".join(f"{k}: {v}" for k, v in s["store_status"].items())),
        ("runs not in a final state", str(s["not_final"]) if s["not_final"] is not None else "n/a (no --cancel)"),
        ("latency all p50 / p99 / max", "{p50} / {p99} / {max} ms".format(**s["latency_ms"])),
        ("latency accepted p50 / p99", "{p50} / {p99} ms".format(**s["accepted_latency_ms"])),
        ("server answering afterwards", str(s["server_answering_after"])),
        ("runs end state", s["runs_end_state"]),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--invalid-share", type=float, default=0.1, help="share of deliberately invalid requests")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--cancel", action=argparse.BooleanOptionalAction, default=True,
                        help="cancel every accepted run afterwards (they end CANCELED, a final state)")
    parser.add_argument("--base-url", help="an already running server (default: start one)")
    parser.add_argument("--key", help="API key for --base-url")
    parser.add_argument("--database-url", help="the run store of --base-url, to check that nothing was lost")
    parser.add_argument("--owner", help="the key's account id (to count only its runs)")
    parser.add_argument("--rate-limit", type=int, default=1_000_000, help="RATE_LIMIT_PER_MINUTE of the own server")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    if args.base_url and not (args.key and args.database_url):
        parser.error("--base-url needs --key and --database-url")
    summary = run(args)
    print_table(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    ok = (summary["lost"] == 0 and summary["extra"] == 0 and summary["no_answer"] == 0
          and summary["server_errors"] == 0 and summary["invalid_accepted"] == 0 and summary["valid_rejected"] == 0
          and summary["server_answering_after"] and summary["not_final"] in (0, None))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
