"""Self-contained HTML report pages: one stylesheet and the few building blocks every report uses.

Evaluation reports, comparison reports and the demo report are all built with :func:`page`; figures are embedded
as data URIs (:func:`figure_to_data_uri`), so a report is one file that opens offline. Text from data (label names,
file names, free text) goes through :func:`html.escape` here or in the caller, never straight into markup.
"""
from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;color:#222;max-width:1400px;
line-height:1.45;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.abstract{background:#f4f7fb;border-left:4px solid #1f77b4;padding:.8em 1em;font-size:1.05em;line-height:1.5}
table{border-collapse:collapse;font-size:.85em}th,td{padding:.25em .6em;border-bottom:1px solid #eee;text-align:right}
th{background:#fafafa;position:sticky;top:0}td:first-child,th:first-child{text-align:left}
tr.excluded td{color:#999}.ci{color:#777;font-size:.9em}pre{background:#f6f6f6;padding:.8em;overflow-x:auto}
img{max-width:100%}
"""


def page(title: str, body: Sequence[str]) -> str:
    """A complete HTML document with the shared stylesheet; ``body`` is a list of HTML fragments."""
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], escape: bool = True,
          excluded: Sequence[bool] | None = None) -> str:
    """An HTML table; cells are escaped unless ``escape=False`` (cells already formatted as HTML); rows flagged in
    ``excluded`` are greyed out."""
    cell = (lambda value: html.escape(str(value))) if escape else str
    head = "".join(f"<th>{cell(h)}</th>" for h in headers)
    flags = excluded or [False] * len(rows)
    body = "".join(f"<tr{' class=excluded' if flag else ''}>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>"
                   for row, flag in zip(rows, flags))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def provenance(command: str | None, **blocks: Mapping | None) -> list[str]:
    """The provenance section: the exact command and one JSON block per keyword (config, settings, run...)."""
    parts = ["<h2>Provenance</h2>", f"<p>Command:</p><pre>{html.escape(command or '(not recorded)')}</pre>"]
    for name, block in blocks.items():
        text = json.dumps(block or {}, indent=2, default=str)
        parts.append(f"<p>{html.escape(name.capitalize())}:</p><pre>{html.escape(text)}</pre>")
    return parts


def figure_to_data_uri(fig: Figure, dpi: int = 90) -> str:
    """Render a figure as a ``data:image/png;base64,...`` URI for an ``<img>`` in self-contained HTML."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
