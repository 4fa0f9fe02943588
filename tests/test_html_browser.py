"""The HTML report in a real headless Chromium, offline: it renders, logs no error, runs no injection.

The test starts Debian's ``/usr/bin/chromium`` itself and drives it through the Chrome DevTools
Protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4, NUL-separated JSON), so it
needs no websocket package and no free port. Every network request is recorded and must be a
``file:``/``data:``/``blob:`` URL; a proxy that goes nowhere makes sure nothing leaves the machine
anyway. ``window.alert`` is replaced before the page loads, so an injected script would be seen.

    $ python3 -m pytest -q -m browser tests/test_html_browser.py
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import select
import subprocess
import time
from pathlib import Path

import pytest

from tracekit.cli import sample_path
from tracekit.explain import explain
from tracekit.report.html import render_html

CHROMIUM = Path("/usr/bin/chromium")
EVIL = "<script>alert(1)</script>"
EVIL_IMG = '<img src=x onerror="alert(2)">'
FIGURES = ("fig-waterfall", "fig-steps", "fig-timeline")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,  # starts a headless Chromium
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
    "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--window-size=1400,1000",
    "--remote-debugging-pipe",
]

WATCH = """
window.__alerts = [];
for (const k of ["alert", "confirm", "prompt"]) {
  window[k] = function (m) { window.__alerts.push(k + ":" + String(m)); };
}
"""


def _high(fd: int) -> int:
    """A close-on-exec copy of ``fd`` numbered 10 or above; the original is closed."""
    hi = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return hi


class Chromium:
    """A headless Chromium driven over the DevTools pipe; events are kept for the test to read."""

    def __init__(self, profile: Path):
        # --remote-debugging-pipe reads commands from fd 3 and writes replies to fd 4. Park our
        # pipe ends at fds >= 10 so that moving them onto 3 and 4 in the child clobbers nothing.
        to_chrome_r, self._w = (_high(fd) for fd in os.pipe())
        self._r, from_chrome_w = (_high(fd) for fd in os.pipe())

        def onto_3_and_4() -> None:  # runs in the child, between fork and exec
            os.dup2(to_chrome_r, 3)  # dup2 clears close-on-exec on the copies only
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=onto_3_and_4, close_fds=False,  # Python's own fds are close-on-exec
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf, self._id, self.events = b"", 0, []

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 20.0) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while True:
            ev = self._next(deadline)
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def evaluate(self, session: str, expr: str):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session)
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluate {expr!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def _next(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The inline report of the sample, with hostile names where the trace supplies strings."""
    e = explain(sample_path(), model="qwen2.5-7b", ctx=2053)
    doc, tl = e.to_dict(), copy.deepcopy(e.timeline)
    doc["top_kernels"][0]["name"] = EVIL
    doc["kernels_by_category"][0]["category"] = EVIL
    doc["source"]["file"] = EVIL_IMG
    doc["warnings"] = [EVIL]
    for op in tl["ops"]:
        if op["category"] == "gemm":
            op["category"] = EVIL  # a whole timeline lane is named by the hostile string
    out = tmp_path_factory.mktemp("report") / "report.html"
    out.write_text(render_html(doc, tl, plotlyjs="inline"), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def page(report, tmp_path_factory):
    """Load the report; yield (browser, session) once plotly has drawn every figure."""
    browser = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget",
                               {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", {}, session)
        browser.call("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH}, session)
        browser.call("Page.navigate", {"url": report.as_uri()}, session)
        browser.wait_for("Page.loadEventFired")
        deadline = time.monotonic() + 20
        drawn = "document.querySelectorAll('.js-plotly-plot svg.main-svg').length"
        while browser.evaluate(session, drawn) < 2 * len(FIGURES) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.3)  # let late console errors arrive
        browser.evaluate(session, "1")  # drain pending events into browser.events
        yield browser, session
    finally:
        browser.close()


def test_no_console_errors_or_exceptions(page):
    browser, _ = page
    bad = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"
           or (e.get("method") == "Runtime.consoleAPICalled"
               and e["params"].get("type") in ("error", "assert"))
           or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error"
               and "favicon" not in e["params"]["entry"].get("url", ""))]
    assert bad == []


