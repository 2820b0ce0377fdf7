"""The run store's accounts on SQLite and PostgreSQL: the 0003 upgrade keeps the single account's keys and runs,
users, key revocation, and the per-account quota counted in the insert's transaction (racing creates included)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine

from taskqueue.accounts import check_password, hash_password
from taskqueue.keys import adoptable_account, ensure_local_key
from taskqueue.schema import MIGRATIONS_DIR, _config
from taskqueue.store import AlreadyExists, NewRun, QuotaExceeded, RunStore, api_keys, hash_key, runs
from tests.conftest import throwaway_database

OLD_KEY = "sk_made-before-accounts"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.sqlite3'}"
        return
    with throwaway_database("studio_accts_") as pg:
        yield pg


def _new_run() -> NewRun:
    return NewRun(artist_account_id="1873859c-dd37-4e9a-9bac-80d3558527a9", artist_slug="demo", template=None,
                  request={}, seed=1)


def test_the_upgrade_keeps_the_single_account_s_keys_and_runs(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:  # the last release's schema, with its rows
        command.upgrade(_config(MIGRATIONS_DIR, conn), "0002_webhook_deliveries")
        conn.execute(api_keys.insert().values(key_hash=hash_key(OLD_KEY), account_id="acct-old", label="local",
                                              created_at=1.0))  # only the columns 0002 has
        conn.execute(runs.insert().values(
            id="run_old", batch_id="batch_old", owner="acct-old", artist_account_id="a", artist_slug="a",
            template=None, request={}, seed=1, status="COMPLETED", progress=100.0, timeline=[], attempts=1,
            created_at=1.0, cancel_requested=False))
    engine.dispose()
    store = RunStore(url)  # upgrades to head
    try:
        assert store.verify_key(OLD_KEY) == "acct-old"
        (key,) = store.list_keys("acct-old")
        assert key.id == "key_" + hash_key(OLD_KEY)[:16] and key.revoked_at is None and key.last_used_at
        assert [r.id for r in store.list_runs("acct-old")] == ["run_old"]
        assert store.revoke_key(key.id) and store.verify_key(OLD_KEY) is None
    finally:
        store.close()


def test_users_keys_and_revocation(url: str, settings) -> None:  # noqa: ANN001 - the conftest fixture
    store = RunStore(url)
    try:
        local_key, local_account = ensure_local_key(settings, store)
        # the first user takes over the install's account (its runs stay theirs); later ones get their own
        assert adoptable_account(settings, store) == local_account
        first = store.create_user("Ann@Example.com ", hash_password("password-1"), is_admin=True,
                                  account_id=adoptable_account(settings, store))
        assert first.email == "ann@example.com" and first.account_id == local_account
        assert adoptable_account(settings, store) is None
        second = store.create_user("bo@example.com", hash_password("password-2"))
        assert second.account_id != first.account_id and not second.is_admin
        with pytest.raises(AlreadyExists):
            store.create_user("ANN@example.com", hash_password("password-3"))
        assert check_password(store, "ann@example.com", "password-1") == first
        assert check_password(store, "ann@example.com", "password-2") is None
        assert check_password(store, "nobody@example.com", "password-1") is None
        assert store.is_admin_account(first.account_id) and not store.is_admin_account(second.account_id)

        plaintext, info = store.make_key(second.account_id, "ci")
        assert store.verify_key(plaintext) == second.account_id
        assert not store.revoke_key(info.id, account_id=first.account_id)  # another account's key: untouched
        assert store.verify_key(plaintext) == second.account_id
        assert store.revoke_key(info.id, account_id=second.account_id)
        assert store.verify_key(plaintext) is None and store.verify_key(local_key) == local_account
        assert not store.revoke_key(info.id)  # already revoked
        assert [k.id for k in store.list_keys(second.account_id)] == [info.id]
    finally:
        store.close()


def test_the_quota_refuses_a_whole_batch_and_holds_under_racing_creates(url: str) -> None:
    store = RunStore(url)
    try:
        store.create_batch("acct", [_new_run() for _ in range(2)], max_active=3)
        with pytest.raises(QuotaExceeded) as refused:
            store.create_batch("acct", [_new_run() for _ in range(2)], max_active=3)
        assert (refused.value.active, refused.value.limit) == (2, 3)
        assert store.active_count("acct") == 2  # nothing of the refused batch
        store.create_batch("other", [_new_run() for _ in range(3)], max_active=3)  # per account

        made, errors = [], []

        def one() -> None:
            try:
                made.extend(store.create_batch("racer", [_new_run()], max_active=4))
            except QuotaExceeded as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(made) == 4 and len(errors) == 6 and store.active_count("racer") == 4
    finally:
        store.close()


def test_claims_take_turns_across_accounts(url: str) -> None:
    clock = iter(float(t) for t in range(100, 10_000))
    store = RunStore(url, clock=lambda: next(clock))
    try:
        a_runs = [r.id for r in store.create_batch("acct-a", [_new_run() for _ in range(10)])]
        (b_run,) = [r.id for r in store.create_batch("acct-b", [_new_run()])]
        taken = [store.claim_next("w1") for _ in range(4)]
        assert taken[1] == b_run  # B's run starts before A's second (a batch's runs go in no particular order)
        assert set(taken) - {b_run} <= set(a_runs) and len(set(taken)) == 4
        # a retry waits out its delay: no claim takes it before then
        assert store.requeue(taken[2], delay=10_000)
        rest = [store.claim_next("w1") for _ in range(8)]
        assert sorted(rest[:7]) == sorted(set(a_runs) - set(taken)) and rest[7] is None
        assert store.get(taken[2]).status == "QUEUED"
    finally:
        store.close()


def test_the_studio_pages_show_an_admin_every_account_s_runs_and_a_user_only_theirs(url: str, settings) -> None:  # noqa: ANN001
    from pages._studio import Studio, cancel, my_runs
    from pipeline.artists import Viewer
    from pipeline.errors import BadInput
    from taskqueue.tasks import cancel_run

    store = RunStore(url)
    a_run = store.create_batch("acct-a", [_new_run()])[0]
    b_run = store.create_batch("acct-b", [_new_run()])[0]
    base = Studio(settings=settings, store=store, owner="acct-a", enqueue=lambda *a, **k: None, cancel=cancel_run)
    user_a = base.for_viewer(Viewer("acct-a"), "a@example.com")
    admin = base.for_viewer(Viewer("acct-admin", admin=True), "root@example.com")
    assert [r.id for r in my_runs(user_a)] == [a_run.id]
    assert {r.id for r in my_runs(admin)} == {a_run.id, b_run.id}
    with pytest.raises(BadInput):
        cancel(user_a, b_run.id)  # another account's run is not one of A's
    assert cancel(admin, b_run.id).status == "CANCELED"
    store.close()


def test_a_run_takes_local_images_only_from_its_own_account_s_uploads(settings) -> None:  # noqa: ANN001
    from PIL import Image

    from pipeline.artists import find_artist
    from pipeline.choose_face_guide import resolve_image
    from pipeline.errors import BadInput
    from pipeline.fetch import Fetcher, limits_from_settings
    from pipeline.models import RunPlan
    from pipeline.run_video import run_video

    theirs = settings.uploads_for("acct-b") / "face.png"
    theirs.parent.mkdir(parents=True)
    Image.new("RGB", (256, 256), (200, 150, 120)).save(theirs)
    fetcher = Fetcher(settings.cache_dir / "downloads", limits_from_settings(settings))
    assert resolve_image(str(theirs), fetcher, settings.uploads_for("acct-b")) == theirs.resolve()
    plan = RunPlan(run_id="run_other_upload", artist=find_artist(settings, "1873859c-dd37-4e9a-9bac-80d3558527a9"),
                   template_id="artist-caption-stage", images=[str(theirs)], owner="acct-a",
                   out_dir=settings.runs_dir / "run_other_upload")
    with pytest.raises(BadInput, match="is not an uploaded image"):
        run_video(plan, settings)
