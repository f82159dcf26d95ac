// Status page: polls /api/status every second and rebuilds the DOM.
// Everything shown comes from barcodes or configuration and is untrusted:
// text goes in with textContent only — never innerHTML with data.
"use strict";
(function () {
  const POLL_MS = 1000;
  const TIMEOUT_MS = 2500;

  const OUTCOMES = [
    ["sorted", "已分拣", "sorted"],
    ["no_read", "无读码", "no read"],
    ["multi_read", "多码", "multi read"],
    ["no_route", "无路由", "no route"],
    ["chute_unavailable", "格口不可用", "chute unavailable"],
    ["too_late", "决策超时", "too late"],
    ["gap_too_small", "间距过小", "gap too small"],
    ["lost", "丢失", "lost"],
    ["unconfirmed", "未确认", "unconfirmed"],
    ["fault", "故障", "fault"],
  ];
  const OUTCOME_ZH = Object.fromEntries(OUTCOMES.map((o) => [o[0], o[1]]));
  // the line state machine's states (controller/timing/line_state.py)
  const STATES = {
    booting: ["启动中", "BOOTING"],
    ready: ["就绪", "READY"],
    running: ["运行", "RUNNING"],
    paused: ["暂停", "PAUSED"],
    faulted: ["故障", "FAULTED"],
    estop: ["急停", "E-STOP"],
    stopping: ["停机中", "STOPPING"],
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function setText(id, text) {
    const e = $(id);
    if (e) e.textContent = text === undefined || text === null ? "—" : String(text);
  }

  function num(v, digits) {
    if (typeof v !== "number" || !isFinite(v)) return "—";
    return v.toLocaleString("en-US", { maximumFractionDigits: digits || 0, minimumFractionDigits: digits || 0 });
  }

  function pct(v) {
    return typeof v === "number" && isFinite(v) ? (v * 100).toFixed(1) + "%" : "—";
  }

  function clock(wall) {
    if (typeof wall !== "number" || !isFinite(wall)) return "—";
    const d = new Date(wall * 1000);
    const p = (n, w) => String(n).padStart(w || 2, "0");
    return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds()) + "." + p(d.getMilliseconds(), 3);
  }

  function duration(s) {
    if (typeof s !== "number" || !isFinite(s)) return "—";
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    return (d ? d + "d " : "") + String(h).padStart(2, "0") + ":" + String(m).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
  }

  // a class name from data: only the known words, never the raw text
  function safeClass(word, known) {
    return known.indexOf(word) >= 0 ? word : "unknown";
  }

  function badge(node, cls, zh, en) {
    node.className = "badge " + cls;
    node.replaceChildren(el("span", "zh", zh), el("span", "en", en));
  }

  function renderLine(st) {
    const line = st.line || {};
    setText("line-name", line.name || "分拣线 Sorting line");
    document.title = (line.name || "Sorting line") + " · 分拣线";
    const sub = [];
    sub.push(line.mode === "sim" ? "模拟 SIM" : "生产 RUN");
    if (typeof line.belt_speed_mps === "number") sub.push("带速 belt " + num(line.belt_speed_mps, 2) + " m/s");
    sub.push("运行时间 up " + duration(line.uptime_s));
    if (line.routing_version) sub.push("路由 routes " + line.routing_version);
    // what the journal and the tracker count that a supervisor must hear about
    const rec = st.records || {}, ctr = line.counters || {};
    sub.push("在途 in flight " + num(rec.in_flight || 0));
    if (ctr.unexpected_confirms) sub.push("意外到件 unexpected " + num(ctr.unexpected_confirms));
    const restartFaults = (rec.faulted_previous_run || 0) + (rec.faulted_timing_restart || 0);
    if (restartFaults) sub.push("重启补记 restart faults " + num(restartFaults));
    if (rec.id_collisions) sub.push("编号冲突 id collisions " + num(rec.id_collisions));
    // reads only one decoding attempt made: on the records, and sorting only where a camera allows it
    if (ctr.weak_reads) sub.push("弱读 weak reads " + num(ctr.weak_reads) +
      (ctr.weak_reads_held_back ? " (" + num(ctr.weak_reads_held_back) + " held back)" : ""));
    setText("line-sub", sub.join("  ·  "));

    const state = safeClass(line.state, Object.keys(STATES));
    const words = STATES[state] || ["未知", String(line.state || "UNKNOWN").toUpperCase()];
    badge($("state-badge"), "state-" + state, words[0], words[1]);
    // a test mode is shown with every state: never a plain green RUNNING while diverters fire a pattern
    $("test-badge").hidden = !line.test_mode;
    if (line.test_mode) $("test-badge").title = String(line.test_mode);
    const bar = $("state-bar");
    bar.hidden = state === "running" && !line.test_mode;
    bar.className = "state-bar state-" + state;
    setText("state-reason", (words[0] + " " + words[1]) + (line.state_reason ? " · " + line.state_reason : "") +
      (typeof line.state_since_wall === "number" ? " · " + clock(line.state_since_wall) : ""));
    $("reset-btn").hidden = !line.estop_latched;

    const plc = line.plc || {};
    const up = plc.connected === true;
    badge($("plc-badge"), up ? "plc-up" : "plc-down", up ? "PLC 已连接" : "PLC 断开",
      (up ? "LINK OK" : "NO LINK") + (plc.errors ? " · " + num(plc.errors) + " err" : ""));
    $("plc-badge").title = plc.url || "";
  }

  function renderKpis(st) {
    const counts = st.counts || {};
    const oc = counts.outcomes || {};
    const total = counts.total || 0;
    setText("k-throughput", num(st.throughput_pph));
    setText("k-readrate", pct(st.read_rate));
    const rr = $("k-readrate");
    rr.className = "k-value" + (typeof st.read_rate === "number" && st.read_rate < 0.95 ? " warn" : "");
    setText("k-sorted", num(oc.sorted || 0));
    setText("k-sorted-share", total ? pct((oc.sorted || 0) / total) + " of total" : "—");
    setText("k-total", num(total));
    setText("k-exceptions", "异常 exceptions " + num(total - (oc.sorted || 0)));
    const fe = st.fire_error_ms || {};
    setText("k-fire", num(fe.p50, 1) + " / " + num(fe.p99, 1));
    setText("k-fire-sub", "p50 / p99 ms · max " + num(fe.max, 1) + " · n " + num(fe.n || 0));
    const kf = $("k-fire");
    kf.className = "k-value" + (typeof fe.p99 === "number" && Math.abs(fe.p99) > 10 ? " warn" : "");
  }

  function renderOutcomes(st) {
    const counts = st.counts || {};
    const oc = counts.outcomes || {};
    const total = counts.total || 0;
    const rows = [];
    for (const [key, zh, en] of OUTCOMES) {
      const n = oc[key] || 0;
      const row = el("div", "oc-row oc-" + key + (n && key !== "sorted" ? " nonzero" : ""));
      row.appendChild(el("span", "oc-name", zh + " " + en));
      const bar = el("span", "oc-bar");
      const fill = el("span", "oc-fill");
      fill.style.width = (total ? Math.max(n ? 0.5 : 0, (100 * n) / total) : 0).toFixed(2) + "%";
      bar.appendChild(fill);
      row.appendChild(bar);
      row.appendChild(el("span", "oc-n", num(n)));
      row.appendChild(el("span", "oc-pct", total ? pct(n / total) : "—"));
      rows.push(row);
    }
    $("outcomes").replaceChildren(...rows);
  }

  function renderAlarms(st) {
    const alarms = Array.isArray(st.alarms) ? st.alarms : [];
    setText("alarm-count", alarms.length ? String(alarms.length) : "");
    $("alarm-count").className = "count" + (alarms.length ? " on" : "");
    if (!alarms.length) {
      $("alarms").replaceChildren(el("li", "none", "无报警 · No active alarms"));
      return;
    }
    $("alarms").replaceChildren(...alarms.map((a) => {
      const li = el("li", "alarm");
      li.appendChild(el("span", "a-since", clock(a.since_wall)));
      li.appendChild(el("span", "a-text", a.text));
      li.appendChild(el("span", "a-id", a.id));
      return li;
    }));
  }

  function renderChutes(st) {
    const chutes = Array.isArray(st.chutes) ? st.chutes : [];
    $("chutes").replaceChildren(...chutes.map((c) => {
      const disabled = c.enabled === false;
      const tile = el("div", "chute" + (c.full ? " full" : "") + (disabled ? " disabled" : ""));
      const head = el("div", "c-head");
      head.appendChild(el("span", "c-id", c.id));
      if (c.full) head.appendChild(el("span", "c-flag", "满 FULL"));
      if (disabled) head.appendChild(el("span", "c-flag", "停用 OFF"));
      tile.appendChild(head);
      tile.appendChild(el("div", "c-name", c.name || c.id));
      tile.appendChild(el("div", "c-count", num(c.count || 0)));
      tile.title = (c.name || "") + " · " + (c.id || "");
      return tile;
    }));
  }

  function renderCameras(st) {
    const cams = Array.isArray(st.cameras) ? st.cameras : [];
    if (!cams.length) {
      const tr = el("tr");
      const td = el("td", "none", "无相机 · No cameras");
      td.colSpan = 10;
      tr.appendChild(td);
      $("cameras").replaceChildren(tr);
      return;
    }
    $("cameras").replaceChildren(...cams.map((c) => {
      const alarm = typeof c.alarm === "string" && c.alarm ? c.alarm : "";
      // a camera that throws most frames away reads as badly as a dead one: never a green OK
      const dropping = c.alive && c.status === "dropping";
      const tr = el("tr", (c.alive && !dropping ? "" : "cam-dead") + (alarm ? " cam-alarm" : ""));
      tr.appendChild(el("td", "mono", c.name));
      const td = el("td");
      td.appendChild(el("span", "dot " + (c.alive && !dropping ? "up" : "down")));
      td.appendChild(document.createTextNode(!c.alive ? " 停止 DOWN" : dropping
        ? " 丢帧 DROPPING " + pct(c.drop_share) : " 正常 OK"));
      tr.appendChild(td);
      tr.appendChild(el("td", "num", num(c.fps, 1)));
      tr.appendChild(el("td", "num", num(c.frames)));
      tr.appendChild(el("td", "num" + (c.dropped ? " warn" : ""), num(c.dropped)));
      tr.appendChild(el("td", "num", num(c.decode_ms_p50, 1)));
      tr.appendChild(el("td", "num", num(c.decode_ms_p99, 1)));
      const reads = el("td", "num", num(c.reads));
      if (typeof c.unconfirmed_reads === "number") {
        // reads the decoder withheld (no second attempt agreed): climbing = labels at the camera's limit
        reads.title = "withheld 未确认: " + c.unconfirmed_reads + " unconfirmed, " + (c.conflicting_reads || 0) + " conflicting";
      }
      tr.appendChild(reads);
      const rr = el("td", "num" + (typeof c.read_rate === "number" && typeof c.read_rate_floor === "number" &&
        c.read_rate < c.read_rate_floor ? " warn" : ""), pct(c.read_rate));
      if (typeof c.read_rate_parcels === "number") rr.title = "last " + c.read_rate_parcels + " parcels";
      tr.appendChild(rr);
      const err = alarm || (typeof c.error === "string" ? c.error : "") || (typeof c.source_error === "string" ? c.source_error : "");
      tr.appendChild(el("td", "cam-alarm-text", err || "—"));
      return tr;
    }));
  }

  function renderRecent(st) {
    const recent = Array.isArray(st.recent) ? st.recent.slice(0, 20) : [];
    const names = {};
    for (const c of Array.isArray(st.chutes) ? st.chutes : []) names[c.id] = c.name;
    if (!recent.length) {
      const tr = el("tr");
      const td = el("td", "none", "暂无包裹 · No parcels yet");
      td.colSpan = 8;
      tr.appendChild(td);
      $("recent").replaceChildren(tr);
      return;
    }
    $("recent").replaceChildren(...recent.map((p) => {
      const outcome = safeClass(p.outcome, OUTCOMES.map((o) => o[0]));
      const tr = el("tr", "p-" + outcome);
      tr.appendChild(el("td", "num mono", p.parcel_id));
      tr.appendChild(el("td", "mono", clock(p.ended_wall)));
      tr.appendChild(el("td", "mono waybill", p.waybill || "—"));
      tr.appendChild(el("td", "", p.carrier || "—"));
      tr.appendChild(el("td", "", p.destination || "—"));
      const chute = p.actual_chute || p.chute;
      tr.appendChild(el("td", "mono", chute ? chute + (names[chute] ? " " + names[chute] : "") : "—"));
      const oc = el("td");
      oc.appendChild(el("span", "pill " + outcome, (OUTCOME_ZH[outcome] || "") + " " + (p.outcome || "?")));
      tr.appendChild(oc);
      tr.appendChild(el("td", "reason", p.reason || ""));
      return tr;
    }));
  }

  // no-read images: the newest few, thumbnails from GET /api/noreads/{file}; polled less often
  const NOREAD_MS = 5000;
  const NOREAD_N = 12;
  const NOREAD_FILE = /^[A-Za-z0-9_-]{1,200}\.jpg$/;
  let noreadKey = null;

  function renderNoreads(list) {
    const items = (Array.isArray(list) ? list : []).filter((n) => n && typeof n.file === "string" && NOREAD_FILE.test(n.file));
    setText("noread-count", items.length ? String(items.length) : "");
    const key = items.map((n) => n.file).join("|");
    if (key === noreadKey) return;  // unchanged: keep the loaded images
    noreadKey = key;
    if (!items.length) {
      $("noreads").replaceChildren(el("div", "none", "无未读码图像 · No no-read images"));
      return;
    }
    $("noreads").replaceChildren(...items.slice(0, NOREAD_N).map((n) => {
      const url = "/api/noreads/" + encodeURIComponent(n.file);
      const a = el("a", "noread");
      a.href = url;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      a.title = n.file;
      const img = el("img");
      img.src = url;
      img.loading = "lazy";
      img.alt = "no-read " + (n.parcel_id || n.file);
      a.appendChild(img);
      const cap = el("div", "nr-cap");
      cap.appendChild(el("span", "nr-id mono", (n.parcel_id ? "#" + n.parcel_id : n.file) + (n.camera ? " · " + n.camera : "")));
      cap.appendChild(el("span", "nr-time", typeof n.time === "string" ? n.time.replace("T", " ").slice(5) : "—"));
      a.appendChild(cap);
      return a;
    }));
  }

  async function pollNoreads() {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const r = await fetch("/api/noreads?limit=" + NOREAD_N, { cache: "no-store", signal: ctl.signal });
      if (r.ok) renderNoreads(await r.json());
      else if (r.status === 404) renderNoreads([]);
    } catch (e) {
      // the status poll shows lost contact; keep what is shown
    } finally {
      clearTimeout(timer);
      setTimeout(pollNoreads, NOREAD_MS);
    }
  }

  function render(st) {
    const parts = [renderLine, renderKpis, renderOutcomes, renderAlarms, renderChutes, renderCameras, renderRecent];
    for (const part of parts) {
      try { part(st); } catch (e) { console.error(part.name, e); }
    }
  }

  let lastOk = 0;
  async function poll() {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const r = await fetch("/api/status", { cache: "no-store", signal: ctl.signal });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const st = await r.json();
      render(st);
      lastOk = Date.now();
      $("stale").hidden = true;
      document.body.classList.remove("is-stale");
      setText("updated", "更新 updated " + clock(lastOk / 1000).slice(0, 8));
    } catch (e) {
      $("stale").hidden = false;
      document.body.classList.add("is-stale");
      if (!lastOk) badge($("state-badge"), "state-unknown", "无连接", "NO CONTACT");
    } finally {
      clearTimeout(timer);
      setTimeout(poll, POLL_MS);
    }
  }

  // the e-stop reset needs the control token; it is asked once and kept for this tab only
  async function resetLine() {
    let token = sessionStorage.getItem("sorter-token");
    if (!token) token = window.prompt("控制口令 Control token");
    if (!token) return;
    setText("reset-msg", "…");
    try {
      const r = await fetch("/api/line/reset", { method: "POST", headers: { Authorization: "Bearer " + token } });
      const body = await r.json().catch(() => ({}));
      if (r.status === 401 || r.status === 403) sessionStorage.removeItem("sorter-token");
      else sessionStorage.setItem("sorter-token", token);
      setText("reset-msg", (r.ok ? "✓ " : "✗ ") + String(body.message || body.detail || r.status));
    } catch (e) {
      setText("reset-msg", "✗ " + String(e));
    }
  }

  function start() {
    $("reset-btn").addEventListener("click", resetLine);
    poll();
    pollNoreads();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
