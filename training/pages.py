"""HTML pages from Jinja2 templates: the model card here, the drift and backtest pages in
`monitoring`. A page is one self-contained file: plots are embedded as data URIs, styles
inline, nothing is fetched when it opens."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, PackageLoader, StrictUndefined, select_autoescape
from matplotlib.figure import Figure


def render(package: str, template: str, **context: Any) -> str:
    """`template` of `<package>/templates/` filled with `context` (values are HTML-escaped);
    templates there may extend `base.html` of `training/templates/`."""
    env = Environment(
        loader=ChoiceLoader([PackageLoader(package), PackageLoader("training")]),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["number"] = number
    return env.get_template(template).render(**context)


def number(value: Any, digits: int = 3) -> str:
    """A figure for people: thousands separated, `digits` decimals below 100 (one below 1000,
    none above; none at all with `digits` 0), "n/a" for a missing one."""
    if value is None:
        return "n/a"
    value = float(value)
    if value != value:
        return "n/a"
    if abs(value) >= 1000 or digits == 0:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.{digits}f}"


def png_uri(figure: Figure) -> str:
    """The figure as a PNG data URI (for `<img src=...>`)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def publish(text: str, path: Path) -> Path:
    """Write `text` to `path` atomically (a reader sees the old page or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path
