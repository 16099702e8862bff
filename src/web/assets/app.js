// The upload page: sends the dropped images to POST /api/v1/detect?format=overview
// and draws the answer. No libraries; works offline.
"use strict";
const $ = (id) => document.getElementById(id);
let token = localStorage.getItem("pvtherm-token") || "";
let rows = [];
let sortKey = null, sortUp = false;

function authHeaders() { return token ? { Authorization: "Bearer " + token } : {}; }

async function checkStatus() {
  const r = await fetch("/api/v1/status", { headers: authHeaders() });
  $("token-box").hidden = r.status !== 401;
}

$("token-save").onclick = () => {
  token = $("token").value.trim();
  localStorage.setItem("pvtherm-token", token);
  checkStatus();
};

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  upload(e.dataTransfer.files);
});
$("files").addEventListener("change", (e) => upload(e.target.files));

function showError(text) { $("error").textContent = text; $("error").hidden = !text; }

function upload(files) {
  if (!files || !files.length) return;
  showError("");
  const form = new FormData();
  for (const f of files) form.append("image", f, f.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/v1/detect?format=overview");
  for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
  xhr.responseType = "json";
  $("progress-box").hidden = false;
  $("progress").value = 0;
  $("progress-text").textContent = "uploading " + files.length + " image(s)";
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) $("progress").value = (100 * e.loaded) / e.total;
  };
  xhr.upload.onload = () => {
    $("progress").removeAttribute("value");
    $("progress-text").textContent = "analysing " + files.length + " image(s)";
  };
  xhr.onload = () => {
    $("progress-box").hidden = true;
    if (xhr.status === 200) return show(xhr.response);
    if (xhr.status === 401) $("token-box").hidden = false;
    showError((xhr.response && xhr.response.error) || "upload failed: HTTP " + xhr.status);
  };
  xhr.onerror = () => { $("progress-box").hidden = true; showError("the server cannot be reached"); };
  xhr.send(form);
}

function fmt(v, digits) { return v === null || v === undefined ? "" : Number(v).toFixed(digits); }

function download(name, text, type) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = name; a.textContent = name;
  return a;
}

function show(o) {
  const report = o.report;
  const s = report.summary;
  $("overview").hidden = false;
  $("summary").textContent = s.images + " image(s), " + s.modules + " modules, " +
    s.defective_modules + " defective, " + s.grouped_defects + " distinct defect(s)" +
    (o.errors.length ? ". Not analysed: " + o.errors.join("; ") : "");
  const dl = $("downloads"); dl.textContent = "Download: ";
  dl.append(download("report.json", JSON.stringify(report, null, 2), "application/json"),
            download("modules.csv", o.csv, "text/csv"));
  if (JSON.parse(o.geojson).features.length) {
    dl.append(download("defects.geojson", o.geojson, "application/geo+json"),
              download("defects.kml", o.kml, "application/vnd.google-earth.kml+xml"));
  } else {
    dl.append("(no GeoJSON/KML: these images carry no position and no fixed position is configured)");
  }
  const box = $("images"); box.textContent = "";
  rows = [];
  report.images.forEach((img, i) => {
    box.append(figure(img, o.images[i]));
    img.modules.forEach((m) => rows.push({ img, m, image: img.frame.origin, index: m.index,
      defective: m.defective, anomaly_class: m.anomaly_class, defect_score: m.defect_score,
      score: m.score, t_max: m.temperature ? m.temperature.max : null, delta_t: m.delta_t,
      severity: m.severity ? m.severity.class : null }));
  });
  sortKey = null; drawTable();
  const ul = $("defects"); ul.textContent = "";
  for (const d of report.defects) {
    const li = document.createElement("li");
    li.textContent = d.anomaly_class + ", defect score " + fmt(d.defect_score, 2) +
      (d.delta_t !== null ? ", \u0394T " + fmt(d.delta_t, 1) : "") +
      (d.severity ? ", severity " + d.severity.class + " (" + d.severity.label + ")" : "") +
      ", seen in " + d.frames_seen + " image(s)";
    ul.append(li);
  }
  $("sheet").hidden = !o.contact_sheet;
  if (o.contact_sheet) $("sheet").src = o.contact_sheet;
}

