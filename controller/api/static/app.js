// Status page: polls /api/status every second and rebuilds the DOM; a logged-in supervisor (or
// technician) controls the line from it. Text goes in with textContent only (see common.js).
"use strict";
(function () {
  const S = window.Sorter;
  const { $, el, T, num, pct, clock, dateTime, OUTCOMES, safeClass } = S;
  const POLL_MS = 1000;
  const TIMEOUT_MS = 2500;
  const STATES = ["booting", "ready", "running", "paused", "faulted", "estop", "stopping"];

  function setText(id, text) {
    const e = $(id);
    if (e) e.textContent = text === undefined || text === null ? "—" : String(text);
  }

  // the state code stays beside the Chinese word: the wall screen and the technician share it
  function badge(node, cls, word, code) {
    node.className = "badge " + cls;
    node.replaceChildren(el("span", "zh", word), el("span", "en", code));
  }

  function msg(text) {
    setText("control-msg", text);
  }

  async function act(url, confirmText, body) {
    if (confirmText && !window.confirm(confirmText)) return null;
    msg("…");
    const res = await S.post(url, body);
    msg(S.detail(res));
    if (res.status === 401) { await S.loadMe(); S.renderUser(); }
    pollAudit();
    return res;
  }

  let lastStatus = null;

  function renderLine(st) {
    const line = st.line || {};
    setText("line-name", line.name || T("title"));
    document.title = (line.name || T("title")) + " · " + T("title");
    const sub = [];
    sub.push(line.mode === "sim" ? T("sim") : T("run"));
    if (typeof line.belt_speed_mps === "number") sub.push(T("belt") + " " + num(line.belt_speed_mps, 2) + " m/s");
    if (typeof line.uptime_s === "number") {
      const s = Math.floor(line.uptime_s), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
      sub.push(T("uptime") + " " + h + ":" + String(m).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0"));
    }
    if (line.routing_version) sub.push(T("routes") + " " + line.routing_version);
    const rec = st.records || {};
    sub.push(T("in_flight") + " " + num(rec.in_flight || 0));
    setText("line-sub", sub.join("  ·  "));

    const state = safeClass(line.state, STATES);
    const code = state === "unknown" ? String(line.state || "UNKNOWN").toUpperCase() : state.toUpperCase().replace("ESTOP", "E-STOP");
    badge($("state-badge"), "state-" + state, T("state." + state), code);
    $("test-badge").hidden = !line.test_mode;
    if (line.test_mode) $("test-badge").title = String(line.test_mode);
    const bar = $("state-bar");
    bar.hidden = state === "running" && !line.test_mode;
    bar.className = "state-bar state-" + state;
    setText("state-reason", T("state." + state) + (line.state_reason ? " · " + line.state_reason : "") +
      (typeof line.state_since_wall === "number" ? " · " + clock(line.state_since_wall) : ""));
    $("reset-btn").hidden = !line.estop_latched;

    const plc = line.plc || {};
    const up = plc.connected === true;
    badge($("plc-badge"), up ? "plc-up" : "plc-down", up ? T("plc.up") : T("plc.down"),
      (up ? "LINK OK" : "NO LINK") + (plc.errors ? " · " + num(plc.errors) + " err" : ""));
    $("plc-badge").title = plc.url || "";
  }

  function renderKpis(st) {
    const counts = st.counts || {};
    const oc = counts.outcomes || {};
    const total = counts.total || 0;
    setText("k-throughput", num(st.throughput_pph));
    setText("k-readrate", pct(st.read_rate));
    $("k-readrate").className = "k-value" + (typeof st.read_rate === "number" && st.read_rate < 0.95 ? " warn" : "");
    setText("k-sorted", num(oc.sorted || 0));
    setText("k-sorted-share", total ? pct((oc.sorted || 0) / total) + " " + T("of_total") : "—");
    setText("k-total", num(total));
    setText("k-exceptions", T("exceptions") + " " + num(total - (oc.sorted || 0)));
    const fe = st.fire_error_ms || {};
    setText("k-fire", num(fe.p50, 1) + " / " + num(fe.p99, 1));
    setText("k-fire-sub", "p50 / p99 ms · max " + num(fe.max, 1) + " · n " + num(fe.n || 0));
    $("k-fire").className = "k-value" + (typeof fe.p99 === "number" && Math.abs(fe.p99) > 10 ? " warn" : "");
  }

  function renderOutcomes(st) {
    const counts = st.counts || {};
    const oc = counts.outcomes || {};
    const total = counts.total || 0;
    $("outcomes").replaceChildren(...OUTCOMES.map((key) => {
      const n = oc[key] || 0;
      const row = el("div", "oc-row oc-" + key + (n && key !== "sorted" ? " nonzero" : ""));
      row.dataset.outcome = key;
      row.appendChild(el("span", "oc-name", T("outcome." + key)));
      const bar = el("span", "oc-bar");
      const fill = el("span", "oc-fill");
      fill.style.width = (total ? Math.max(n ? 0.5 : 0, (100 * n) / total) : 0).toFixed(2) + "%";
      bar.appendChild(fill);
      row.appendChild(bar);
      row.appendChild(el("span", "oc-n", num(n)));
      row.appendChild(el("span", "oc-pct", total ? pct(n / total) : "—"));
      return row;
    }));
  }

  // an alarm's words: the code in the page's language (with its parameters), the server's detail.
  // `history`: a row of /api/alarms/history (the same words, when it cleared, nothing to press)
  function alarmItem(a, shelved, history) {
    const sev = safeClass(a.severity, ["critical", "warning"]);
    const li = el("li", "alarm sev-" + sev + (a.acked_by ? " acked" : ""));
    li.dataset.alarm = String(a.id);
    li.appendChild(el("span", "a-since", clock(a.first_wall || a.since_wall)));
    const body = el("div", "a-body");
    // the code in the page's language; an alarm without one (an older service) shows its text only
    const title = a.code ? I18N.t("alarm." + a.code, a.params || {}) || a.code : null;
    if (title) body.appendChild(el("div", "a-title", title + (sev !== "unknown" ? " · " + T("severity." + sev) : "")));
    // the detail in the page's language from its key and parameters; the server's English text
    // when there is no key (or no word for it yet), and on hover for whoever reads the log
    const said = a.detail ? I18N.t("alarmtext." + a.detail, a.params || {}) : null;
    const text = el("div", "a-text", said || a.text);
    if (said && said !== a.text) text.title = String(a.text || "");
    body.appendChild(text);
    const meta = [T("count") + " " + num(a.count || 1), T("last") + " " + clock(a.last_wall)];
    if (a.acked_by) meta.push(T("acked_by") + " " + a.acked_by + " " + clock(a.acked_wall));
    if (shelved && a.shelved_until) meta.push(T("alarms.shelved") + " → " + clock(a.shelved_until) + " · " + (a.shelved_by || ""));
    if (history && a.cleared_wall) meta.push(T("cleared") + " " + S.dateTime(a.cleared_wall));
    body.appendChild(el("div", "a-meta", meta.join(" · ")));
    li.appendChild(body);
    if (history) return li;
    const tools = el("div", "a-tools");
    if (!a.acked_by) {
      const b = el("button", "needs-supervisor ack-btn", T("ack"));
      b.type = "button";
      b.disabled = !S.may("supervisor");
      b.addEventListener("click", () => act("/api/alarms/" + encodeURIComponent(a.id) + "/ack"));
      tools.appendChild(b);
    }
    if (!shelved) {
      const b = el("button", "needs-supervisor", T("shelve"));
      b.type = "button";
      b.disabled = !S.may("supervisor");
      b.addEventListener("click", () => act("/api/alarms/" + encodeURIComponent(a.id) + "/shelve?minutes=60"));
      tools.appendChild(b);
    }
    li.appendChild(tools);
    return li;
  }

  let alarmsSeen = null;
  function renderAlarms(st) {
    const all = Array.isArray(st.alarms) ? st.alarms : [];
    const active = all.filter((a) => !a.shelved), shelved = all.filter((a) => a.shelved);
    setText("alarm-count", active.length ? String(active.length) : "");
    $("alarm-count").className = "count" + (active.length ? " on" : "");
    const ids = all.map((a) => a.id + ":" + (a.count || 1)).join("|");
    if (alarmsSeen !== null && all.some((a) => alarmsSeen.indexOf(a.id + ":" + (a.count || 1)) < 0)) beep();
    alarmsSeen = ids;
    if (!active.length) $("alarms").replaceChildren(el("li", "none", T("alarms.none")));
    else $("alarms").replaceChildren(...active.map((a) => alarmItem(a, false)));
    $("shelved-box").hidden = !shelved.length;
    setText("shelved-count", shelved.length ? String(shelved.length) : "");
    $("shelved").replaceChildren(...shelved.map((a) => alarmItem(a, true)));
  }

  // a short tone for a new alarm (browsers allow sound only after the page was clicked once)
  let audio = null;
  function beep() {
    try {
      if (!audio) return;
      const o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = 880;
      g.gain.value = 0.1;
      o.connect(g).connect(audio.destination);
      o.start();
      o.stop(audio.currentTime + 0.25);
    } catch (e) { /* no sound: the list shows it */ }
  }

  function chuteButton(label, cls, fn) {
    const b = el("button", "needs-supervisor " + cls, label);
    b.type = "button";
    b.disabled = !S.may("supervisor");
    b.addEventListener("click", fn);
    return b;
  }

  function renderChutes(st) {
    const chutes = Array.isArray(st.chutes) ? st.chutes : [];
    $("chutes").replaceChildren(...chutes.map((c) => {
      const disabled = c.enabled === false;
      const tile = el("div", "chute" + (c.full ? " full" : "") + (disabled ? " disabled" : ""));
      tile.dataset.chute = String(c.id);
      const head = el("div", "c-head");
      head.appendChild(el("span", "c-id", c.id));
      if (c.full) head.appendChild(el("span", "c-flag", T("full")));
      if (disabled) head.appendChild(el("span", "c-flag", T("disabled")));
      tile.appendChild(head);
      tile.appendChild(el("div", "c-name", c.name || c.id));
      tile.appendChild(el("div", "c-count", num(c.count || 0)));
      if (typeof c.since_emptied === "number") tile.appendChild(el("div", "c-since", T("since_emptied") + " " + num(c.since_emptied)));
      const tools = el("div", "c-tools");
      const id = encodeURIComponent(String(c.id));
      if (disabled) tools.appendChild(chuteButton(T("enable"), "c-enable", () => act("/api/chutes/" + id + "/enable")));
      else tools.appendChild(chuteButton(T("disable"), "c-disable",
        () => act("/api/chutes/" + id + "/disable", T("confirm.disable", { chute: c.id + " " + (c.name || "") }))));
      tools.appendChild(chuteButton(T("emptied"), "c-emptied", () => act("/api/chutes/" + id + "/emptied")));
      tile.appendChild(tools);
      tile.title = (c.name || "") + " · " + (c.id || "");
      return tile;
    }));
    const sel = $("test-chute");
    if (sel && sel.options.length !== chutes.length) {
      sel.replaceChildren(...chutes.map((c) => { const o = el("option", "", c.id + " " + (c.name || "")); o.value = c.id; return o; }));
    }
  }

  function renderCameras(st) {
    const cams = Array.isArray(st.cameras) ? st.cameras : [];
    if (!cams.length) {
      const tr = el("tr");
      const td = el("td", "none", T("none.cameras"));
      td.colSpan = 10;
      tr.appendChild(td);
      $("cameras").replaceChildren(tr);
      return;
    }
    $("cameras").replaceChildren(...cams.map((c) => {
      const alarm = typeof c.alarm === "string" && c.alarm ? c.alarm : "";
      const dropping = c.alive && c.status === "dropping";
      const tr = el("tr", (c.alive && !dropping ? "" : "cam-dead") + (alarm ? " cam-alarm" : ""));
      // the name opens the camera's last frame with the codes it read outlined
      const nameTd = el("td", "mono");
      const link = el("a", "cam-last", c.name);
      link.href = "/api/cameras/" + encodeURIComponent(c.name) + "/last.jpg";
      link.target = "_blank";
      link.rel = "noopener";
      link.title = T("cam.last");
      nameTd.appendChild(link);
      tr.appendChild(nameTd);
      const td = el("td");
      td.appendChild(el("span", "dot " + (c.alive && !dropping ? "up" : "down")));
      td.appendChild(document.createTextNode(" " + (!c.alive ? T("cam.down") : dropping ? T("cam.dropping") + " " + pct(c.drop_share) : T("cam.ok"))));
      tr.appendChild(td);
      tr.appendChild(el("td", "num", num(c.fps, 1)));
      tr.appendChild(el("td", "num", num(c.frames)));
      tr.appendChild(el("td", "num" + (c.dropped ? " warn" : ""), num(c.dropped)));
      tr.appendChild(el("td", "num", num(c.decode_ms_p50, 1)));
      tr.appendChild(el("td", "num", num(c.decode_ms_p99, 1)));
      tr.appendChild(el("td", "num", num(c.reads)));
      tr.appendChild(el("td", "num", pct(c.read_rate)));
      const err = alarm || (typeof c.error === "string" ? c.error : "") || (typeof c.source_error === "string" ? c.source_error : "");
      tr.appendChild(el("td", "cam-alarm-text", err || "—"));
      return tr;
    }));
  }

  function parcelRow(p, names) {
    const outcome = safeClass(p.outcome, OUTCOMES);
    const tr = el("tr", "p-" + outcome);
    tr.dataset.parcel = String(p.run_id) + "/" + String(p.parcel_id);
    const id = el("td", "num mono");
    id.appendChild(S.parcelLink(p, String(p.parcel_id)));
    tr.appendChild(id);
    tr.appendChild(el("td", "mono", clock(p.ended_wall)));
    const wb = el("td", "mono waybill", p.waybill || (p.keyed_waybill ? p.keyed_waybill + " ✎" : "—"));
    tr.appendChild(wb);
    tr.appendChild(el("td", "", p.carrier || p.keyed_carrier || "—"));
    tr.appendChild(el("td", "", p.destination || p.keyed_destination || "—"));
    const chute = p.actual_chute || p.chute;
    tr.appendChild(el("td", "mono", chute ? chute + (names[chute] ? " " + names[chute] : "") : "—"));
    const oc = el("td");
    oc.appendChild(S.outcomePill(p.outcome));
    if (p.keyed_wall) oc.appendChild(el("span", "pill keyed", T("keyed") + " → " + (p.keyed_chute || "—")));
    tr.appendChild(oc);
    tr.appendChild(el("td", "reason", p.reason || ""));
    return tr;
  }

  function chuteNames(st) {
    const names = {};
    for (const c of Array.isArray(st && st.chutes) ? st.chutes : []) names[c.id] = c.name;
    return names;
  }

  function fillTable(id, rows, emptyText, names) {
    if (!rows.length) {
      const tr = el("tr");
      const td = el("td", "none", emptyText);
      td.colSpan = 8;
      tr.appendChild(td);
      $(id).replaceChildren(tr);
      return;
    }
    $(id).replaceChildren(...rows.map((p) => parcelRow(p, names)));
  }

  function renderRecent(st) {
    const recent = Array.isArray(st.recent) ? st.recent.slice(0, 20) : [];
    fillTable("recent", recent, T("none.parcels"), chuteNames(st));
  }

  // ------------------------------------------------------------------ no-read images (as before)
  const NOREAD_MS = 5000;
  const NOREAD_N = 12;
  const NOREAD_FILE = /^[A-Za-z0-9_-]{1,200}\.jpg$/;
  let noreadKey = null;

  function renderNoreads(list) {
    const items = (Array.isArray(list) ? list : []).filter((n) => n && typeof n.file === "string" && NOREAD_FILE.test(n.file));
    setText("noread-count", items.length ? String(items.length) : "");
    const key = items.map((n) => n.file).join("|");
    if (key === noreadKey) return;
    noreadKey = key;
    if (!items.length) {
      $("noreads").replaceChildren(el("div", "none", T("none.noreads")));
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
    try {
      renderNoreads(await S.getJson("/api/noreads?limit=" + NOREAD_N, TIMEOUT_MS));
    } catch (e) { /* the status poll shows lost contact */ }
    setTimeout(pollNoreads, NOREAD_MS);
  }

  // ------------------------------------------------------------------ review and keying
  let reviewKey = null;
  function renderReview(rows) {
    rows = Array.isArray(rows) ? rows : [];
    setText("review-count", rows.length ? String(rows.length) : "");
    const key = rows.map((r) => r.run_id + "/" + r.parcel_id + ":" + (r.frames || []).length).join("|") + S.may("supervisor");
    if (key === reviewKey) return;   // unchanged: keep what the supervisor is typing
    const active = document.activeElement;
    if (active && active.classList && active.classList.contains("key-input") && active.value) return;
    reviewKey = key;
    if (!rows.length) {
      $("review").replaceChildren(el("div", "none", T("review.none")));
      return;
    }
    // a card stays while its parcel is listed: what is typed in it and its answer are kept
    const kept = new Map();
    for (const c of $("review").querySelectorAll(".review-item")) kept.set(c.dataset.parcel, c);
    $("review").replaceChildren(...rows.map((r) => {
      const old = kept.get(String(r.run_id) + "/" + String(r.parcel_id));
      if (old && old.dataset.supervisor === String(S.may("supervisor"))) return old;
      const card = el("div", "review-item");
      card.dataset.supervisor = String(S.may("supervisor"));
      card.dataset.parcel = String(r.run_id) + "/" + String(r.parcel_id);
      const head = el("div", "ri-head");
      head.appendChild(S.parcelLink(r, "#" + r.parcel_id));
      head.appendChild(el("span", "mono", clock(r.ended_wall)));
      head.appendChild(S.outcomePill(r.outcome));
      card.appendChild(head);
      if (r.reason) card.appendChild(el("div", "reason", r.reason));
      const frames = el("div", "ri-frames");
      const list = Array.isArray(r.frames) ? r.frames : [];
      for (const f of list) {
        if (typeof f.file !== "string" || !NOREAD_FILE.test(f.file)) continue;
        const a = el("a", "ri-frame");
        a.href = "/api/noreads/" + encodeURIComponent(f.file);
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        const img = el("img");
        img.src = a.href;
        img.loading = "lazy";
        img.alt = String(f.camera || "");
        a.appendChild(img);
        a.appendChild(el("span", "nr-cap", String(f.camera || "")));
        frames.appendChild(a);
      }
      if (!frames.childNodes.length) frames.appendChild(el("span", "muted", T("no_frames")));
      card.appendChild(frames);
      if (Array.isArray(r.reads) && r.reads.length) {
        card.appendChild(el("div", "mono reason", r.reads.map((x) => (x.camera || "?") + ": " + (x.text || "")).join(" · ")));
      }
      const form = el("form", "key-form");
      const input = el("input", "key-input mono");
      input.name = "waybill";
      input.maxLength = 64;
      input.autocomplete = "off";
      input.placeholder = T("key.placeholder");
      input.disabled = !S.may("supervisor");
      const btn = el("button", "needs-supervisor", T("key"));
      btn.type = "submit";
      btn.disabled = !S.may("supervisor");
      const out = el("span", "msg");
      form.append(input, btn, out);
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const wb = input.value.trim();
        if (!wb) return;
        out.textContent = "…";
        const res = await S.post("/api/parcels/" + encodeURIComponent(r.run_id) + "/" + encodeURIComponent(r.parcel_id) + "/key", { waybill: wb });
        const d = res.body && res.body.decision;
        out.textContent = res.ok ? "✓ → " + (d && d.chute ? d.chute : T("outcome." + (d ? d.outcome : "no_route"))) : S.detail(res);
        if (res.ok) { input.value = ""; reviewKey = null; setTimeout(pollReview, 800); }
        pollAudit();
      });
      card.appendChild(form);
      return card;
    }));
  }

  async function pollReview() {
    try { renderReview(await S.getJson("/api/review?limit=12", TIMEOUT_MS)); } catch (e) { /* kept */ }
  }

  // ------------------------------------------------------------------ search
  function fillOutcomeSelect() {
    const sel = $("search-outcome");
    const any = el("option", "", T("f.any"));
    any.value = "";
    sel.replaceChildren(any, ...OUTCOMES.map((o) => { const x = el("option", "", T("outcome." + o)); x.value = o; return x; }));
  }

  async function search(ev) {
    ev.preventDefault();
    const f = new FormData($("search-form"));
    const q = new URLSearchParams();
    for (const k of ["waybill", "carrier", "town", "chute", "outcome"]) {
      const v = String(f.get(k) || "").trim();
      if (v) q.set(k, v);
    }
    for (const [k, name] of [["since", "since_wall"], ["until", "until_wall"]]) {
      const v = String(f.get(k) || "");
      if (v) { const t = new Date(v).getTime(); if (isFinite(t)) q.set(name, String(t / 1000)); }
    }
    q.set("limit", "200");
    try {
      const rows = await S.getJson("/api/search?" + q.toString(), 60000);
      fillTable("search-results", rows, T("search.none"), chuteNames(lastStatus));
    } catch (e) {
      fillTable("search-results", [], String(e), {});
    }
  }

  // ------------------------------------------------------------------ the route table
  // the table in force (the line's version, its rules), and beside it why a file on disk was
  // refused: the line sorts on with the table in force until the file is fixed or forced in
  async function pollRoutes() {
    if (document.body.classList.contains("kiosk")) return;   // the wall screen shows no routes panel
    let r;
    try { r = await S.getJson("/api/routes", TIMEOUT_MS); } catch (e) { return; }
    const sum = [];
    const version = r.version_in_force || r.version;
    if (version) sum.push(T("routes.version") + " " + version);
    if (Array.isArray(r.rules)) sum.push(T("routes.rules", { n: num(r.rules.length) }));
    if (r.default) sum.push(T("routes.default") + " " + r.default);
    if (r.intercept) sum.push(T("routes.intercept") + " " + r.intercept);
    setText("routes-summary", sum.join(" · "));
    const problems = [...new Set([...(r.refused || []), ...(r.ok ? [] : r.problems || [])])];
    const box = $("routes-refused");
    box.hidden = !problems.length;
    if (problems.length) {
      box.replaceChildren(el("div", "refused-title", T(Array.isArray(r.rules) ? "routes.refused" : "routes.none")),
        ...problems.slice(0, 20).map((p) => el("div", "refused-line", p)));
    }
  }

  async function routeTest(ev) {
    ev.preventDefault();
    const f = new FormData($("route-test-form"));
    const body = { waybill: String(f.get("waybill") || "").trim() };
    const address = String(f.get("address") || "").trim();
    if (address) body.address = address;
    if (!body.waybill) return;
    const out = $("route-result");
    out.replaceChildren(el("span", "muted", "…"));
    const res = await S.post("/api/routes/test", body);
    if (!res.ok) {
      const d = res.body && res.body.detail;
      const said = d && Array.isArray(d.problems) ? d.problems.join("; ") : S.detail(res);
      out.replaceChildren(el("span", "route-bad", said));
      return;
    }
    const d = res.body;
    const names = chuteNames(lastStatus);
    const chute = d.chute ? d.chute + (names[d.chute] && names[d.chute] !== d.chute ? " " + names[d.chute] : "") : "—";
    const row = el("div", "route-answer");
    row.dataset.outcome = safeClass(d.outcome, OUTCOMES);
    for (const [k, v] of [["c.outcome", T("outcome." + d.outcome) || d.outcome], ["c.chute", chute],
      ["c.carrier", d.carrier], ["c.town", d.destination], ["p.rule", d.rule], ["c.reason", d.reason]]) {
      const item = el("span", "route-item");
      item.append(el("span", "muted", T(k) + " "), el("b", "", v === null || v === undefined || v === "" ? "—" : String(v)));
      row.appendChild(item);
    }
    out.replaceChildren(row);
  }

  // ------------------------------------------------------------------ alarm history (last 20, when opened)
  async function pollAlarmHistory() {
    if (!$("history-box").open) return;
    let rows;
    try { rows = await S.getJson("/api/alarms/history?limit=20", TIMEOUT_MS); } catch (e) { return; }
    if (!rows.length) $("alarm-history").replaceChildren(el("li", "none", T("none.alarm_history")));
    else $("alarm-history").replaceChildren(...rows.map((a) => alarmItem(a, false, true)));
  }

  // ------------------------------------------------------------------ audit (last 20)
  async function pollAudit() {
    let rows;
    try { rows = await S.getJson("/api/audit?limit=20", TIMEOUT_MS); } catch (e) { return; }
    if (!rows.length) {
      const tr = el("tr");
      const td = el("td", "none", T("none.audit"));
      td.colSpan = 5;
      tr.appendChild(td);
      $("audit").replaceChildren(tr);
      return;
    }
    $("audit").replaceChildren(...rows.map((a) => {
      const tr = el("tr", "audit-" + safeClass(a.result, ["ok", "refused", "failed"]));
      tr.appendChild(el("td", "mono", S.dateTime(a.wall)));
      tr.appendChild(el("td", "", a.user + " · " + T("role." + a.role)));
      tr.appendChild(el("td", "mono", a.action));
      tr.appendChild(el("td", "mono waybill", a.target || ""));
      tr.appendChild(el("td", "", T(safeClass(a.result, ["ok", "refused", "failed"])) + (a.detail ? " · " + a.detail : "")));
      return tr;
    }));
  }

  // ------------------------------------------------------------------ the poll
  function render(st) {
    lastStatus = st;
    const parts = [renderLine, renderKpis, renderOutcomes, renderAlarms, renderChutes, renderCameras, renderRecent];
    for (const part of parts) {
      try { part(st); } catch (e) { console.error(part.name, e); }
    }
  }

  let lastOk = 0;
  function shown(st) {
    render(st);
    lastOk = Date.now();
    $("stale").hidden = true;
    document.body.classList.remove("is-stale");
    setText("updated", T("updated") + " " + clock(lastOk / 1000).slice(0, 8));
  }

  async function poll() {
    try {
      shown(await S.getJson("/api/status", TIMEOUT_MS));
    } catch (e) {
      $("stale").hidden = false;
      document.body.classList.add("is-stale");
      if (!lastOk) badge($("state-badge"), "state-unknown", T("no_contact"), "NO CONTACT");
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  let slowTick = 0;
  function slow() {
    slowTick += 1;
    pollReview();
    pollAudit();
    pollAlarmHistory();
    pollRoutes();
    if (slowTick % 6 === 0) S.loadMe().then(S.renderUser);
    setTimeout(slow, 5000);
  }

  const I18N = window.SorterI18n;

  async function start() {
    S.startCommon();
    fillOutcomeSelect();
    $("reset-btn").addEventListener("click", () => act("/api/line/reset", T("confirm.reset")));
    $("pause-btn").addEventListener("click", () => act("/api/pause", T("confirm.pause")));
    $("resume-btn").addEventListener("click", () => act("/api/resume"));
    $("reload-btn").addEventListener("click", () => act("/api/routes/reload", T("confirm.reload")).then(pollRoutes));
    $("route-test-form").addEventListener("submit", routeTest);
    $("test-btn").addEventListener("click", () => {
      const mode = $("test-mode").value, chute = $("test-chute").value;
      const q = "mode=" + encodeURIComponent(mode) + (mode === "fixed" ? "&chute=" + encodeURIComponent(chute) : "");
      act("/api/line/test-mode?" + q, mode === "off" ? null : T("confirm.test", { mode: mode + (mode === "fixed" ? " " + chute : "") }));
    });
    $("search-form").addEventListener("submit", search);
    $("history-box").addEventListener("toggle", pollAlarmHistory);
    document.addEventListener("click", () => {
      if (!audio && window.AudioContext) { try { audio = new window.AudioContext(); } catch (e) { audio = null; } }
    }, { once: true });
    await S.loadMe();
    S.renderUser();
    // live.js (Server-Sent Events, its own poll as the fallback) feeds the page when it is there
    if (window.sorterLive) {
      window.sorterLive.subscribe((st) => {
        try { shown(st); } catch (e) { console.error(e); }
      });
      window.sorterLive.onStale((stale) => {
        $("stale").hidden = !stale;
        document.body.classList.toggle("is-stale", !!stale);
      });
    } else {
      poll();
    }
    pollNoreads();
    slow();
  }

  // after every deferred script has run (live.js comes after this one)
  if (document.readyState === "complete") start();
  else document.addEventListener("DOMContentLoaded", start);
})();
