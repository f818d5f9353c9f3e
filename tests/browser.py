"""Pages in a real browser: headless Chromium (Debian's `chromium`, installed by `make
services`) opens a copy of a page with a small script that records, once the page has
loaded, what the browser rendered (its visible text, headings, tables and every image's
natural width) into the DOM; the test reads the DOM Chromium dumps. A page served by someone
else's app (Evidently's UI) is read from its dumped DOM as an element tree (`open_page`)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
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


def dump_dom(url: str, folder: Path, window: tuple[int, int] = (800, 600)) -> str:
    """The DOM headless Chromium holds once `url` has loaded and its scripts have run
    (virtual time: the budget is the page's clock, not a wall-clock limit), in a window of
    `window` (width, height) pixels."""
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={folder / 'chromium-profile'}",
            f"--window-size={window[0]},{window[1]}",
            # Charts that honour it (Evidently's) are drawn at their final size, not animated.
            "--force-prefers-reduced-motion",
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


@dataclass
class Element:
    """An element of a dumped DOM: its tag, attributes and children (elements and text)."""

    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    def has_class(self, name: str) -> bool:
        """Whether `name` is one of the element's classes."""
        return name in self.attrs.get("class", "").split()

    def text(self) -> str:
        """The text of the element and its descendants."""
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def descendants(self) -> Iterator[Element]:
        """Every element below this one, in document order."""
        for child in self.children:
            if isinstance(child, Element):
                yield child
                yield from child.descendants()

    def find_all(self, test: Callable[[Element], bool]) -> list[Element]:
        """The descendants for which `test` is true, in document order."""
        return [e for e in self.descendants() if test(e)]


# Elements without an end tag in HTML.
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
_VOID |= {"track", "wbr"}


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.open[-1].children.append(element)
        if tag not in _VOID:
            self.open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.open[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        opened = [e.tag for e in self.open]
        if tag in opened[1:]:
            del self.open[len(opened) - 1 - opened[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        self.open[-1].children.append(data)


def parse_dom(text: str) -> Element:
    """The element tree of a serialized DOM."""
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


def open_page(url: str, folder: Path, window: tuple[int, int] = (1400, 3000)) -> Element:
    """The DOM of `url` once headless Chromium has loaded it and run its scripts, as an
    element tree (a tall window, so that every panel of a dashboard is on screen)."""
    return parse_dom(dump_dom(url, folder, window))


@dataclass(frozen=True)
class ChartPanel:
    """A bar-chart panel of Evidently's dashboard as drawn: its title, the labels of its value
    axis with their heights on the page, and the top of each bar drawn."""

    title: str
    ticks: list[tuple[float, float]]  # (value the label reads, y in pixels)
    bar_tops: list[float]  # y in pixels

    def value_at(self, y: float) -> float:
        """The value the axis labels give to the height `y` (a linear axis)."""
        (v0, y0), (v1, y1) = self.ticks[0], self.ticks[-1]
        return v0 + (y - y0) * (v1 - v0) / (y1 - y0)


def _translate_y(element: Element) -> float:
    found = re.search(r"translate\(\s*[-\d.e]+\s*,\s*([-\d.e]+)\s*\)", element.attrs["transform"])
    assert found, element.attrs
    return float(found.group(1))


def dashboard_panels(page: Element) -> list[ChartPanel]:
    """Each panel of an Evidently dashboard page (a card with a title and a chart drawn by
    MUI X Charts), in page order."""
    panels = []
    for card in page.find_all(lambda e: e.has_class("MuiCard-root")):
        (title,) = card.find_all(lambda e: e.tag == "h5")
        ticks = [
            (float(label.text().replace(",", "").replace("\u2212", "-")), _translate_y(tick))
            for axis in card.find_all(lambda e: e.has_class("MuiChartsAxis-directionY"))
            for tick in axis.find_all(lambda e: e.has_class("MuiChartsAxis-tickContainer"))
            for label in tick.find_all(lambda e: e.has_class("MuiChartsAxis-tickLabel"))
        ]
        bars = card.find_all(lambda e: e.tag == "rect" and e.has_class("MuiBarElement-root"))
        tops = [float(bar.attrs["y"]) for bar in bars]
        panels.append(ChartPanel(title.text().strip(), ticks, tops))
    return panels
