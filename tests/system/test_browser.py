"""
The live demo page in a real browser: Debian's Chromium, headless, driven by
Playwright's sync API, against C{twistd closedemo} run as a subprocess (so
that the browser's waits and the server's reactor never share a thread).

CI installs both (C{apt-get install chromium}; C{playwright} is in the
C{test} extra).  If either is missing these tests fail and say so: they are
never skipped.  Playwright's own browser download is not used.

Every wait is bounded.  The screenshot test writes C{docs/demo.png} only
with C{pytest --update-docs}; otherwise into a temporary directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..twistd_process import LISTEN, Twistd, http_get, stats, wait_until

try:
    from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
except ImportError as e:  # CI installs it: fail below with a clear message
    PLAYWRIGHT_MISSING: str | None = str(e)
else:
    PLAYWRIGHT_MISSING = None

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "demo.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 860}
SCREENSHOT_VIEW = {"width": 1280, "height": 1000}
PHONE = {"width": 390, "height": 844}
WAIT = 10_000  # ms, for anything the page shows
COUNTERS = ("pending", "completed", "interrupted", "rejected", "server_ended")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Twistd, int]]:
    """
    One C{twistd closedemo} for the module; each test counts from where
    the previous one left the counters.
    """
    twistd = Twistd(tmp_path_factory.mktemp("browser"), *LISTEN, "--delay", "10")
    try:
        yield twistd, twistd.port()
    finally:
        twistd.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if PLAYWRIGHT_MISSING is not None:
        pytest.fail(
            f"Playwright for Python is missing ({PLAYWRIGHT_MISSING}): "
            "pip install -e '.[test]' installs it (the package only; the "
            "browser is Debian's chromium, not `playwright install`)",
            pytrace=False,
        )
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: apt-get install chromium (Debian's "
            "package; these tests drive it headless)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


class Demo:
    """
    The page open in a fresh browser context, with its console watched.
    """

    def __init__(self, browser: Browser, port: int, viewport: dict[str, int]) -> None:
        self.port = port
        self.context = browser.new_context(
            viewport={"width": viewport["width"], "height": viewport["height"]}
        )
        self.context.set_default_timeout(WAIT)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on(
            "console",
            lambda m: self.errors.append(m.text) if m.type == "error" else None,
        )
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # Nothing left pending by an earlier test: counts start still.
        wait_until(lambda: stats(port)["pending"] == 0, "no request pending")
        self.page.goto(f"http://127.0.0.1:{port}/demo")
        expect(self.page.locator("#status")).to_have_attribute(
            "data-state", "live", timeout=WAIT
        )
        self.start = self.shown()
        assert self.start == stats(port)

    def count(self, name: str) -> Locator:
        return self.page.locator(f"#count-{name}")

    def shown(self) -> dict[str, int]:
        """
        The counters on the page now.
        """
        return {name: int(self.count(name).inner_text()) for name in COUNTERS}

    def expect_counters(self, **delta: int) -> dict[str, int]:
        """
        Wait until the page shows the counters it started with plus
        C{delta}, and check that C{/stats} says the same.
        """
        wanted = {name: self.start[name] + delta.get(name, 0) for name in COUNTERS}
        for name in COUNTERS:
            expect(self.count(name)).to_have_text(str(wanted[name]), timeout=WAIT)
        assert self.shown() == stats(self.port) == wanted
        return wanted

    def fill_delay(self, seconds: str) -> None:
        self.page.locator("#delay").fill(seconds)

    def close(self) -> None:
        try:
            assert self.errors == [], self.errors
        finally:
            self.context.close()


@pytest.fixture
def demo(browser: Browser, server: tuple[Twistd, int]) -> Iterator[Callable[..., Demo]]:
    opened: list[Demo] = []

    def open_page(viewport: dict[str, int] = DESKTOP) -> Demo:
        opened.append(Demo(browser, server[1], viewport))
        return opened[-1]

    try:
        yield open_page
    finally:
        for page in opened:
            page.close()


def burst_tally(burst: Locator) -> dict[str, int]:
    keys = ("sent", "aborted", "completed", "interrupted", "server_ended", "none")
    return {
        key: int(burst.locator(f'.b-count[data-k="{key}"]').inner_text())
        for key in keys
    }


def test_abort_one_request(
    demo: Callable[..., Demo], server: tuple[Twistd, int]
) -> None:
    twistd, _ = server
    page = demo()
    page.fill_delay("30")
    page.page.get_by_role("button", name="Start a request").click()
    row = page.page.locator("#mine li.req").first
    expect(row).to_have_attribute("data-state", "pending")
    expect(row.locator(".state")).to_contain_text("pending for")
    # The server holds it: pushed, not polled.
    page.expect_counters(pending=1)

    row.get_by_role("button", name=re.compile(r"^Abort request \d+$")).click()
    expect(row).to_have_attribute("data-state", "aborted")
    expect(row).to_have_attribute("data-verdict", "interrupted")
    expect(row.locator(".server")).to_contain_text(
        "interrupted (client closed the connection) after"
    )
    expect(row.locator(".server")).to_contain_text("cancelled 1 pending answer")
    # Said once to screen readers, not at every tick of the timer.
    expect(page.page.locator("#announce")).to_have_text(
        re.compile(r"^Request 1: you aborted it after .*; server: interrupted ")
    )
    page.expect_counters(interrupted=1)

    top = page.page.locator("#timeline li.entry").first
    expect(top).to_have_class(re.compile(r"\binterrupted\b"))
    expect(top).to_contain_text("✕ interrupted")
    expect(top).to_contain_text("client closed the connection")
    path = top.get_attribute("data-path")
    assert path is not None and path.startswith("/try/")
    expect(top.locator(".mine-tag")).to_have_text("this page")
    twistd.wait_for_line(
        rf"Connection interrupted: GET {re.escape(path)} from 127\.0\.0\.1:\d+ "
        r"after \d+\.\d\d s while waiting \(client closed the connection\)$"
    )


def test_start_fifty_and_abort_half(demo: Callable[..., Demo]) -> None:
    page = demo()
    page.fill_delay("3")
    page.page.get_by_role("button", name="Start 50, abort a random half").click()
    burst = page.page.locator("#mine li.burst").first
    expect(burst).to_have_attribute("data-done", "yes", timeout=20_000)
    tally = burst_tally(burst)
    # All 50 reached the server (spread over *.localhost, past the browser's
    # six connections per host); the half aborted there are interrupted.
    assert tally == {
        "sent": 50,
        "aborted": 25,
        "completed": 25,
        "interrupted": 25,
        "server_ended": 0,
        "none": 0,
    }
    expect(burst.locator(".state")).to_have_text(
        "done: 25 aborted by you; the server counted 50 of 50."
    )
    page.expect_counters(completed=25, interrupted=25)

    entries = page.page.locator("#timeline li.entry").filter(has_text="/burst/")
    expect(entries).to_have_count(50)
    interrupted = entries.and_(page.page.locator(".interrupted"))
    expect(interrupted).to_have_count(25)
    for i in range(25):
        expect(interrupted.nth(i).locator(".badge")).to_have_text("✕ interrupted")
    # The filter shows those alone.
    page.page.get_by_label("Show only interrupted requests").check()
    expect(page.page.locator("#timeline li.entry.completed").first).to_be_hidden()
    expect(interrupted.first).to_be_visible()


def test_phone_width_has_no_horizontal_scroll(
    demo: Callable[..., Demo], server: tuple[Twistd, int]
) -> None:
    _, port = server
    page = demo(PHONE)
    # A long path from another client, and a burst, fill the page.
    # Under the 256 bytes a path is cut to in outcomes.
    long_path = "/" + "a-rather-long-path-segment/" * 9 + "end"
    assert http_get(port, long_path + "?delay=0") == (200, b"hello")
    page.fill_delay("0.5")
    page.page.get_by_role("button", name="Start 50, abort a random half").click()
    burst = page.page.locator("#mine li.burst").first
    expect(burst).to_have_attribute("data-done", "yes", timeout=20_000)
    expect(page.page.locator(f'#timeline li[data-path="{long_path}"]')).to_have_count(1)
    widths = page.page.evaluate(
        "() => [document.documentElement.scrollWidth,"
        " document.documentElement.clientWidth, document.body.scrollWidth]"
    )
    assert widths[0] <= widths[1] == PHONE["width"], widths
    assert widths[2] <= PHONE["width"], widths
    for selector in ("#delay", "#start", "#burst", "#abort-all", "#count-server_ended"):
        box = page.page.locator(selector).bounding_box()
        assert box is not None, selector
        assert 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"], selector


def test_keyboard_alone(demo: Callable[..., Demo]) -> None:
    page = demo()
    keyboard = page.page.keyboard
    reached = []
    for _ in range(10):
        keyboard.press("Tab")
        reached.append(page.page.evaluate("() => document.activeElement.id"))
        if reached[-1] == "start":
            break
    assert reached == ["delay", "start"], reached
    # The focus can be seen.
    outline = page.page.evaluate(
        "() => getComputedStyle(document.activeElement).outlineStyle"
    )
    assert outline not in ("", "none"), outline

    keyboard.press("Enter")
    expect(page.page.locator("#mine li.req")).to_have_count(1)
    keyboard.press("Space")
    expect(page.page.locator("#mine li.req")).to_have_count(2)
    page.expect_counters(pending=2)

    keyboard.press("Tab")
    keyboard.press("Tab")
    assert page.page.evaluate("() => document.activeElement.id") == "abort-all"
    keyboard.press("Enter")
    expect(page.page.locator('#mine li.req[data-verdict="interrupted"]')).to_have_count(
        2
    )
    page.expect_counters(interrupted=2)


def test_screenshot(browser: Browser, tmp_path: Path, update_docs: bool) -> None:
    """
    A desktop view after some activity, for the README: docs/demo.png
    (with C{--update-docs}).  A server of its own, so that the counters are
    those of what it shows.
    """
    path = SCREENSHOT if update_docs else tmp_path / "demo.png"
    twistd = Twistd(tmp_path, *LISTEN)
    try:
        port = twistd.port()
        page = Demo(browser, port, SCREENSHOT_VIEW)
        try:
            take_screenshot(page, port, path)
        finally:
            page.close()
    finally:
        twistd.kill()


def take_screenshot(page: Demo, port: int, path: Path) -> None:
    assert page.start == dict.fromkeys(COUNTERS, 0)
    page.fill_delay("1.5")
    page.page.get_by_role("button", name="Start 50, abort a random half").click()
    burst = page.page.locator("#mine li.burst").first
    expect(burst).to_have_attribute("data-done", "yes", timeout=20_000)
    # Other clients: one answered, one refused.
    assert http_get(port, "/from/curl?delay=0")[0] == 200
    assert http_get(port, "/?delay=soon")[0] == 400
    page.fill_delay("20")
    start = page.page.get_by_role("button", name="Start a request")
    start.click()
    aborted = page.page.locator("#mine li.req").first
    expect(aborted).to_have_attribute("data-state", "pending")
    page.page.wait_for_timeout(1200)
    aborted.get_by_role("button", name=re.compile("^Abort")).click()
    expect(aborted).to_have_attribute("data-verdict", "interrupted")
    start.click()
    expect(page.page.locator('#mine li.req[data-state="pending"]')).to_have_count(1)
    page.page.wait_for_timeout(1500)
    page.page.mouse.move(0, 0)
    page.expect_counters(pending=1, completed=26, interrupted=26, rejected=1)
    page.page.screenshot(path=str(path))
    assert path.stat().st_size > 20_000
    page.page.get_by_role("button", name="Abort all mine").click()
    page.expect_counters(completed=26, interrupted=27, rejected=1)
