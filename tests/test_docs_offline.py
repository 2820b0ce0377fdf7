"""/api/docs (Swagger UI) and /api/redoc work with the network cut off: every asset comes from this server.

Headless Chromium loads both pages with every request that is not for this server aborted (and recorded),
then waits for the operations to be drawn.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.browser import chromium, require_chromium
from tests.servers import Studio, running_studio

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    require_chromium()
    with running_studio(tmp_path_factory.mktemp("docs-offline"), worker=False) as running:
        yield running


@pytest.fixture()
def offline_page(studio: Studio) -> Iterator[tuple]:
    """A page whose requests leave this machine's server only to be aborted; the list of what was cut off."""
    cut_off: list[str] = []
    own = urlsplit(studio.base_url).netloc

    def route(r) -> None:  # noqa: ANN001 - Playwright's Route
        if urlsplit(r.request.url).netloc == own:
            r.continue_()
        else:
            cut_off.append(r.request.url)
            r.abort("internetdisconnected")

    with chromium() as browser:
        context = browser.new_context()
        context.route("**/*", route)
        page = context.new_page()
        page.set_default_timeout(30_000)
        yield page, cut_off


def test_swagger_ui_lists_the_operations_offline(studio: Studio, offline_page: tuple) -> None:
    page, cut_off = offline_page
    page.goto(studio.url("/api/docs"))
    page.locator(".opblock-summary-path").first.wait_for()
    paths = {p.strip() for p in page.locator(".opblock-summary-path").all_inner_texts()}
    assert {"/content/create", "/tasks/runs", "/content/estimate", "/artists", "/accounts/id"} <= {
        p.replace("\u200b", "") for p in paths}
    assert cut_off == []  # nothing was asked of a CDN


def test_redoc_renders_offline(studio: Studio, offline_page: tuple) -> None:
    page, cut_off = offline_page
    page.goto(studio.url("/api/redoc"))
    page.get_by_role("heading", name="Trigger the content pipeline for an artist").wait_for()
    assert page.get_by_role("heading", name="One run (runId) or the caller's runs, newest first").is_visible()
    assert cut_off == []
