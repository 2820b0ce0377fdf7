"""API keys and the signing secret: which account a key belongs to, and the install's own key.

Keys come from API_KEYS (settings) and from the key store (hashed); the install's first key is kept
in DATA_DIR/api-key.txt (mode 0600) so `make run` can print it on every start.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from pipeline.settings import Settings
from taskqueue.store import RunStore, account_for_configured_key, hash_key

LOCAL_KEY_FILE = "api-key.txt"
SECRET_FILE = "secret.key"
WEBHOOK_SECRET_FILE = "webhook-secret.key"


def account_for_key(key: str, settings: Settings, store: RunStore) -> str | None:
    """The account a presented key belongs to, or None. Configured keys are compared in constant time."""
    if not key:
        return None
    return configured_account(key, settings) or store.verify_key(key)


def configured_account(key: str, settings: Settings) -> str | None:
    """The account of a key from API_KEYS, or None; no I/O, so the API checks it on its event loop."""
    presented = hash_key(key)
    matched: str | None = None
    for configured in settings.api_keys:
        # fixed-length digests, every key compared: the time taken says nothing about which (or how much) matched
        if hmac.compare_digest(hash_key(configured), presented) and matched is None:
            matched = configured
    return account_for_configured_key(matched) if matched is not None else None


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def ensure_local_key(settings: Settings, store: RunStore) -> tuple[str, str]:
    """The install's own key and its account: made on first start, read back afterwards."""
    path = settings.data_dir / LOCAL_KEY_FILE
    if path.is_file():
        key = path.read_text(encoding="utf-8").strip()
        account = store.verify_key(key)
        if account:
            return key, account
    key, account = store.create_key(label="local (made by `serve`)")
    _write_private(path, key + "\n")
    return key, account


def adoptable_account(settings: Settings, store: RunStore) -> str | None:
    """For the first user: the install key's account (the runs made before accounts are its), when it exists."""
    if store.has_users():
        return None
    path = settings.data_dir / LOCAL_KEY_FILE
    if not path.is_file():
        return None
    return store.verify_key(path.read_text(encoding="utf-8").strip())


def local_account_id(settings: Settings, store: RunStore) -> str:
    """The owner of runs started from this machine (the UI and the CLI): the install key's account."""
    return ensure_local_key(settings, store)[1]


def signing_secret(settings: Settings) -> str:
    """SECRET_KEY, or one generated once into DATA_DIR/secret.key."""
    return settings.secret_key or _generated_once(settings.data_dir / SECRET_FILE)


def webhook_secret(settings: Settings) -> str:
    """WEBHOOK_SECRET, or one generated once into DATA_DIR/webhook-secret.key (what receivers verify with)."""
    return settings.webhook_secret or _generated_once(settings.data_dir / WEBHOOK_SECRET_FILE)


def _generated_once(path: Path) -> str:
    if path.is_file():
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    value = secrets.token_urlsafe(48)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    _write_private(tmp, value)
    try:
        os.link(tmp, path)  # atomic and refuses to overwrite: when processes race, all use the winner's secret
    except FileExistsError:
        value = path.read_text(encoding="utf-8").strip()
    finally:
        tmp.unlink(missing_ok=True)
    return value
