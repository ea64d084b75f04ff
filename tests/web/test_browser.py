"""The viewer in a real headless Chromium (Debian's package), driven by Playwright: a live run's page
grows as the fake model streams and shows the end; search finds a reply; a reply holding markup is
shown as text and runs nothing. Screenshots go to screenshots/ (git-ignored) for a person to check.

The browser is the system one (/usr/bin/chromium, installed by .ci/run): Playwright's own browser
download needs the internet. Without it these tests fail under CI and are skipped elsewhere."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import WAIT, Site

CHROMIUM = os.environ.get("BACKROOMS_CHROMIUM") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"
WAIT_MS = WAIT * 1000
SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'


def _missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    if shutil.which(CHROMIUM) is None:
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Any]:
    """A fresh Chromium profile per test; a dialog (an alert) anywhere fails the test."""
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests need Chromium under CI: {missing}")
        pytest.skip(f"browser tests skipped: {missing}")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1100, "height": 900},
            timeout=WAIT_MS,
        )
        context.set_default_timeout(WAIT_MS)
        context.dialogs = []  # type: ignore[attr-defined]

        def on_page(page: Any) -> None:
            page.on("dialog", lambda dialog: context.dialogs.append(dialog.message))

        context.on("page", on_page)
        for page in context.pages:
            on_page(page)
        try:
            yield context
        finally:
            with contextlib.suppress(Exception):
                await context.close()


async def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def new_page(browser: Any) -> Any:
    page = browser.pages[0] if browser.pages else await browser.new_page()
    return page


async def text_length(page: Any, selector: str) -> int:
    return await page.evaluate(
        "(s) => (document.querySelector(s)?.textContent || '').length", selector
    )


async def test_a_live_run_grows_as_the_model_streams_and_shows_the_end(
    site: Site, browser: Any
) -> None:
    await site.run("warm", "up")  # the SDK's first use imports a lot, blocking the loop a while
    site.models.chunk_count, site.models.chunk_delay = 50, 0.05  # a reply takes 2.5 s
    first = "The hum of the lights follows me down the corridor. " * 4
    second = "simulator@backrooms:~$ ls -l\ntotal 8\ndrwxr-xr-x 2 guest guest 4096 exit/\n"
    run_id = await site.run(first, second, wait=False)
    page = await new_page(browser)
    await page.goto(f"{site.url}/runs/{run_id}")
    streaming = "#reply-0 .streaming-text"
    await page.wait_for_function(
        "(s) => (document.querySelector(s)?.textContent || '').length > 10", arg=streaming
    )
    seen = await text_length(page, streaming)
    await screenshot(page, "live-run-streaming")
    await page.wait_for_function(
        "([s, n]) => (document.querySelector(s)?.textContent || '').length > n",
        arg=[streaming, seen],
    )
    assert seen < len(first)  # it grew without a reload
    end = page.locator("#end")
    await end.wait_for(state="visible")
    assert await end.inner_text() == "Reached maximum number of turns (1). Conversation ended."
    assert await page.locator("#state").inner_text() == "turn limit"
    assert await page.locator("#turns").inner_text() == "1"
    assert await page.locator("form.stop").count() == 0
    assert await page.locator("#reply-0 .prose").inner_text() == first
    assert await page.locator("#reply-1 pre.mono").inner_text() == second.rstrip("\n")
    assert await page.locator("article.streaming").count() == 0
    await screenshot(page, "live-run-ended")
    assert browser.dialogs == []


async def test_search_finds_a_reply(site: Site, browser: Any) -> None:
    await site.run("Nothing here but carpet.", "And more carpet.")
    wanted = await site.run("A door marked with a xylophone.", "The xylophone plays itself.")
    page = await new_page(browser)
    await page.goto(site.url + "/")
    await page.fill("input[name=q]", "xylophone")
    await page.press("input[name=q]", "Enter")
    await page.wait_for_url("**/?q=xylophone*")
    rows = page.locator("tr.run")
    assert await rows.count() == 1
    assert await rows.first.locator("a").inner_text() == f"#{wanted}"
    assert await page.locator("tr.hit mark").first.inner_text() == "xylophone"
    await screenshot(page, "search")
    await page.locator("tr.hit a").click()
    await page.wait_for_url(f"**/runs/{wanted}#reply-*")
    assert "xylophone" in await page.locator("#transcript").inner_text()


async def test_markup_in_a_reply_renders_as_text(site: Site, browser: Any) -> None:
    site.models.chunk_count, site.models.chunk_delay = 20, 0.05
    hostile = f"Look: {SCRIPT} and {IMG} <b>bold?</b>"
    run_id = await site.run(hostile, f"echo {SCRIPT}", wait=False)
    page = await new_page(browser)
    await page.goto(f"{site.url}/runs/{run_id}")  # live: the text arrives through the script
    await page.locator("#end").wait_for(state="visible")
    await screenshot(page, "markup-as-text-live")
    for _ in range(2):
        assert await page.locator("#reply-0 .body").inner_text() == hostile
        assert await page.locator("#reply-1 .body").inner_text() == f"echo {SCRIPT}"
        assert await page.locator("#transcript script, #transcript img, #transcript b").count() == 0
        await page.reload()  # and again as the server renders the stored run
    await screenshot(page, "markup-as-text-stored")
    assert browser.dialogs == []


PHONE = {"width": 360, "height": 740}  # a small phone, portrait
# Every element whose own box is wider than the viewport or whose content overflows it sideways,
# except terminal output and ASCII art (pre.mono), which scroll inside their own box.
OVERFLOWING = """() => {
  const width = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    if (el.closest("pre.mono")) continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0) continue;
    if (box.right > width + 0.5 || box.left < -0.5 || el.scrollWidth > el.clientWidth + 1)
      out.push(`${el.tagName.toLowerCase()}.${el.className}: ${Math.round(box.right)} > ${width}`);
  }
  return out;
}"""


async def assert_fits_a_phone(page: Any, name: str) -> None:
    await screenshot(page, name)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert await page.evaluate(OVERFLOWING) == []


async def test_on_a_phone_prose_wraps_and_only_terminal_output_scrolls_sideways(
    site: Site, browser: Any
) -> None:
    link = "https://example.invalid/" + "corridor/" * 30
    prose = "The carpet is damp and the hum never stops. " * 6 + link
    terminal = "simulator@backrooms:~$ ls -l\n" + "-rw-r--r-- 1 guest guest " + "x" * 150 + "\n"
    run_id = await site.run(prose, terminal)
    await site.run("Another run, for the list.", "It has a second row.")
    page = await new_page(browser)
    await page.set_viewport_size(PHONE)
    await page.goto(f"{site.url}/runs/{run_id}")
    prose_box = page.locator("#reply-0 .prose")
    assert await prose_box.inner_text() == prose
    assert await prose_box.evaluate("(el) => el.getClientRects().length") == 1
    lines = await prose_box.evaluate(
        "(el) => Math.round(el.getBoundingClientRect().height / parseFloat(getComputedStyle(el).lineHeight))"
    )
    assert lines > 5  # it wrapped, the link too
    await assert_fits_a_phone(page, "phone-run")
    mono = page.locator("#reply-1 pre.mono")
    assert await mono.evaluate("(el) => el.scrollWidth > el.clientWidth")  # scrolls in its box
    assert await mono.evaluate("(el) => getComputedStyle(el).overflowX") == "auto"
    await page.goto(site.url + "/")
    assert await page.locator("tr.run").count() == 2
    await assert_fits_a_phone(page, "phone-list")
    await page.goto(site.url + "/?q=corridor")
    assert await page.locator("tr.hit mark").count() >= 1
    await assert_fits_a_phone(page, "phone-search")
    await page.goto(f"{site.url}/runs/{10**30}")
    await assert_fits_a_phone(page, "phone-404")


async def test_a_missing_page_is_a_page_of_the_site_with_a_way_back(
    site: Site, browser: Any
) -> None:
    run_id = await site.run("a", "b")
    page = await new_page(browser)
    response = await page.goto(f"{site.url}/runs/999")
    assert response is not None and response.status == 404
    assert await page.title() == "Not Found · backrooms relay"
    assert await page.locator("main h1").inner_text() == "Not Found 404"
    assert await page.locator("p.message").inner_text() == "There is no run 999."
    assert await page.locator("header.site a.home").inner_text() == "backrooms relay"
    colour = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert colour == "rgb(22, 21, 15)"  # the site's own stylesheet, not a bare browser page
    await screenshot(page, "not-found")
    await page.get_by_role("link", name="← all runs").click()
    await page.wait_for_url(site.url + "/")
    assert await page.locator("tr.run a").first.inner_text() == f"#{run_id}"
