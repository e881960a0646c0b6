"""What a person sees, in headless Chromium: the list, a search, an issue, its thread.

Debian's ``chromium`` (installed by ``.ci/run``), driven by Playwright's Python package.
Where Chromium is missing the test is skipped with the reason, except in CI (``CI`` set),
where it fails: CI must never skip it silently. JavaScript is off, as the pages need none.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web_harness import Tracker, tracker_fixture

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _browser_or_skip() -> Any:
    reason = ""
    if not Path(CHROMIUM).exists():
        reason = "Debian's chromium is not installed (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = reason or "the playwright package is not installed (pip install -e '.[test]')"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must run the browser test)")
        pytest.skip(reason)
    return sync_playwright


@pytest.fixture(scope="module", params=["sqlite"])
def tracker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tracker]:
    yield from tracker_fixture(request, tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def page(tracker: Tracker) -> Iterator[Any]:
    sync_playwright = _browser_or_skip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context(
            java_script_enabled=False, viewport={"width": 390, "height": 844}
        )
        yield context.new_page()
        browser.close()


def test_a_person_finds_and_reads_an_issue(tracker: Tracker, page: Any) -> None:
    page.goto(tracker.url + "/bugs/")
    assert page.title() == "Example bugs"
    titles = page.locator("ol.issues .title").all_inner_texts()
    assert any("Login page crashes" in t for t in titles)
    assert any("Search is slow" in t for t in titles)

    page.fill("input[name=q]", "zebra")
    page.click("form.filters button[type=submit]")
    assert "q=zebra" in page.url
    assert page.locator("ol.issues .title").all_inner_texts() == ["issue2 Search is slow"]

    page.goto(tracker.url + "/bugs/")
    page.click("text=Login page crashes on empty password")
    assert page.url.endswith("/bugs/1")
    heading = page.locator("h1").inner_text()
    assert heading == "issue1 Login page crashes on empty password"
    first, second = page.locator("article.message").all()[:2]
    assert "Pressing Login with an empty password" in first.locator(".text").first.inner_text()
    assert "I see it too" in second.locator(".text").first.inner_text()
    quoted = second.locator("details .text")
    assert not quoted.is_visible()  # the quote is folded away ...
    second.locator("summary").click()
    assert quoted.is_visible() and "> Pressing Login" in quoted.inner_text()  # ... one click
    body = page.locator("body").inner_text()
    assert "alice@example.com" not in body and "alice@…" in body
    assert "bugs+1@example.org" in body
    assert page.locator("a", has_text="crash.log").is_visible()


def test_the_pages_fit_a_phone(tracker: Tracker, page: Any) -> None:
    """Nothing sticks out of a 390 px wide screen: no sideways scrolling to read."""
    for path, selector in (("/bugs/", "ol.issues li"), ("/bugs/1", "article.message, dl, h1")):
        page.goto(tracker.url + path)
        for element in page.locator(selector).all():
            box = element.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, path
