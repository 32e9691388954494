"""The batch view of ``ecgfm predict --report report.html``: one self-contained HTML page listing every record with its
top findings and a thumbnail of lead II, sortable by any finding's probability, each linking to its PDF printout.

Bounded for large batches: the first :data:`MAX_DETAILED` records get a thumbnail (an inline SVG polyline of ~1 kB)
and a printout (``<report>_files/<n>_<record>.pdf``); the others are listed with their findings only, and the page
says so. Everything taken from a file (record ids, file names, failure reasons) is HTML-escaped; the inline script
reads the probabilities from a JSON block and only reorders rows.
"""
from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from ecgfm.errors import ECGError
from ecgfm.printout import format_probability
from ecgfm.viewer.payload import decimate_minmax

#: Records that get a thumbnail and a PDF printout (a printout costs ~0.4 s: 200 add about a minute and a half).
MAX_DETAILED = 200
TOP_FINDINGS = 3
THUMB_SECONDS, THUMB_RATE = 10.0, 40.0  # lead II over 10 s, min/max-decimated to 40 points per second
THUMB_WIDTH_MM, THUMB_MM_PER_MV = 100.0, 7.0  # 10 mm/s and 7 mm/mV in a 20-mm strip


def write_report(report: Any, path: str | os.PathLike, max_detailed: int = MAX_DETAILED) -> Path:
    """Write the HTML page for a :class:`~ecgfm.inference.PredictionReport` (and its printouts beside it).

    Returns the page's path. Records are re-read from their ``source`` files for the thumbnails and printouts.
    """
    from ecgfm.io import read
    from ecgfm.printout import printout

    path = Path(path)
    folder = path.with_name(f"{path.stem}_files")
    folder.mkdir(parents=True, exist_ok=True)
    rows, probabilities = [], []
    for index, prediction in enumerate(report.predictions):
        findings = [vars(f).copy() if not isinstance(f, dict) else f for f in prediction.findings]
        thumb, link, note = "", None, ""
        if index < max_detailed:
            try:
                ecg = read(prediction.source)
                thumb = thumbnail_svg(ecg)
                pdf = folder / f"{index + 1:04d}_{_safe_stem(prediction.record_id or Path(str(prediction.source)).stem)}.pdf"
                printout(ecg, findings=findings).savefig(pdf, format="pdf", metadata={"Creator": "ecgfm"})
                link = f"{folder.name}/{pdf.name}"
            except (ECGError, OSError, TypeError) as exc:
                note = f"not drawn: {exc}"
        rows.append(_row(index, prediction, findings, thumb, link, note))
        probabilities.append({label: round(float(p), 4) for label, p in prediction.probabilities.items()})
    labels = sorted({label for probs in probabilities for label in probs})
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(_page(rows, probabilities, labels, report.failures, max_detailed, len(report.predictions)),
                   encoding="utf-8")
    os.replace(tmp, path)  # never leave a half-written page under the final name
    return path


def thumbnail_svg(ecg: Any) -> str:
    """Lead II (or the first lead) over its first 10 s as a small inline SVG polyline on a 1-s grid."""
    lead = ecg.leads.index("II") if "II" in ecg.leads else 0
    n = min(ecg.n_samples, int(THUMB_SECONDS * ecg.fs))
    points, rate, offset = decimate_minmax(np.asarray(ecg.signal[lead:lead + 1, :n], dtype=np.float64), ecg.fs,
                                           THUMB_RATE)
    values = np.clip(points[0], -1.4, 1.4)  # stay inside the strip
    x = (offset + np.arange(values.size) / rate) * THUMB_WIDTH_MM / THUMB_SECONDS
    y = 10.0 - values * THUMB_MM_PER_MV
    grid = "".join(f"M{s * THUMB_WIDTH_MM / THUMB_SECONDS:g} 0V20" for s in range(1, int(THUMB_SECONDS)))
    line = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y))
    return (f'<svg class="thumb" viewBox="0 0 {THUMB_WIDTH_MM:g} 20" width="200" height="40" role="img" '
            f'aria-label="lead {html.escape(ecg.leads[lead])}"><path d="{grid}" stroke="#f2b8b8" stroke-width="0.3"/>'
            f'<polyline points="{line}" fill="none" stroke="#000" stroke-width="0.35"/></svg>')


def _safe_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-.")[:80] or "ecg"


