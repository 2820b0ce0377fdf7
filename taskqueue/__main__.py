"""Command line: `python -m taskqueue serve | worker | migrate | trigger | create-user | create-key | list-keys |
revoke-key | webhook-secret`.

`serve` is what `make run` calls: the web server (UI + API on one port) and a Huey consumer, stopped
together on Ctrl-C. `trigger` is the CLI door into the same queue as the UI and the API.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

from pydantic import ValidationError

from pipeline.edit.frame_format import ASPECT_RATIOS
from pipeline.errors import StudioError
from pipeline.models import CAPTION_LENGTHS, LYRICS_MODES
from pipeline.request import CreateContentRequest
from pipeline.settings import PROJECT_ROOT, Settings, get_settings

DEMO_ARTIST_ID = "1873859c-dd37-4e9a-9bac-80d3558527a9"
STOP_GRACE_SECONDS = 15.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskqueue", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("serve", help="start the web server (UI + API) and a worker; Ctrl-C stops both")
    sub.add_parser("worker", help="start a Huey consumer only (RUNS_IN_FLIGHT runs, WORKERS of them on the CPU)")
    sub.add_parser("migrate", help="bring the run store's tables to this code's schema (serve and worker do it too)")

    trig = sub.add_parser("trigger", help="queue videos for an artist and print the runIds")
    trig.add_argument("--artist", required=True, help="artist account id (or folder slug)")
    trig.add_argument("--template", default=None, help="template id (omit for malleable mode)")
    trig.add_argument("--caption-length", default="none", choices=list(CAPTION_LENGTHS))
    trig.add_argument("--lyrics", default=None, choices=list(LYRICS_MODES),
                      help="lyrics on screen (default: the template's)")
    trig.add_argument("--aspect-ratio", default="9:16", choices=list(ASPECT_RATIOS))
    trig.add_argument("--lipsync", action="store_true")
    trig.add_argument("--upscale", action="store_true")
    trig.add_argument("--batch", type=int, default=1, help="number of videos, 1..30")
    trig.add_argument("--song", action="append", default=None, help="song slug or URL (repeatable)")
    trig.add_argument("--image", action="append", default=None, help="face guide image URL (repeatable)")
    trig.add_argument("--account", default=None, help="owner account (default: this install's key's account)")
    trig.add_argument("--wait", action="store_true", help="print progress until every run has finished")

    user = sub.add_parser("create-user", help="make a user who signs in to the UI (password from standard input)")
    user.add_argument("email")
    user.add_argument("--admin", action="store_true", help="may act for every account and see all runs")
    user.add_argument("--password-file", default=None, help="read the password from this file's first line")

    key = sub.add_parser("create-key", help="make an API key (stored hashed; printed once)")
    owner = key.add_mutually_exclusive_group()
    owner.add_argument("--user", default=None, help="the user (email) whose account the key acts for")
    owner.add_argument("--account", default=None, help="account id the key belongs to (default: a new one)")
    key.add_argument("--label", default="", help="a note to tell keys apart")

    keys = sub.add_parser("list-keys", help="list API keys (ids, labels, use; never the secrets)")
    keys.add_argument("--user", default=None, help="only this user's keys")

    revoke = sub.add_parser("revoke-key", help="revoke an API key by its id (refused from the next request on)")
    revoke.add_argument("key_id")

    sub.add_parser("webhook-secret", help="print the secret webhook receivers verify X-Studio-Signature with")
    return parser


def _store(settings: Settings):
    from taskqueue.store import RunStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return RunStore.for_settings(settings)


# --- trigger ------------------------------------------------------------------------------------

def _readable(exc: ValidationError) -> str:
    from pipeline.request import readable_validation_error

    return "; ".join(readable_validation_error(dict(e))[0] for e in exc.errors())


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def cmd_trigger(args: argparse.Namespace, settings: Settings) -> int:
    from taskqueue.keys import local_account_id
    from taskqueue.tasks import enqueue_runs
    from taskqueue.trigger import trigger

    body: dict[str, Any] = {"artist_account_id": args.artist, "template": args.template,
                            "caption_length": args.caption_length, "lipsync": args.lipsync,
                            "upscale": args.upscale, "batch": args.batch, "songs": args.song, "images": args.image,
                            "lyrics": args.lyrics, "aspect_ratio": args.aspect_ratio}
    store = _store(settings)
    try:
        if not _is_uuid(args.artist):  # a folder slug: the request wants the account id
            from pipeline.artists import find_artist

            body["artist_account_id"] = find_artist(settings, args.artist).account_id
        request = CreateContentRequest.model_validate(body)
        owner = args.account or local_account_id(settings, store)
        response = trigger(request, owner, settings=settings, store=store, enqueue=enqueue_runs)
    except ValidationError as exc:
        print(json.dumps({"status": "error", "error": _readable(exc)}), file=sys.stderr)
        return 2
    except StudioError as exc:
        print(json.dumps(exc.to_dict()), file=sys.stderr)
        return 2
    print(json.dumps(response, indent=2))
    if not args.wait:
        return 0
    return wait_for_runs(store, response["runIds"], settings)


def wait_for_runs(store: Any, run_ids: list[str], settings: Settings, poll_seconds: float = 0.25) -> int:
    """Print a line whenever a run's status, step or percent changes; 0 when all COMPLETED.

    A quarter-second poll of the local store: a 15 s video renders in ~3 s, so a 1 s poll skipped whole steps."""
    seen: dict[str, tuple] = {}
    pending = set(run_ids)
    while pending:
        for run_id in sorted(pending):
            run = store.get(run_id)
            if run is None:
                pending.discard(run_id)
                continue
            state = (run.status, run.step, int(run.progress))
            if seen.get(run_id) != state:
                seen[run_id] = state
                print(f"{run_id}  {run.status:<9} {run.step or '-':<8} {run.progress:5.1f}%", flush=True)
            if run.is_final:
                pending.discard(run_id)
                if run.status == "COMPLETED":
                    from taskqueue.storage import make_storage

                    local = make_storage(settings).local_path(run_id, "video.mp4")
                    where = local or f"{settings.storage_url}/{run_id}/video.mp4 (GET /api/files/{run_id}/video.mp4)"
                    print(f"{run_id}  video: {where}", flush=True)
                else:
                    err = run.error or {}
                    print(f"{run_id}  {run.status}: {err.get('message')} (stage: {err.get('stage')})", flush=True)
        if pending:
            time.sleep(poll_seconds)
    done = [store.get(r) for r in run_ids]
    return 0 if all(r is not None and r.status == "COMPLETED" for r in done) else 1


# --- migrate ------------------------------------------------------------------------------------

def cmd_migrate(settings: Settings) -> int:
    from taskqueue.store import migrate

    print(migrate(settings.sqlalchemy_url, settings.migrations_dir).describe(), flush=True)
    return 0


# --- keys ---------------------------------------------------------------------------------------

class CliError(Exception):
    """Bad input on the command line: one line on standard error, exit code 2."""


def _user(store: Any, email: str) -> Any:
    user = store.user_by_email(email)
    if user is None:
        raise CliError(f"No user with the email {email.strip()!r}")
    return user


def cmd_create_user(args: argparse.Namespace, settings: Settings) -> int:
    from taskqueue.accounts import hash_password
    from taskqueue.keys import adoptable_account
    from taskqueue.store import AlreadyExists, normal_email

    email = normal_email(args.email)
    if "@" not in email or email.startswith("@") or email.endswith("@") or len(email) > 320 or " " in email:
        raise CliError(f"{args.email!r} is not an email address")
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as fh:
                password = fh.readline().rstrip("\r\n")
        except OSError as exc:
            raise CliError(f"Cannot read the password file: {exc.strerror or exc}") from None
    else:
        if sys.stdin.isatty():
            import getpass

            password = getpass.getpass("Password: ")
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    store = _store(settings)
    if store.user_by_email(email) is not None:
        raise CliError(f"A user with the email {email} already exists")
    try:
        # The first user takes over the install's own account, so the runs made before accounts stay theirs
        user = store.create_user(email, hash_password(password), is_admin=args.admin,
                                 account_id=adoptable_account(settings, store))
    except AlreadyExists:
        raise CliError(f"A user with the email {email} already exists") from None
    print(json.dumps({"userId": user.id, "email": user.email, "admin": user.is_admin, "accountId": user.account_id},
                     indent=2))
    return 0


def cmd_create_key(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    account = _user(store, args.user).account_id if args.user else args.account
    key, info = store.make_key(account_id=account, label=args.label)
    print(json.dumps({"apiKey": key, "keyId": info.id, "accountId": info.account_id, "label": args.label}, indent=2))
    print("Keep this key: it is stored hashed and cannot be shown again.", file=sys.stderr)
    return 0


def _when(seconds: float | None) -> str | None:
    from api.shapes import iso

    return iso(seconds) if seconds else None


def cmd_list_keys(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    account = _user(store, args.user).account_id if args.user else None
    rows = [{"keyId": k.id, "accountId": k.account_id, "label": k.label, "createdAt": _when(k.created_at),
             "lastUsedAt": _when(k.last_used_at), "revokedAt": _when(k.revoked_at)} for k in store.list_keys(account)]
    print(json.dumps(rows, indent=2))
    return 0


def cmd_revoke_key(args: argparse.Namespace, settings: Settings) -> int:
    if not _store(settings).revoke_key(args.key_id.strip()):
        raise CliError(f"No API key {args.key_id!r} that is not already revoked (see list-keys)")
    print(f"Revoked {args.key_id.strip()}")
    return 0


# --- worker -------------------------------------------------------------------------------------

def refuse_bad_providers(settings: Settings) -> bool:
    """A provider setting or ComfyUI workflow that cannot work stops the start, with what to fix."""
    from pipeline.providers.overview import startup_problems

    problems = startup_problems(settings)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return bool(problems)


def cmd_worker(settings: Settings) -> int:
    if refuse_bad_providers(settings):
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from taskqueue.huey_app import huey
    from taskqueue.tasks import reap, recover_queue

    store = _store(settings)
    try:
        reap(settings, store)
        recover_queue(store)
    finally:
        store.close()  # the workers use the process's own store (taskqueue.tasks.process_store)
    from taskqueue.consumer import make_consumer, put_back_runs_in_flight
    from taskqueue.tasks import stop_worker_heartbeat

    make_consumer(huey, settings).run()
    put_back_runs_in_flight(STOP_GRACE_SECONDS - 5)  # after SIGTERM: runs in flight go back to the queue
    stop_worker_heartbeat()  # its row goes now, not an hour later (a thread still in a run kept it)
    return 0


# --- serve --------------------------------------------------------------------------------------

def example_curl(base_url: str, key: str) -> str:
    body = json.dumps({"artist_account_id": DEMO_ARTIST_ID, "template": "artist-caption-stage",
                       "caption_length": "short"})
    return (f"curl -sS -X POST {base_url}/api/content/create -H {shlex.quote('x-api-key: ' + key)} "
            f"-H 'Content-Type: application/json' -d {shlex.quote(body)}")


def server_command(settings: Settings) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "server:app", "--host", settings.host, "--port", str(settings.port),
            "--timeout-graceful-shutdown", "5", "--log-level", "warning"]


def _stop(proc: subprocess.Popen, sig: int, *, force: bool = False) -> None:
    if force or proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)


def wait_group_gone(pgid: int, timeout: float) -> bool:
    """Wait for every process of a group to exit (children finishing their shutdown work)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def cmd_serve(settings: Settings) -> int:
    from taskqueue.accounts import refusal_to_serve
    from taskqueue.keys import ensure_local_key

    if refuse_bad_providers(settings):
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = _store(settings)
    refusal = refusal_to_serve(settings, store)
    if refusal:
        store.close()
        print(refusal, file=sys.stderr)
        return 2
    key, account = ensure_local_key(settings, store)
    store.close()
    shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    base_url = (settings.public_base_url or f"http://{shown_host}:{settings.port}").rstrip("/")
    print(f"Studio:   {base_url}/", flush=True)
    print(f"API docs: {base_url}/api/docs", flush=True)
    print(f"API key:  {key}   (account {account}; kept in {settings.data_dir / 'api-key.txt'})", flush=True)
    print(f"Try it:\n  {example_curl(base_url, key)}", flush=True)
    print(f"Then poll: curl -sS -H 'x-api-key: {key}' '{base_url}/api/tasks/runs?runId=<runId>'", flush=True)

    # Own sessions: a terminal's Ctrl-C reaches only us, and we stop the children in order.
    server = subprocess.Popen(server_command(settings), cwd=PROJECT_ROOT, start_new_session=True)
    worker = subprocess.Popen([sys.executable, "-m", "taskqueue", "worker"], cwd=PROJECT_ROOT,
                              start_new_session=True)
    stopping = {"signal": None}

    def on_signal(signum: int, _frame: Any) -> None:
        stopping["signal"] = signum

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    exit_code = 0
    while stopping["signal"] is None:
        if server.poll() is not None or worker.poll() is not None:
            which = "web server" if server.poll() is not None else "worker"
            print(f"The {which} stopped unexpectedly; stopping the rest.", file=sys.stderr, flush=True)
            exit_code = 1
            break
        time.sleep(0.3)
    print("Stopping...", flush=True)
    # SIGTERM makes the consumer interrupt running renders; they go back to the queue for the next start.
    _stop(worker, signal.SIGTERM)
    _stop(server, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for proc in (worker, server):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _stop(proc, signal.SIGKILL)
            proc.wait()
    for proc in (worker, server):  # anything the children left in their groups
        if not wait_group_gone(proc.pid, 3.0):
            _stop(proc, signal.SIGKILL, force=True)
    print("Stopped.", flush=True)
    return exit_code


def main(argv: list[str] | None = None) -> int:
    from taskqueue.schema import exit_if_unusable

    with exit_if_unusable():  # a bad DATABASE_URL or a too-new schema: one line and exit code 2
        return run_command(argv)


def run_command(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    if args.command == "serve":
        return cmd_serve(settings)
    if args.command == "worker":
        return cmd_worker(settings)
    if args.command == "migrate":
        return cmd_migrate(settings)
    if args.command == "trigger":
        return cmd_trigger(args, settings)
    commands = {"create-user": cmd_create_user, "create-key": cmd_create_key, "list-keys": cmd_list_keys,
                "revoke-key": cmd_revoke_key}
    if args.command in commands:
        try:
            return commands[args.command](args, settings)
        except (CliError, StudioError) as exc:
            print(str(exc) if isinstance(exc, CliError) else exc.message, file=sys.stderr)
            return 2
    if args.command == "webhook-secret":
        from taskqueue.keys import webhook_secret

        print(webhook_secret(settings))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
