// The live page: polls /api/v1/status every 2 s; fetches the snapshot only
// when its number changed, and only the events newer than the last seen.
"use strict";
const $ = (id) => document.getElementById(id);
const token = localStorage.getItem("pvtherm-token") || "";
const headers = token ? { Authorization: "Bearer " + token } : {};
let snapshotSeq = null, lastEvent = 0;

async function blobUrl(path) {
  const r = await fetch(path, { headers });
  return r.ok ? URL.createObjectURL(await r.blob()) : null;
}

function health(s) {
  const st = s.stats || {}, b = st.broker || {};
  const items = [
    ["camera", s.camera ? s.camera.state + (s.camera.reason ? " (" + s.camera.reason + ")" : "") : (s.mode === "serve" ? "none (pvtherm serve)" : "unknown")],
    ["frames per second", st.fps !== undefined ? st.fps.toFixed(1) : "-"],
    ["frames processed", st.frames_processed ?? "-"],
    ["broker", b.link !== undefined ? (b.connected ? "connected" : "not connected") + ": " + b.link : "-"],
    ["outbox depth", b.outbox_depth ?? "-"],
    ["model", s.model.name + " " + s.model.version],
    ["pvtherm", s.version],
  ];
  const dl = $("health"); dl.textContent = "";
  for (const [k, v] of items) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    dl.append(dt, dd);
  }
}

async function poll() {
  try {
    const r = await fetch("/api/v1/status", { headers });
    if (!r.ok) throw new Error((await r.json()).error);
    const s = await r.json();
    $("error").hidden = true;
    health(s);
    if (s.snapshot_seq !== null && s.snapshot_seq !== snapshotSeq) {
      const url = await blobUrl("/api/v1/snapshot.jpg");
      if (url) { const img = $("snapshot"); if (img.src) URL.revokeObjectURL(img.src); img.src = url; snapshotSeq = s.snapshot_seq; }
    }
    if (s.last_event_seq !== null && s.last_event_seq > lastEvent) {
      const e = await (await fetch("/api/v1/events?since=" + lastEvent, { headers })).json();
      for (const item of e.events) {
        lastEvent = Math.max(lastEvent, item.seq);
        const ev = item.event, li = document.createElement("li");
        if (item.thumbnail) { const img = document.createElement("img"); img.alt = ""; img.src = await blobUrl(item.thumbnail); li.append(img); }
        const t = document.createElement("span");
        t.textContent = (ev.type || "") + " " + (ev.anomaly_class || "") + " " + (ev.defect_score !== undefined ? ev.defect_score.toFixed(2) : "") + " " + (ev.last_seen || "");
        li.append(t);
        $("events").prepend(li);
      }
      while ($("events").children.length > 50) $("events").lastChild.remove();
    }
  } catch (err) {
    $("error").textContent = "cannot reach pvtherm: " + err.message; $("error").hidden = false;
  }
  setTimeout(poll, 2000);
}
poll();