def test_offline_no_request_leaves_the_file(page):
    browser, _ = page
    urls = [e["params"]["request"]["url"] for e in browser.events
            if e.get("method") == "Network.requestWillBeSent"]
    assert urls, "the page itself should have been requested"
    assert all(u.split(":", 1)[0] in ("file", "data", "blob") for u in urls), urls


def test_every_figure_rendered(page):
    browser, session = page
    counts = browser.evaluate(session, """
        Array.from(document.querySelectorAll('.js-plotly-plot')).map(
            d => [d.id, d.querySelectorAll('svg.main-svg').length,
                  d.querySelectorAll('g.point, g.trace.bars path').length])""")
    assert sorted(c[0] for c in counts) == sorted(FIGURES)
    assert all(svgs >= 1 and marks > 0 for _id, svgs, marks in counts), counts


def test_hostile_names_are_text_not_markup(page):
    browser, session = page
    got = browser.evaluate(session, f"""({{
        alerts: window.__alerts,
        topTable: document.querySelector('table.top').textContent.includes({json.dumps(EVIL)}),
        catTable: document.querySelector('table.cats').textContent.includes({json.dumps(EVIL)}),
        header: document.querySelector('header').textContent.includes({json.dumps(EVIL_IMG)}),
        lane: Array.from(document.querySelectorAll('#fig-timeline .ytick text'))
              .some(t => t.textContent === {json.dumps(EVIL)}),
        injectedScripts: Array.from(document.scripts)
              .filter(s => s.textContent.trim() === 'alert(1)').length,
        images: document.images.length,
        scripts: document.scripts.length,
    }})""")
    assert got["alerts"] == []
    assert got["topTable"] and got["catTable"] and got["header"] and got["lane"], got
    assert got["injectedScripts"] == 0 and got["images"] == 0
    assert got["scripts"] == 1 + len(FIGURES) + 1  # plotly.js, one per figure, the JSON doc
    assert not any(e.get("method") == "Page.javascriptDialogOpening" for e in browser.events)


@pytest.mark.parametrize("width", [1280, 1920])
def test_stall_table_fits_its_card(page, report, width):
    """The stall table at a laptop's and a desktop's width: it stays inside its card, no cell's
    content runs out of it, the cause column has room for a sentence (not a word per line), and
    every http(s) source is a link."""
    browser, session = page
    browser.call("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False}, session)
    try:
        got = browser.evaluate(session, """(() => {
            const t = document.querySelector('table.stalls');
            const card = t.closest('section.card');
            const cs = getComputedStyle(card);
            const inner = card.getBoundingClientRect().right - parseFloat(cs.paddingRight);
            const cells = Array.from(t.querySelectorAll('td'));
            const cause = Array.from(t.querySelectorAll('tbody tr'))
                .map(r => r.children[5].getBoundingClientRect().width);
            return {
              tableRight: t.getBoundingClientRect().right, inner: inner,
              overflowing: cells.filter(c => c.scrollWidth > c.clientWidth + 1).length,
              causeWidth: Math.min(...cause),
              links: Array.from(t.querySelectorAll('ul.sources a'))
                .filter(a => /^https?:[/][/]/.test(a.getAttribute('href'))).length,
            };
        })()""")
    finally:
        browser.call("Emulation.clearDeviceMetricsOverride", {}, session)
    assert got["tableRight"] <= got["inner"] + 1, got
    assert got["overflowing"] == 0, got
    assert got["causeWidth"] >= 180, got
    # every source of the stalls the report shows is a link (it shows the first 8 stalls)
    page_text = report.read_text(encoding="utf-8")
    doc = json.loads(page_text.split('<script type="application/json" id="tracekit-doc">', 1)[1]
                     .split("</script>", 1)[0])
    want = sum(len(s.get("sources") or []) for s in doc["host"]["stalls"][:8])
    assert want > 0 and got["links"] == want, got
