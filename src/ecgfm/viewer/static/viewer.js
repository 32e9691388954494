// ecgfm viewer: drop an ECG file, see it on calibrated paper, read the model's findings, shade a finding's
// attribution, download the PDF printout. Plain JavaScript and SVG, no external resources.
// Every string that comes from a file or the server is inserted with textContent or setAttribute, never as HTML.
"use strict";
(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  // Paper geometry in millimetres, as in ecgfm.printout: calibration pulse, then a 250-mm strip (10 s at 25 mm/s).
  const GRID_X0 = 10, TRACE_X0 = 25, STRIP_MM = 250, TOP = 8, STANDARD_PITCH = 42.5, CAL_S = 0.2;
  const STANDARD_GRID = [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]];
  const STANDARD_LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"];
  const CSS_PX_PER_MM = 96 / 25.4;  // CSS pixels are 1/96 inch
  const KNOWN_FIELDS = new Set(["record_id", "source", "probabilities", "raw_probabilities", "findings", "quality",
                                "leads", "leads_used", "duration_s"]);

  const $ = (id) => document.getElementById(id);
  const state = { files: [], ecg: null, prediction: null, labels: {}, attribution: null, selected: null,
                  scale: null, layout: "standard", speed: 25, gain: 10, model: "" };
  window.ecgfmTimings = {};

  // -- small DOM helpers (text only) --------------------------------------------------------------------------------
  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }
  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    return node;
  }
  function setStatus(text, isError) {
    const status = $("status");
    status.textContent = text || "";
    status.className = isError ? "error" : "";
  }
  function addMeta(list, name, value) {
    if (value === undefined || value === null || value === "") return;
    list.append(el("dt", name), el("dd", Array.isArray(value) ? value.join("; ") : value));
  }
  const fmt = (x, digits = 2) => (typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "?");
  // As ecgfm.printout.format_probability: 0.93, 0.050, 0.0021, "< 0.001" (small thresholds do not all read 0.00)
  const fmtP = (x) => (typeof x !== "number" || !isFinite(x) ? "?" : x >= 0.1 ? x.toFixed(2)
    : x >= 0.001 ? x.toPrecision(2) : "< 0.001");

  // -- talking to the server ------------------------------------------------------------------------------------------
  function upload() {
    const form = new FormData();
    for (const file of state.files) form.append("files", file, file.name);
    return form;
  }
  // A server started with an API key answers 401: the page then asks for the key once per tab, keeps it in
  // sessionStorage and sends it in a header (never in a URL) with every request.
  const KEY_STORE = "ecgfm-api-key";
  let keyPrompt = null;
  function storedKey() {
    try { return sessionStorage.getItem(KEY_STORE) || ""; } catch (e) { return ""; }
  }
  function askForKey() {
    keyPrompt = keyPrompt || Promise.resolve().then(() => {
      const key = (window.prompt("This ecgfm server needs an API key:") || "").trim();
      try { sessionStorage.setItem(KEY_STORE, key); } catch (e) { /* storage disabled: ask again next time */ }
      keyPrompt = null;
      return key;
    });
    return keyPrompt;
  }
  async function request(path, options) {
    const send = (key) => fetch(path, Object.assign({}, options, key ? { headers: { "X-API-Key": key } } : {}));
    const used = storedKey();
    let response = await send(used);
    if (response.status === 401) {
      const key = storedKey() !== used ? storedKey() : await askForKey();  // another request may have asked already
      if (key) response = await send(key);
    }
    return response;
  }
  async function post(path, params, asBlob) {
    const query = params ? "?" + new URLSearchParams(params).toString() : "";
    const response = await request(path + query, { method: "POST", body: upload() });
    if (!response.ok) {
      let detail = response.statusText;
      try { const body = await response.json(); detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); } catch (e) { /* not JSON */ }
      throw new Error(`${path}: ${response.status} ${detail}`);
    }
    return asBlob ? response.blob() : response.json();
  }

  async function init() {
    try {
      const json = async (path) => {
        const response = await request(path);
        if (!response.ok) throw new Error(`${path}: ${response.status} ${response.statusText}`);
        return response.json();
      };
      const [health, labels] = await Promise.all([json("health"), json("labels")]);
      state.model = health.model;
      $("model").textContent = `model: ${health.model} (${health.labels} labels, ${health.backend})`;
      for (const row of labels) state.labels[row.label] = row;
    } catch (e) {
      setStatus("Cannot reach the ecgfm server: " + e.message, true);
    }
  }

  // -- loading a file -----------------------------------------------------------------------------------------------
  async function load(fileList) {
    state.files = Array.from(fileList || []);
    if (!state.files.length) return;
    state.ecg = state.prediction = state.attribution = state.selected = null;
    document.body.dataset.state = "loading";
    const t0 = performance.now();
    window.ecgfmTimings = { files: state.files.map((f) => f.name) };
    setStatus(`Reading ${state.files.map((f) => f.name).join(", ")}\u2026`);
    $("content").hidden = false;
    $("drop").classList.add("compact");  // the ECG gets the room once a file is open
    $("findings").tBodies[0].replaceChildren();
    $("findings-status").textContent = "Waiting for the model\u2026";
    $("overlay-note").hidden = true;
    const drawn = post("ecg").then((ecg) => {
      state.ecg = ecg;
      showRecord();
      draw();
      window.ecgfmTimings.ecgMs = performance.now() - t0;
    });
    const predicted = post("predict").then((prediction) => {
      state.prediction = prediction;
      showFindings();
      window.ecgfmTimings.predictionMs = performance.now() - t0;
    });
    const results = await Promise.allSettled([drawn, predicted]);
    const errors = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
    if (errors.length) {
      setStatus(errors.join(" \u2014 "), true);
      if (!state.prediction) $("findings-status").textContent = "No prediction.";
    } else {
      setStatus("");
    }
    document.body.dataset.state = errors.length ? "error" : "ready";
  }

  async function moveWindow(direction) {
    const ecg = state.ecg;
    const start = Math.max(0, Math.min(ecg.duration - 1, ecg.start_s + direction * ecg.seconds));
    setStatus("Loading " + fmt(start, 1) + " s\u2026");
    try {
      state.ecg = await post("ecg", { start_s: start.toFixed(3) });
      showRecord();
      draw();
      setStatus("");
    } catch (e) { setStatus(e.message, true); }
  }

  // -- the record's header ----------------------------------------------------------------------------------------------
  function showRecord() {
    const ecg = state.ecg, meta = ecg.meta || {};
    $("record-title").textContent = ecg.record_id || ecg.file || "ECG";
    const list = $("meta");
    list.replaceChildren();
    addMeta(list, "File", state.files.map((f) => f.name).join(", "));
    addMeta(list, "Patient", meta.patient_id);
    addMeta(list, "Age / sex", [meta.age, { M: "male", F: "female" }[meta.sex] || meta.sex].filter(Boolean).join(", "));
    addMeta(list, "Recorded", meta.acquisition_time);
    addMeta(list, "Rate", ecg.heart_rate_bpm ? `${Math.round(ecg.heart_rate_bpm)} bpm` : "not measurable");
    addMeta(list, "Signal", `${fmt(ecg.duration, 1)} s at ${ecg.fs} Hz, ${ecg.leads.length} leads`);
    addMeta(list, "Leads in the file", ecg.leads.join(", "));
    if (ecg.missing_leads.length) addMeta(list, "Not recorded", ecg.missing_leads.join(", "));
    addMeta(list, "Device", [meta.device, meta.site].filter(Boolean).join(", "));
    addMeta(list, "Device statements", meta.statements);
    const partial = ecg.start_s > 0 || ecg.start_s + ecg.seconds < ecg.duration - 1e-6;
    $("window-nav").hidden = !partial;
    $("earlier").disabled = ecg.start_s <= 0;
    $("later").disabled = ecg.start_s + ecg.seconds >= ecg.duration - 1e-6;
    $("window-note").textContent = partial
      ? `Showing ${fmt(ecg.start_s, 1)}\u2013${fmt(ecg.start_s + ecg.seconds, 1)} s of ${fmt(ecg.duration, 1)} s.` : "";
  }

  // -- findings ---------------------------------------------------------------------------------------------------------
  function findingRow(label, description, probability, threshold, rule) {
    const above = probability >= threshold;
    const row = el("tr", null, above ? "above" : "");
    row.dataset.label = label;
    row.tabIndex = 0;
    const name = el("td");
    name.append(el("span", description || label), document.createTextNode(" "), el("span", label, "code"));
    if (rule) name.append(el("span", "rule: " + rule, "rule"));
    row.append(name, el("td", fmtP(probability), "num prob"), el("td", fmtP(threshold), "num"),
               el("td", above ? "yes" : "no", "flag"));
    row.addEventListener("click", () => explainLabel(label));
    row.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); explainLabel(label); } });
    return row;
  }

  function showFindings() {
    const prediction = state.prediction;
    const body = $("findings").tBodies[0];
    body.replaceChildren();
    for (const f of prediction.findings) body.append(findingRow(f.label, f.description, f.probability, f.threshold, f.rule));
    $("findings-status").textContent = prediction.findings.length
      ? `${prediction.findings.length} finding(s) at or above the model's thresholds, most probable first.`
      : "No label reaches its threshold (see all labels below).";
    const all = $("all-labels").querySelector("tbody");
    all.replaceChildren();
    const entries = Object.entries(prediction.probabilities).sort((a, b) => b[1] - a[1]);
    for (const [label, p] of entries) {
      const info = state.labels[label] || {};
      all.append(findingRow(label, info.description, p, info.threshold ?? NaN));
    }
    const quality = $("quality");
    quality.replaceChildren();
    addMeta(quality, "Signal quality", qualityText(prediction.quality) || "not reported by this service");
    addMeta(quality, "Leads read", leadsText(prediction.leads) || prediction.leads_used || prediction["leads used"]);
    for (const [key, value] of Object.entries(prediction)) {  // fields newer services add, shown as they come
      if (KNOWN_FIELDS.has(key) || key === "leads used" || value === null) continue;
      if (Array.isArray(value) && !value.length) continue;
      addMeta(quality, key.replace(/_/g, " "), typeof value === "object" ? JSON.stringify(value).slice(0, 300) : value);
    }
    highlightSelected();
  }

  function leadsText(leads) {
    if (!leads || !leads.lead_set) return null;
    let text = `${leads.lead_set}: ${(leads.used || []).join(", ")}`;
    if (leads.derived && leads.derived.length) text += `; ${leads.derived.join(", ")} derived from I and II`;
    if (leads.ignored && leads.ignored.length) text += `; not read: ${leads.ignored.join(", ")}`;
    return text;
  }

  function qualityText(quality) {
    if (quality === undefined || quality === null) return null;
    if (typeof quality === "string") return quality;
    if (Array.isArray(quality)) return quality.length ? quality.map(String).join("; ") : "ok";
    if (typeof quality.ok === "boolean") {  // ecgfm serve: {ok, problems, heart_rate}
      const rate = typeof quality.heart_rate === "number" ? `, ${Math.round(quality.heart_rate)} bpm` : "";
      return quality.ok ? `ok${rate}` : (quality.problems || []).join("; ") + rate;
    }
    const verdict = quality.verdict || quality.status || "";
    const problems = quality.problems || quality.issues || [];
    return [verdict].concat(problems.map((p) => (typeof p === "string" ? p : JSON.stringify(p)))).filter(Boolean).join("; ");
  }

  function highlightSelected() {
    for (const row of document.querySelectorAll("tr[data-label]")) {
      row.classList.toggle("selected", row.dataset.label === state.selected);
    }
  }

  async function explainLabel(label) {
    if (!state.files.length) return;
    state.selected = label;
    highlightSelected();
    setStatus(`Explaining ${label}\u2026 (integrated gradients: several seconds)`);
    const t0 = performance.now();
    try {
      const attribution = await post("explain/attribution", { label });
      if (state.selected !== label) return;  // another finding was chosen meanwhile
      state.attribution = attribution;
      window.ecgfmTimings.attributionMs = performance.now() - t0;
      const note = $("overlay-note");
      note.hidden = false;
      const leads = attribution.top_leads.join(", ");
      note.textContent = `${attribution.description} (${attribution.label}, p = ${fmtP(attribution.probability)}): ` +
        `${attribution.note} Leads pushing most towards it: ${leads}.`;
      draw();
      setStatus("");
    } catch (e) { setStatus(e.message, true); }
  }

  // -- drawing ----------------------------------------------------------------------------------------------------------
  function layoutCells() {
    const ecg = state.ecg, speed = state.speed, gain = state.gain;
    const have = new Set(ecg.leads);
    if (state.layout === "rows") {
      const leads = STANDARD_LEADS.filter((l) => have.has(l)).concat(ecg.leads.filter((l) => !STANDARD_LEADS.includes(l)));
      const pitch = Math.max(15, Math.ceil((2 * gain) / 5) * 5);
      const stripMm = Math.ceil((ecg.seconds * speed) / 5) * 5;
      const rows = leads.map((lead, r) => ({ baseline: TOP + pitch * (r + 0.5),
        cells: [{ lead, x0: TRACE_X0, t0: 0, t1: ecg.seconds }] }));
      return { rows, pitch, gridRight: TRACE_X0 + stripMm + 5, gridBottom: TOP + pitch * leads.length };
    }
    const stripS = STRIP_MM / speed, columnS = stripS / 4, columnMm = STRIP_MM / 4;
    const rows = STANDARD_GRID.map((leads, r) => ({ baseline: TOP + STANDARD_PITCH * (r + 0.5),
      cells: leads.map((lead, c) => ({ lead, x0: TRACE_X0 + c * columnMm, t0: c * columnS, t1: (c + 1) * columnS, separator: c > 0 })) }));
    const rhythm = have.has("II") ? "II" : ecg.leads[0];
    rows.push({ baseline: TOP + STANDARD_PITCH * 3.5, cells: [{ lead: rhythm, x0: TRACE_X0, t0: 0, t1: stripS, rhythm: true }] });
    return { rows, pitch: STANDARD_PITCH, gridRight: TRACE_X0 + STRIP_MM + 5, gridBottom: TOP + STANDARD_PITCH * 4 };
  }

  function gridPath(x0, x1, y0, y1, step) {
    const parts = [];
    for (let x = x0; x <= x1 + 1e-6; x += step) parts.push(`M${x.toFixed(2)} ${y0}V${y1}`);
    for (let y = y0; y <= y1 + 1e-6; y += step) parts.push(`M${x0} ${y.toFixed(2)}H${x1}`);
    return parts.join("");
  }

  function tracePath(lead, cell, baseline) {
    const ecg = state.ecg, index = ecg.leads.indexOf(lead);
    if (index < 0) return "";
    const samples = ecg.samples[index], rate = ecg.display_fs, offset = ecg.sample_offset_s;
    const first = Math.max(0, Math.ceil((cell.t0 - offset) * rate - 1e-9));
    const last = Math.min(samples.length, Math.ceil((cell.t1 - offset) * rate - 1e-9));
    const parts = [];
    for (let i = first; i < last; i++) {
      const x = cell.x0 + (offset + i / rate - cell.t0) * state.speed;
      const y = baseline - (samples[i] / 1000) * state.gain;
      parts.push((i === first ? "M" : "L") + x.toFixed(2) + " " + y.toFixed(2));
    }
    return parts.join("");
  }

  function overlayRects(group, lead, cell, baseline, pitch) {
    const a = state.attribution, ecg = state.ecg;
    const index = a.leads.indexOf(lead);
    if (index < 0) return;
    const values = a.values[index];
    for (let k = 0; k < values.length; k++) {
      const v = values[k];
      if (Math.abs(v) < 0.05) continue;
      const t0 = a.start_s + k * a.bin_s - ecg.start_s, t1 = t0 + a.bin_s;  // window time
      const from = Math.max(t0, cell.t0), to = Math.min(t1, cell.t1);
      if (to <= from) continue;
      group.append(svgEl("rect", { x: (cell.x0 + (from - cell.t0) * state.speed).toFixed(2), y: (baseline - pitch / 2).toFixed(2),
        width: ((to - from) * state.speed).toFixed(2), height: pitch.toFixed(2), fill: v > 0 ? "#d7301f" : "#2b6cd8",
        "fill-opacity": (0.6 * Math.abs(v)).toFixed(2), class: "attribution" }));
    }
  }

  function draw() {
    if (!state.ecg) return;
    const svg = $("ecg"), geometry = layoutCells();
    const width = geometry.gridRight + 5, height = geometry.gridBottom + 5;
    svg.replaceChildren();
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.dataset.layout = state.layout;
    svg.append(svgEl("rect", { x: 0, y: 0, width, height, fill: "#fff" }));
    svg.append(svgEl("path", { d: gridPath(GRID_X0, geometry.gridRight, TOP, geometry.gridBottom, 1), stroke: "#f6c9c9",
      "stroke-width": 0.6, "vector-effect": "non-scaling-stroke", fill: "none", class: "grid-minor" }));
    svg.append(svgEl("path", { d: gridPath(GRID_X0, geometry.gridRight, TOP, geometry.gridBottom, 5), stroke: "#e89292",
      "stroke-width": 1, "vector-effect": "non-scaling-stroke", fill: "none", class: "grid-major" }));
    const overlay = svgEl("g", { class: "overlay" });
    svg.append(overlay);
    const traces = svgEl("g", { fill: "none", stroke: "#000", "stroke-width": 1, "vector-effect": "non-scaling-stroke",
      "stroke-linejoin": "round" });
    svg.append(traces);
    const labels = svgEl("g", { "font-size": 3.4, "font-weight": "bold", "font-family": "system-ui, sans-serif" });
    svg.append(labels);
    const cal = CAL_S * state.speed;
    for (const row of geometry.rows) {
      const b = row.baseline, g = state.gain, x = GRID_X0 + 2;
      traces.append(svgEl("path", { d: `M${x} ${b}H${x + 1}V${b - g}H${x + 1 + cal}V${b}H${x + 2 + cal}`, class: "calibration" }));
      for (const cell of row.cells) {
        if (state.attribution) overlayRects(overlay, cell.lead, cell, b, geometry.pitch);
        const d = tracePath(cell.lead, cell, b);
        const label = svgEl("text", { x: cell.x0 + 1, y: b - geometry.pitch * 0.3 });
        label.textContent = cell.lead;
        labels.append(label);
        if (d) {
          const path = svgEl("path", { d, class: "trace" });
          path.dataset.lead = cell.lead;
          traces.append(path);
        } else {
          const missing = svgEl("text", { x: cell.x0 + 8, y: b, "font-weight": "normal", fill: "#555" });
          missing.textContent = state.ecg.leads.includes(cell.lead) ? "no data in this stretch" : `${cell.lead} not recorded`;
          labels.append(missing);
        }
        if (cell.separator) traces.append(svgEl("path", { d: `M${cell.x0} ${b - 3}V${b + 3}`, class: "separator" }));
      }
    }
    const caption = svgEl("text", { x: GRID_X0, y: 5.5, "font-size": 3.2, fill: "#333", "font-family": "system-ui, sans-serif" });
    caption.textContent = `${state.speed} mm/s \u00b7 ${state.gain} mm/mV` +
      (state.attribution ? ` \u00b7 shading: ${state.attribution.label}. ${state.attribution.note}` : "");
    svg.append(caption);
    applyZoom();
  }

  function applyZoom() {
    const svg = $("ecg");
    const box = svg.viewBox.baseVal;
    if (!box || !box.width) return;
    const fit = Math.max(1, ($("scroller").clientWidth - 2) / box.width);
    const scale = state.scale === null ? fit : state.scale;
    svg.setAttribute("width", Math.round(box.width * scale));
    svg.setAttribute("height", Math.round(box.height * scale));
    $("zoom-level").textContent = `${Math.round((scale / CSS_PX_PER_MM) * 100)}% of actual size`;
  }

  function zoomBy(factor) {
    const box = $("ecg").viewBox.baseVal;
    const current = state.scale === null ? ($("scroller").clientWidth - 2) / box.width : state.scale;
    state.scale = Math.min(40, Math.max(1, current * factor));
    applyZoom();
  }

  async function downloadPdf() {
    if (!state.files.length) return;
    const button = $("pdf");
    button.disabled = true;
    setStatus("Drawing the PDF printout\u2026");
    try {
      const blob = await post("printout", { speed: state.speed, gain: state.gain, layout: state.layout }, true);
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = ((state.ecg && state.ecg.record_id) || "ecg").replace(/[^A-Za-z0-9_.-]+/g, "-") + ".pdf";
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60000);
      window.ecgfmTimings.pdfBytes = blob.size;
      setStatus(`PDF printout downloaded (${Math.round(blob.size / 1024)} kB; print at 100% for 25 mm/s).`);
    } catch (e) { setStatus(e.message, true); } finally { button.disabled = false; }
  }

  // -- wiring -------------------------------------------------------------------------------------------------------------
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); load(e.dataTransfer.files); });
  $("file").addEventListener("change", (e) => load(e.target.files));
  for (const id of ["layout", "speed", "gain"]) {
    $(id).addEventListener("change", (e) => { state[id] = id === "layout" ? e.target.value : Number(e.target.value); draw(); });
  }
  $("zoom-in").addEventListener("click", () => zoomBy(1.25));
  $("zoom-out").addEventListener("click", () => zoomBy(0.8));
  $("zoom-fit").addEventListener("click", () => { state.scale = null; applyZoom(); });
  $("zoom-actual").addEventListener("click", () => { state.scale = CSS_PX_PER_MM; applyZoom(); });
  $("scroller").addEventListener("wheel", (e) => { if (e.ctrlKey) { e.preventDefault(); zoomBy(e.deltaY < 0 ? 1.1 : 1 / 1.1); } }, { passive: false });
  $("earlier").addEventListener("click", () => moveWindow(-1));
  $("later").addEventListener("click", () => moveWindow(1));
  $("pdf").addEventListener("click", downloadPdf);
  window.addEventListener("resize", () => { if (state.scale === null) applyZoom(); });
  init();
})();
