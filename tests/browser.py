"""Pages in a real browser: headless Chromium (Debian's `chromium`, installed by `make
services`) opens a copy of a page with a small script that records, once the page has
loaded, what the browser rendered (its visible text, headings, tables and every image's
natural width) into the DOM; the test reads the DOM Chromium dumps."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers import missing

# Runs after every image has loaded (the load event) and writes what was rendered.
RECORDER = """<script>
window.addEventListener("load", () => {
  const seen = {
    text: document.body.innerText,
    headings: [...document.querySelectorAll("h1, h2")].map((h) => h.innerText),
    tables: document.querySelectorAll("table").length,
    images: [...document.images].map((i) => ({ alt: i.alt, width: i.naturalWidth })),
  };
  const out = document.createElement("template");
  out.id = "browser-seen";
  out.setAttribute("data-seen", JSON.stringify(seen));
  document.body.appendChild(out);
});
</script>"""


@dataclass(frozen=True)
class Rendered:
    """What the browser rendered of a page."""

    text: str
    headings: list[str]
    tables: int
    images: list[dict[str, Any]]

    def markdown_left(self) -> list[str]:
        """Lines of the visible text that show raw Markdown syntax."""
        return [
            line
            for line in self.text.splitlines()
            if "**" in line or "|---|" in line or line.lstrip().startswith("#")
        ]


def chromium() -> str:
    """The Chromium executable; the test skips without it (fails under CI=true)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing("chromium not installed (`make services` installs it as root)")
        raise AssertionError("unreachable")
    return found


def dump_dom(url: str, folder: Path) -> str:
    """The DOM headless Chromium holds once `url` has loaded and its scripts have run
    (virtual time: the budget is the page's clock, not a wall-clock limit)."""
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={folder / 'chromium-profile'}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.strip(), f"chromium rendered nothing of {url}: {result.stderr[-2000:]}"
    return result.stdout


def render(page: Path, folder: Path) -> Rendered:
    """Open a copy of `page` (in `folder`) in headless Chromium; what it rendered."""
    copy = folder / f"seen_{page.name}"
    text = page.read_text(encoding="utf-8")
    copy.write_text(text.replace("</body>", RECORDER + "</body>"), encoding="utf-8")
    dom = dump_dom(copy.as_uri(), folder)
    found = re.search(r'id="browser-seen" data-seen="([^"]*)"', dom)
    assert found, f"the recorder did not run in {page}"
    seen = json.loads(html.unescape(found.group(1)))
    return Rendered(seen["text"], seen["headings"], seen["tables"], seen["images"])
