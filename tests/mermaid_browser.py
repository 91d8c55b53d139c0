"""Render mermaid text with the real mermaid library in a real headless browser, for tests.

Needs Debian's `chromium` and the npm package `mermaid` (.ci/run installs both). Where either is
missing the tests skip, saying how to install it; with LWFSM_REQUIRE_BROWSER=1 (set by CI) they fail.
"""

import html
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

MERMAID_JS = Path(
    os.environ.get("LWFSM_MERMAID_JS", Path.home() / ".cache/lwfsm-mermaid/node_modules/mermaid/dist/mermaid.min.js")
)
HINT = (
    "needs Debian's chromium and the npm package mermaid: apt-get install -y chromium && "
    "npm install --prefix ~/.cache/lwfsm-mermaid mermaid@11 (or set LWFSM_MERMAID_JS to mermaid.min.js)"
)


def browser() -> str:
    found = next((shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)), None)
    if found is None or not MERMAID_JS.exists():
        if os.environ.get("LWFSM_REQUIRE_BROWSER"):
            pytest.fail(f"LWFSM_REQUIRE_BROWSER is set but the browser test {HINT}")
        pytest.skip(HINT)
    return found


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.skip += tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self.skip -= tag == "style"

    def handle_data(self, data: str) -> None:
        if not self.skip and data.strip():
            self.parts.append(html.unescape(data.strip()))


def render(text: str, workdir: Path) -> tuple[str, list[str]]:
    """(the SVG markup, its text pieces). Fails with mermaid's own message when it rejects the text."""
    chromium = browser()
    page = workdir / "page.html"
    page.write_text(
        '<!doctype html><html><head><meta charset="utf-8"></head><body>'
        f'<pre class="mermaid">{html.escape(text)}</pre>'
        f'<script src="{MERMAID_JS.as_uri()}"></script><script>'
        'mermaid.initialize({startOnLoad: false, securityLevel: "strict"});'
        'mermaid.run({querySelector: ".mermaid"}).then(() => document.body.setAttribute("data-done", "ok"),'
        ' e => document.body.setAttribute("data-error", String((e && e.message) || e)));'
        "</script></body></html>"
    )
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={workdir / 'profile'}",
        "--virtual-time-budget=30000",
        "--dump-dom",
    ]
    out = subprocess.run([chromium, *flags, page.as_uri()], capture_output=True, text=True, timeout=180)
    body = re.search(r"<body([^>]*)>", out.stdout)
    assert body, f"chromium printed no page (exit {out.returncode}): {out.stderr[-2000:]}"
    error = re.search(r'data-error="([^"]*)"', body.group(1))
    assert not error, f"mermaid rejected the diagram: {html.unescape(error.group(1))}"
    assert 'data-done="ok"' in body.group(1), "mermaid did not finish rendering"
    start, end = out.stdout.find("<svg"), out.stdout.rfind("</svg>")
    svg = out.stdout[start : end + len("</svg>")]
    parser = _Text()
    parser.feed(svg)
    return svg, parser.parts


Box = tuple[float, float, float, float]  # left, top, right, bottom


def layout(svg: str) -> tuple[dict[str, Box], list[tuple[str, Box]]]:
    """Where mermaid drew each state's box (by state name) and each edge label (with its text)."""
    number = r"(-?[\d.]+)"
    states = {}
    for m in re.finditer(
        rf'<g class="node [^"]*" id="[^"]*-state-(\w+?)-\d+"[^>]*transform="translate\({number}, {number}\)">'
        rf'<rect [^>]*x="{number}" y="{number}" width="{number}" height="{number}"',
        svg,
    ):
        x, y, dx, dy, w, h = map(float, m.groups()[1:])
        states[m[1]] = (x + dx, y + dy, x + dx + w, y + dy + h)
    labels = []
    for m in re.finditer(
        rf'<g class="edgeLabel" transform="translate\({number}, {number}\)"><g class="label" [^>]*'
        rf'transform="translate\({number}, {number}\)"><foreignObject width="{number}" height="{number}">'
        r".*?<p>(.*?)</p>",
        svg,
    ):
        x, y, dx, dy, w, h = map(float, m.groups()[:6])
        if w > 0:  # mermaid keeps an empty label for an edge without one (the start marker's)
            labels.append((html.unescape(m[7]), (x + dx, y + dy, x + dx + w, y + dy + h)))
    return states, labels


def overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
