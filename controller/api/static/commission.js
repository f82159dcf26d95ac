// The technician's camera set-up page. The DOM is built with textContent only (barcode texts are
// untrusted) and the page runs under a CSP without inline script.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const PERIOD_MS = 700;
  let camera = null, busy = false, timer = null;

  function text(el, v) { el.textContent = v === null || v === undefined ? "—" : String(v); }
  function row(cells, cls) {
    const tr = document.createElement("tr");
    cells.forEach((c, i) => { const td = document.createElement("td"); td.textContent = c === null || c === undefined ? "—" : String(c);
      if (cls && cls[i]) td.className = cls[i]; tr.appendChild(td); });
    return tr;
  }
  function headers() {
    const h = { "Content-Type": "application/json" };
    const t = $("token").value || sessionStorage.getItem("sorter-token") || "";
    if (t) { h.Authorization = "Bearer " + t; sessionStorage.setItem("sorter-token", t); }
    return h;
  }
  async function post(path, body) {
    const r = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body || {}) });
    let data = {};
    try { data = await r.json(); } catch (e) { data = {}; }
    text($("result"), r.ok ? (data.file || data.note || "done") : ("refused: " + (data.detail || r.status)));
    $("result").className = r.ok ? "ok" : "bad";
    return r.ok ? data : null;
  }

  function histogram(h) {
    const c = $("histogram"), g = c.getContext("2d");
    g.clearRect(0, 0, c.width, c.height);
    if (!h || !h.length) return;
    const max = Math.max(...h, 1e-9), w = c.width / h.length;
    h.forEach((v, i) => { g.fillStyle = i === h.length - 1 ? "#c00" : "#356";
      const bh = Math.round((v / max) * (c.height - 2)); g.fillRect(i * w, c.height - bh, w - 1, bh); });
  }

  function show(m) {
    text($("focus"), m.focus); text($("focus-best"), m.focus_best);
    $("focus-meter").value = m.focus_of_best || 0;
    text($("saturated"), (100 * (m.saturated_share || 0)).toFixed(2) + " %");
    $("saturated").className = m.saturated_share > 0.02 ? "bad" : "";
    text($("mean"), m.mean); text($("fps"), m.fps); text($("mmpx"), m.mm_per_px);
    const b = m.blur || {};
    text($("blur"), b.blur_modules === null || b.blur_modules === undefined ? "exposure ms not given"
      : b.blur_modules + " module (" + b.exposure_ms + " ms, " + b.module_mm + " mm modules, " + b.belt_speed_mps + " m/s)");
    $("blur").className = b.blur_modules >= 1 ? "bad" : "";
    text($("max-exposure"), b.max_exposure_ms + " ms");
    histogram(m.histogram);
    const adv = $("advice"); adv.replaceChildren();
    (b.advice || []).forEach((a) => { const li = document.createElement("li"); li.textContent = a; adv.appendChild(li); });
    const codes = $("codes"); codes.replaceChildren();
    (m.codes || []).forEach((c) => codes.appendChild(row([c.symbology, c.text, c.ppm], [null, "text", c.ppm !== null && c.ppm < 2 ? "bad" : null])));
    if (!(m.codes || []).length) codes.appendChild(row(["no code in view", "", ""]));
    const acc = $("accepted"); acc.replaceChildren();
    Object.entries(m.properties || {}).forEach(([k, v]) => {
      if (k.startsWith("_")) return;
      acc.appendChild(row([k, v.asked, v.got, v.accepted ? "yes" : (v.why || "no")], [null, null, null, v.accepted ? "ok" : "bad"]));
    });
    text($("frame-note"), (m.frame_size || []).join(" x ") + " px, " + (m.codes || []).length + " codes");
  }

  async function tick() {
    if (!camera || busy) return;
    busy = true;
    try {
      const r = await fetch("/api/commission/" + encodeURIComponent(camera) + "/view", { cache: "no-store" });
      if (r.ok) {
        show(await r.json());
        const img = new Image();
        img.onload = () => { $("frame").src = img.src; };
        img.src = "/api/commission/" + encodeURIComponent(camera) + "/view.jpg?t=" + Date.now();
      } else {
        text($("frame-note"), r.status === 404 ? "no frame yet from this camera" : "error " + r.status);
      }
    } catch (e) {
      text($("frame-note"), "no connection");
    } finally { busy = false; }
  }

  async function start() {
    $("token").value = sessionStorage.getItem("sorter-token") || "";
    const r = await fetch("/api/commission/cameras", { cache: "no-store" });
    const cams = r.ok ? await r.json() : [];
    const sel = $("camera");
    cams.forEach((c) => { const o = document.createElement("option"); o.value = c.name; o.textContent = c.name + " (" + c.source + ")"; sel.appendChild(o); });
    const want = new URLSearchParams(location.search).get("camera");
    if (want && cams.some((c) => c.name === want)) sel.value = want;
    camera = sel.value || null;
    const st = cams.find((c) => c.name === camera);
    text($("cam-state"), st ? (st.state || "?") + (st.calibrated ? ", calibrated" : ", not calibrated") : "no cameras");
    sel.addEventListener("change", () => { camera = sel.value; tick(); });
    $("settings").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = {};
      new FormData($("settings")).forEach((v, k) => { if (v !== "") body[k] = Number(v); });
      await post("/api/commission/" + encodeURIComponent(camera) + "/properties", body);
    });
    $("roi").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = {};
      new FormData($("roi")).forEach((v, k) => { body[k] = Number(v); });
      await post("/api/commission/" + encodeURIComponent(camera) + "/roi", body);
    });
    $("snapshot").addEventListener("click", () => post("/api/commission/" + encodeURIComponent(camera) + "/snapshot"));
    $("focus-reset").addEventListener("click", () => post("/api/commission/" + encodeURIComponent(camera) + "/focus/reset"));
    await tick();
    timer = setInterval(tick, PERIOD_MS);
  }
  document.addEventListener("DOMContentLoaded", start);
})();