def _row(index: int, prediction: Any, findings: list[dict], thumb: str, link: str | None, note: str) -> str:
    e = html.escape
    record = e(str(prediction.record_id or prediction.source or f"record {index + 1}"))
    name = f'<a href="{e(quote(link))}">{record}</a>' if link else record
    source = e(str(prediction.source or ""))
    chips = "".join(f'<button type="button" class="chip" data-label="{e(f["label"])}" title="{e(f["description"])}">'
                    f'{e(f["label"])} <b>{format_probability(f["probability"])}</b></button>'
                    for f in findings[:TOP_FINDINGS])
    more = f' <span class="muted">+{len(findings) - TOP_FINDINGS} more</span>' if len(findings) > TOP_FINDINGS else ""
    described = "; ".join(f'{e(f["description"])} ({format_probability(f["probability"])})'
                          for f in findings[:TOP_FINDINGS])
    return (f'<tr data-index="{index}" data-record="{record}" data-n="{len(findings)}"><td class="num">{index + 1}</td>'
            f'<td>{name}<div class="muted small">{source}</div>{f"<div class=muted>{e(note)}</div>" if note else ""}'
            f'</td><td>{thumb}</td><td>{chips or "<span class=muted>none</span>"}{more}'
            f'<div class="small">{described}</div></td><td class="num">{len(findings)}</td>'
            f'<td class="num sortp"></td></tr>')


def _page(rows: list[str], probabilities: list[dict], labels: list[str], failures: list, max_detailed: int,
          total: int) -> str:
    e = html.escape
    data = json.dumps(probabilities).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    options = "".join(f'<option value="{e(label)}">probability of {e(label)}</option>' for label in labels)
    capped = (f"<p class=muted>Thumbnails and printouts for the first {max_detailed} of {total} records; the rest are "
              "listed with their findings.</p>" if total > max_detailed else "")
    failed = "".join(f"<tr><td>{e(str(f.source))}</td><td>{e(str(f.reason))}</td></tr>" for f in failures)
    failed_block = (f"<h2>{len(failures)} file(s) failed</h2><table><tr><th>file</th><th>reason</th></tr>{failed}"
                    "</table>" if failures else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ecgfm predictions ({total} records)</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1em; color: #1c1c1c; }}
table {{ border-collapse: collapse; }} th, td {{ padding: .25em .5em; border-bottom: 1px solid #eee; text-align: left;
vertical-align: top; }} td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.muted {{ color: #666; }} .small {{ font-size: .85em; }} th.sortable {{ cursor: pointer; text-decoration: underline dotted; }}
.chip {{ font: inherit; border: 1px solid #c9a0a6; border-radius: 1em; background: #fbeff1; padding: 0 .5em;
margin: 0 .2em .2em 0; cursor: pointer; }} .thumb {{ background: #fff; border: 1px solid #f2b8b8; }}
</style></head><body>
<h1>ecgfm predictions: {total} records</h1>
<p>Each record's top findings (probability at or above the model's threshold); the record name opens its PDF printout
(print at 100% for 25 mm/s). Click a finding or choose below to sort by its probability.</p>{capped}
<p><label>Sort by <select id="sort"><option value="index">input order</option><option value="record">record</option>
<option value="n">number of findings</option>{options}</select></label> <span id="sorted" class="muted"></span></p>
<table id="records"><thead><tr><th>#</th><th class="sortable" data-sort="record">record</th><th>lead II</th>
<th>top findings</th><th class="sortable" data-sort="n">findings</th><th>p</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody></table>
{failed_block}
<script type="application/json" id="probabilities">{data}</script>
<script>
(() => {{
  const probs = JSON.parse(document.getElementById("probabilities").textContent);
  const body = document.querySelector("#records tbody"), select = document.getElementById("sort");
  function sortBy(key) {{
    const rows = Array.from(body.rows);
    const value = (row) => key === "index" ? Number(row.dataset.index) : key === "record" ? row.dataset.record
      : key === "n" ? -Number(row.dataset.n) : -(probs[Number(row.dataset.index)][key] ?? -1);
    rows.sort((a, b) => {{ const x = value(a), y = value(b); return x < y ? -1 : x > y ? 1 : 0; }});
    const label = ["index", "record", "n"].includes(key) ? null : key;
    for (const row of rows) {{
      const p = label === null ? undefined : probs[Number(row.dataset.index)][label];
      row.querySelector(".sortp").textContent = p === undefined ? "" : p.toFixed(2);
      body.appendChild(row);
    }}
    select.value = key;
    document.getElementById("sorted").textContent = label ? "highest first" : "";
  }}
  select.addEventListener("change", () => sortBy(select.value));
  for (const th of document.querySelectorAll("th.sortable")) th.addEventListener("click", () => sortBy(th.dataset.sort));
  body.addEventListener("click", (event) => {{
    const chip = event.target.closest(".chip");
    if (chip) sortBy(chip.dataset.label);
  }});
}})();
</script>
</body></html>
"""
