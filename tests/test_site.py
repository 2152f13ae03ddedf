"""Browser test of the built website (run by `make site` after the book is built).

Serves _build/html on 127.0.0.1 and opens every page in headless Chromium: each page loads,
no request leaves 127.0.0.1, math is typeset, every image has loaded, and an exercise's
solution stays hidden until its drop-down is opened.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.site

SITE = Path(__file__).resolve().parents[1] / "_build" / "html"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Console messages Jupyter Book 1 is known to print harmlessly, matched by exact text:
# sphinx-book-theme declares thebe's URL constant in two script tags, and the pydata theme
# logs its fallback when no colour mode has been stored yet.
ALLOWED_CONSOLE_ERRORS = {
    "Identifier 'THEBE_JS_URL' has already been declared",
    "Got invalid theme mode: . Resetting to auto.",
}


def _pages() -> list[Path]:
    skip = {"_static", "_sources", "_images"}
    return sorted(p for p in SITE.rglob("*.html") if not skip & set(p.relative_to(SITE).parts))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output readable
        pass


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").exists():
        pytest.fail(f"{SITE / 'index.html'} is missing: build the site first (make book)")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run tests/ensure-chromium.sh or set CHROMIUM")
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


def _open(browser, url: str):
    """Open url; return (page, outside requests, console errors and failed responses)."""
    page = browser.new_page()
    outside: list[str] = []
    errors: list[str] = []

    def response(r):
        # Chromium asks every site for /favicon.ico on its own; the book has none.
        if r.status >= 400 and urlparse(r.url).path != "/favicon.ico":
            errors.append(f"HTTP {r.status} for {r.url}")

    def route(r):
        host = urlparse(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", response)
    response = page.goto(url, wait_until="networkidle")
    assert response is not None and response.ok, f"{url} did not load: {response}"
    return page, outside, errors


def test_there_are_pages_to_test():
    names = {p.name for p in _pages()}
    assert {"index.html", "00_preface.html", "01_background.html"} <= names


@pytest.mark.parametrize("rel", [str(p.relative_to(SITE)) for p in _pages()] or ["index.html"])
def test_page(browser, server, rel):
    page, outside, errors = _open(browser, f"{server}/{rel}")
    try:
        assert not outside, f"{rel} requested outside 127.0.0.1: {outside}"
        unexpected = [e for e in errors if e not in ALLOWED_CONSOLE_ERRORS]
        assert not unexpected, f"{rel} console errors: {unexpected}"

        broken = page.eval_on_selector_all(
            "img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
        )
        assert not broken, f"{rel}: images that did not load: {broken}"

        html = (SITE / rel).read_text(encoding="utf-8")
        if 'class="math' in html:
            page.wait_for_selector("mjx-container", state="attached", timeout=20_000)
            text = page.inner_text("main")
            raw = re.findall(r"\\\(|\\\[", text)
            assert not raw, f"{rel}: {len(raw)} math spans left untypeset"
    finally:
        page.close()


def test_math_is_served_locally_and_typeset(browser, server):
    page, outside, _ = _open(browser, f"{server}/chapters/01_background.html")
    try:
        assert not outside
        assert page.locator("mjx-container").count() > 5
        src = page.eval_on_selector_all("script", "s => s.map(x => x.src).filter(Boolean)")
        assert any("mathjax" in s for s in src) and all(s.startswith(server) for s in src)
    finally:
        page.close()


def test_solution_hidden_until_dropdown_clicked(browser, server):
    page, _, _ = _open(browser, f"{server}/chapters/01_background.html")
    try:
        solution = page.locator(".solution.dropdown").first
        body = solution.locator(".admonition-title ~ *").first
        assert solution.count() == 1 and body.count() == 1
        assert not body.is_visible(), "a solution is visible before its drop-down is opened"
        solution.locator("button.toggle-button").click()
        body.wait_for(state="visible", timeout=5_000)
        assert body.is_visible()
    finally:
        page.close()