function figure(img, picture) {
  const fig = document.createElement("div"); fig.className = "figure";
  const zoom = document.createElement("div"); zoom.className = "zoom";
  const stage = document.createElement("div"); stage.className = "stage";
  let scale = 1;
  for (const [label, f] of [["+", 1.5], ["\u2212", 1 / 1.5], ["1:1", 0]]) {
    const b = document.createElement("button"); b.type = "button"; b.textContent = label;
    b.onclick = () => { scale = f ? Math.min(8, Math.max(1, scale * f)) : 1; stage.style.width = 100 * scale + "%"; };
    zoom.append(b);
  }
  const pic = document.createElement("img"); pic.src = picture.annotated; pic.alt = picture.name;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 " + img.frame.width + " " + img.frame.height);
  svg.setAttribute("preserveAspectRatio", "none");
  for (const m of img.modules) {
    const p = document.createElementNS("http://www.w3.org/2000/svg", "polygon");
    p.setAttribute("points", m.quad.map((c) => c.x + "," + c.y).join(" "));
    p.onclick = () => { svg.querySelectorAll(".sel").forEach((q) => q.classList.remove("sel")); p.classList.add("sel"); detail(img, m); };
    svg.append(p);
  }
  stage.append(pic, svg);
  const cap = document.createElement("div"); cap.className = "caption";
  cap.textContent = picture.name + ": " + img.module_count + " modules, " + img.defect_count + " defective (click a module)";
  fig.append(zoom, stage, cap);
  return fig;
}

function detail(img, m) {
  // Relative frames carry raw values, not degrees: say so next to each number.
  const t = m.temperature, u = img.unit === "celsius" ? " \u00b0C" : " (relative)";
  const lines = [
    img.frame.origin + ", module #" + m.index + (m.defective ? ": DEFECTIVE" : ": healthy"),
    "score " + fmt(m.score, 2) + ", defect score " + fmt(m.defect_score, 2) + ", class " + m.anomaly_class,
    t ? "temperature min " + fmt(t.min, 1) + u + ", mean " + fmt(t.mean, 1) + u + ", max " + fmt(t.max, 1) + u : "no temperature",
    "\u0394T " + (m.delta_t === null || m.delta_t === undefined ? "unknown" : fmt(m.delta_t, 1) + u),
    "severity " + (m.severity ? m.severity.class + " (" + m.severity.label + ")" : "unknown"),
  ];
  const d = $("detail"); d.hidden = false; d.textContent = "";
  for (const l of lines) { const p = document.createElement("div"); p.textContent = l; d.append(p); }
}

function drawTable() {
  const sorted = rows.slice();
  if (sortKey) {
    sorted.sort((a, b) => {
      const x = a[sortKey], y = b[sortKey];
      const c = x === y ? 0 : x === null ? 1 : y === null ? -1 : x < y ? -1 : 1;
      return sortUp ? c : -c;
    });
  } else {
    // Defective first, then the surest defect first.
    sorted.sort((a, b) => (b.defective - a.defective) || (b.defect_score - a.defect_score));
  }
  const body = document.querySelector("#modules tbody"); body.textContent = "";
  for (const r of sorted) {
    const tr = document.createElement("tr");
    if (r.defective) tr.className = "defective";
    const cells = [r.defective ? "defective" : "ok", r.image, r.index, r.anomaly_class,
      fmt(r.defect_score, 2), fmt(r.score, 2), fmt(r.t_max, 1), fmt(r.delta_t, 1), r.severity ?? ""];
    for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
    tr.onclick = () => detail(r.img, r.m);
    body.append(tr);
  }
}

document.querySelectorAll("#modules th").forEach((th) => {
  th.onclick = () => {
    const k = th.dataset.key;
    sortUp = sortKey === k ? !sortUp : false;
    sortKey = k; drawTable();
  };
});

checkStatus();
