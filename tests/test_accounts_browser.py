"""Sign-in in headless Chromium on a real server with AUTH=required: anonymous visitors get the sign-in page on
every path (and no key text), A signs in and makes runs of a shared artist and of an artist of A's own, B signs
in and sees none of them; sign-out ends the session."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from pipeline.settings import PROJECT_ROOT
from taskqueue.__main__ import DEMO_ARTIST_ID
from tests.browser import chromium, require_chromium
from tests.servers import Studio, running_studio, studio_env
from tests.test_accounts import PASSWORD, Person, make_person, own_artist
from tests.test_ui_browser import wait_for_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "accounts"  # not ui/: test_ui_browser empties that one
PAGES = ("/", "/runs", "/gallery", "/artists", "/templates", "/developers")


@pytest.fixture(scope="module")
def signed_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Studio, Person, Person, str]]:
    require_chromium()
    root = tmp_path_factory.mktemp("accounts-browser")
    env = studio_env(root / "data", 0, AUTH="required")
    a, b = make_person(env, "a@example.com"), make_person(env, "b@example.com")
    a_artist = own_artist(root / "data", a.account)
    with running_studio(root, worker=False, AUTH="required") as studio:
        yield studio, a, b, a_artist


@pytest.fixture(scope="module")
def browser(signed_world) -> Iterator:  # noqa: ANN001 - the fixture above
    with chromium() as launched:
        yield launched


def screenshot(page, name: str) -> None:  # noqa: ANN001
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def sign_in(page, base: str | None, email: str, password: str = PASSWORD) -> None:  # noqa: ANN001 - Playwright's
    """Fill the sign-in form: at /auth/sign-in, or (base None) the one the page was sent to."""
    if base is not None:
        page.goto(base + "/auth/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def create_one(page, base: str, artist_id: str) -> None:  # noqa: ANN001
    page.goto(f"{base}/?artist={artist_id}")
    wait_for_app(page, "Create videos")
    page.get_by_role("button", name=re.compile(r"^Create 1 video")).click()
    page.wait_for_url("**/runs**")
    page.get_by_text("Started 1 video").wait_for()


def test_sign_in_gates_every_page_and_each_user_sees_their_own(signed_world, browser) -> None:  # noqa: ANN001
    studio, a, b, a_artist = signed_world
    base = studio.base_url

    anonymous = browser.new_context(viewport={"width": 1280, "height": 800})
    page = anonymous.new_page()
    page.set_default_timeout(30_000)
    for path in PAGES:
        page.goto(base + path)
        page.get_by_role("button", name="Sign in").wait_for()
        assert "/auth/sign-in" in page.url
        content = page.content()
        assert "sk_" not in content and a.key not in content and a.key_id not in content
    screenshot(page, "sign-in-desktop")
    sign_in(page, base, a.email, "not the password")
    page.get_by_text("Wrong email or password").wait_for()
    anonymous.close()

    # A signs in (landing where they were going) and makes a run of the shared demo artist and of their own
    first = browser.new_context(viewport={"width": 1280, "height": 800})
    page = first.new_page()
    page.set_default_timeout(30_000)
    page.goto(base + "/developers")
    sign_in(page, None, a.email)
    page.wait_for_url("**/developers")
    wait_for_app(page, "Your API keys")
    screenshot(page, "api-signed-in-desktop")
    page.get_by_text(a.key_id).wait_for()
    assert a.key not in page.content()  # listed, never shown
    create_one(page, base, DEMO_ARTIST_ID)
    create_one(page, base, a_artist)
    with studio.client(a.key) as api:
        runs = api.get("/api/tasks/runs").json()["runs"]
    assert sorted(r["artist_account_id"] for r in runs) == sorted([DEMO_ARTIST_ID, a_artist])
    page.goto(base + "/runs")
    wait_for_app(page, "Runs")
    page.get_by_text("A Private", exact=False).first.wait_for()
    screenshot(page, "runs-signed-in-desktop")
    page.get_by_role("link", name="Sign out").first.click()
    page.get_by_role("button", name="Sign in").wait_for()
    page.goto(base + "/runs")  # the cookie is gone: the sign-in page again
    page.get_by_role("button", name="Sign in").wait_for()
    first.close()

    # B sees none of A's runs or artists, and A's keys are not on B's API page
    second = browser.new_context(viewport={"width": 1280, "height": 800})
    page = second.new_page()
    page.set_default_timeout(30_000)
    sign_in(page, base, b.email)
    page.goto(base + "/runs")
    wait_for_app(page, "No runs yet")
    assert not any(r["id"] in page.content() for r in runs)
    page.goto(base + "/artists")
    wait_for_app(page, "Artists")
    assert "A Private" not in page.content()
    page.goto(base + "/developers")
    wait_for_app(page, "Your API keys")
    page.get_by_text(b.key_id).wait_for()
    assert a.key_id not in page.content()
    second.close()
