// The charts section (<section id="charts">): totals of today and of the shift (from the record
// database: they survive a restart), per carrier and per town, throughput per minute over the
// shift, outcomes over time, read rate per camera, the fire-timing histogram, and the Excel/CSV
// export of a day or of the search. SVG drawn here: no library, no CDN, no build step.
// Text-only DOM (textContent, setAttribute with numbers and fixed names): a carrier or town
// name is data and never markup. Colours are SVG attributes; layout is element.style (the CSP
// allows no style attribute from a string).
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const REFRESH_MS = 30000;
  const lang = (window.SorterI18n && window.SorterI18n.lang) === "en" ? "en" : "zh";
  const W = {
    zh: {
      charts: "统计与图表", today: "今天", shift: "本班", total: "总数", sorted: "已分拣", read_rate: "读码率",
      exceptions: "异常", carriers: "按快递", towns: "按目的地", key_none: "（未知）", throughput: "每分钟处理量",
      outcomes: "结果随时间", cam_read: "各相机读码率", fire: "动作时间误差分布（毫秒）", export: "导出",
      day: "日期", excel: "Excel", csv: "CSV", export_search: "导出当前查询", no_data: "暂无数据",
      per_min: "件/分钟", fires: "次动作", restart_note: "来自记录数据库，重启后不清零", carrier: "快递",
      town: "目的地",
    },
    en: {
      charts: "Totals and charts", today: "Today", shift: "This shift", total: "Total", sorted: "Sorted",
      read_rate: "Read rate", exceptions: "Exceptions", carriers: "By carrier", towns: "By town", key_none: "(unknown)",
      throughput: "Throughput per minute", outcomes: "Outcomes over time", cam_read: "Read rate per camera",
      fire: "Fire timing error (ms)", export: "Export", day: "Day", excel: "Excel", csv: "CSV",
      export_search: "Export the search", no_data: "No data yet", per_min: "parcels/min", fires: "fires",
      restart_note: "from the record database: kept across restarts", carrier: "Carrier", town: "Town",
    },
  }[lang];
  const OUTCOME_COLOURS = {
    sorted: "#2e8b57", no_read: "#d9822b", multi_read: "#b8860b", no_route: "#8b5cf6", chute_unavailable: "#c2410c",
    too_late: "#dc2626", gap_too_small: "#0ea5e9", lost: "#7f1d1d", unconfirmed: "#64748b", fault: "#111827",
  };
  const SERIES_COLOURS = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2"];

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const k of Object.keys(attrs || {})) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  function num(v) { return typeof v === "number" && isFinite(v) ? v.toLocaleString("en-US") : "—"; }
  function pct(v) { return typeof v === "number" && isFinite(v) ? (v * 100).toFixed(1) + "%" : "—"; }
  function hhmm(t) { const d = new Date(t * 1000); return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0"); }
  function isoDay(d) { return d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0") + "-" + String(d.getDate()).padStart(2, "0"); }

  async function getJson(url) {
    const r = await fetch(url, { cache: "no-store", credentials: "same-origin" });
    if (!r.ok) throw new Error(url + ": " + r.status);
    return r.json();
  }

  // ------------------------------------------------------------------ charts
  const CW = 640, CH = 180, PAD = { l: 44, r: 8, t: 10, b: 22 };

  function frame(title, note) {
    const box = el("figure", "chart");
    box.style.margin = "0 0 12px 0";
    box.style.minWidth = "0";
    const cap = el("figcaption", "", title);
    cap.style.fontWeight = "600";
    box.appendChild(cap);
    if (note) box.appendChild(el("div", "muted", note));
    const svg = svgEl("svg", { viewBox: `0 0 ${CW} ${CH}`, role: "img", "aria-label": title });
    svg.style.width = "100%";
    svg.style.height = "auto";
    svg.style.maxHeight = "240px";
    box.appendChild(svg);
    return { box, svg };
  }

  function axes(svg, yMax, yFmt, xs, xFmt) {
    const h = CH - PAD.t - PAD.b;
    for (let i = 0; i <= 4; i++) {
      const y = PAD.t + h - (h * i) / 4;
      svg.appendChild(svgEl("line", { x1: PAD.l, x2: CW - PAD.r, y1: y, y2: y, stroke: "#d1d5db", "stroke-width": 1 }));
      svg.appendChild(svgEl("text", { x: PAD.l - 4, y: y + 4, "text-anchor": "end", "font-size": 10, fill: "#6b7280" },
                            yFmt((yMax * i) / 4)));
    }
    const n = xs.length;
    const step = Math.max(1, Math.ceil(n / 8));
    for (let i = 0; i < n; i += step) {
      const x = PAD.l + ((i + 0.5) * (CW - PAD.l - PAD.r)) / n;
      svg.appendChild(svgEl("text", { x, y: CH - 6, "text-anchor": "middle", "font-size": 10, fill: "#6b7280" }, xFmt(xs[i], i)));
    }
  }

  function empty(svg) {
    svg.appendChild(svgEl("text", { x: CW / 2, y: CH / 2, "text-anchor": "middle", "font-size": 14, fill: "#9ca3af" }, W.no_data));
  }

  // stacked bars: series = [{name, colour, values}], all aligned with xs
  function bars(title, xs, series, xFmt, note, legend) {
    const { box, svg } = frame(title, note);
    const n = xs.length;
    const totals = xs.map((_x, i) => series.reduce((s, ser) => s + (ser.values[i] || 0), 0));
    const yMax = Math.max(1, ...totals);
    if (!n || totals.every((v) => !v)) { empty(svg); return box; }
    axes(svg, yMax, (v) => (v >= 10 ? Math.round(v) : v.toFixed(1)), xs, xFmt);
    const h = CH - PAD.t - PAD.b, bw = (CW - PAD.l - PAD.r) / n;
    for (let i = 0; i < n; i++) {
      let y0 = PAD.t + h;
      for (const ser of series) {
        const v = ser.values[i] || 0;
        if (!v) continue;
        const bh = (v / yMax) * h;
        y0 -= bh;
        const r = svgEl("rect", { x: PAD.l + i * bw + bw * 0.1, y: y0, width: Math.max(1, bw * 0.8), height: bh, fill: ser.colour });
        r.appendChild(svgEl("title", {}, `${xFmt(xs[i], i)} ${ser.name}: ${v}`));
        svg.appendChild(r);
      }
    }
    if (legend) box.appendChild(legendOf(series.filter((s) => s.values.some((v) => v))));
    return box;
  }

  // lines 0..1 (read rate): series = [{name, colour, values (null: no parcel)}]
  function lines(title, xs, series, xFmt) {
    const { box, svg } = frame(title);
    const n = xs.length;
    if (!n || !series.length) { empty(svg); return box; }
    axes(svg, 1, (v) => Math.round(v * 100) + "%", xs, xFmt);
    const h = CH - PAD.t - PAD.b, bw = (CW - PAD.l - PAD.r) / n;
    for (const ser of series) {
      let d = "";
      ser.values.forEach((v, i) => {
        if (v === null || v === undefined) return;
        const x = PAD.l + (i + 0.5) * bw, y = PAD.t + h - v * h;
        d += (d && ser.values[i - 1] !== null && ser.values[i - 1] !== undefined ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1) + " ";
      });
      if (d) svg.appendChild(svgEl("path", { d: d.trim(), fill: "none", stroke: ser.colour, "stroke-width": 2 }));
    }
    box.appendChild(legendOf(series));
    return box;
  }

  function legendOf(series) {
    const lg = el("div", "chart-legend");
    for (const s of series) {
      const item = el("span");
      item.style.marginRight = "12px";
      item.style.whiteSpace = "nowrap";
      const sw = svgEl("svg", { width: 10, height: 10, viewBox: "0 0 10 10" });
      sw.appendChild(svgEl("rect", { width: 10, height: 10, fill: s.colour }));
      sw.style.marginRight = "4px";
      item.appendChild(sw);
      item.appendChild(document.createTextNode(s.name));
      lg.appendChild(item);
    }
    return lg;
  }

  function fireHistogram(hist) {
    const edges = (hist && hist.edges_ms) || [], counts = (hist && hist.counts) || [];
    const labels = counts.map((_c, i) => (i === 0 ? "<" + edges[0] : i === edges.length ? "≥" + edges[edges.length - 1]
      : edges[i - 1] + "…" + edges[i]));
    return bars(W.fire, labels, [{ name: W.fires, colour: "#2563eb", values: counts }], (x) => x,
                hist && hist.n ? `n = ${num(hist.n)}` : "");
  }

  // ------------------------------------------------------------------ totals
  function totalsCard(label, t) {
    const card = el("div", "kpi");
    card.appendChild(el("div", "k-label", label + (t && t.shift ? " · " + t.shift : "")));
    card.appendChild(el("div", "k-value", t ? num(t.total) : "—"));
    const sortedN = t && t.outcomes ? t.outcomes.sorted || 0 : 0;
    card.appendChild(el("div", "k-unit", t ? `${W.sorted} ${num(sortedN)} · ${W.exceptions} ${num(t.total - sortedN)} · ${W.read_rate} ${pct(t.read_rate)}` : ""));
    return card;
  }

  function groupTable(title, data) {
    const wrap = el("div");
    wrap.style.minWidth = "0";
    wrap.appendChild(el("h3", "", title));
    const sc = el("div", "scroll");
    const table = el("table", "grid");
    const head = el("tr");
    head.appendChild(el("th", "", title === W.carriers ? W.carrier : W.town));
    for (const h of [W.total, W.sorted, W.exceptions]) head.appendChild(el("th", "num", h));
    const thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    const tbody = el("tbody");
    for (const row of ((data && data.rows) || []).slice(0, 15)) {
      const tr = el("tr");
      tr.appendChild(el("td", "", row.key === null || row.key === undefined ? W.key_none : row.key));
      tr.appendChild(el("td", "num", num(row.total)));
      tr.appendChild(el("td", "num", num(row.sorted)));
      tr.appendChild(el("td", "num", num(row.total - row.sorted)));
      tbody.appendChild(tr);
    }
    if (!tbody.firstChild) {
      const tr = el("tr");
      const td = el("td", "muted", W.no_data);
      td.colSpan = 4;
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
    table.appendChild(tbody);
    sc.appendChild(table);
    wrap.appendChild(sc);
    return wrap;
  }

  // ------------------------------------------------------------------ export
  function exportBox() {
    const box = el("div", "export");
    box.appendChild(el("h3", "", W.export));
    const form = el("div", "controls");
    const dayLabel = el("label", "", W.day + " ");
    const day = el("input");
    day.type = "date";
    day.id = "export-day";
    day.value = isoDay(new Date());
    dayLabel.appendChild(day);
    form.appendChild(dayLabel);
    const link = (fmt, text, id) => {
      const a = el("a", "button", text);
      a.id = id;
      linkLook(a);
      a.setAttribute("download", "");
      const update = () => { a.href = "/api/export?format=" + fmt + "&day=" + encodeURIComponent(day.value || isoDay(new Date())); };
      day.addEventListener("change", update);
      update();
      return a;
    };
    form.appendChild(link("xlsx", W.excel, "export-xlsx"));
    form.appendChild(link("csv", W.csv, "export-csv"));
    // the search form's filters (part of the page's search panel), exported as they stand
    for (const fmt of ["xlsx", "csv"]) {
      const a = el("a", "button", W.export_search + " (" + (fmt === "xlsx" ? W.excel : W.csv) + ")");
      a.id = "export-search-" + fmt;
      linkLook(a);
      a.setAttribute("download", "");
      a.href = "/api/export?format=" + fmt;
      a.addEventListener("click", () => { a.href = searchExportUrl(fmt); });
      form.appendChild(a);
    }
    box.appendChild(form);
    return box;
  }

  function linkLook(a) {  // readable on the page's dark panels, whatever the browser's link colour
    a.style.color = "inherit";
    a.style.marginLeft = "12px";
    a.style.textDecoration = "underline";
  }

  function searchExportUrl(fmt) {
    const q = new URLSearchParams({ format: fmt });
    const f = document.getElementById("search-form");
    if (f) {
      const v = (name) => (f.elements[name] && f.elements[name].value ? String(f.elements[name].value).trim() : "");
      for (const name of ["waybill", "carrier", "town", "chute", "outcome"]) if (v(name)) q.set(name, v(name));
      const since = v("since"), until = v("until");  // datetime-local, the PC's local time
      if (since) q.set("since_wall", String(new Date(since).getTime() / 1000));
      if (until) q.set("until_wall", String(new Date(until).getTime() / 1000));
      if (!since && !until && !v("waybill")) q.set("day", isoDay(new Date()));
    }
    return "/api/export?" + q.toString();
  }

  // ------------------------------------------------------------------ the section
  let parts = null;

  function build(root) {
    root.textContent = "";
    const h = el("h2", "", W.charts);
    root.appendChild(h);
    root.appendChild(el("div", "muted", W.restart_note));
    const kpis = el("div", "kpis");
    kpis.id = "charts-totals";
    root.appendChild(kpis);
    const grid = el("div", "charts-grid");
    grid.style.display = "grid";
    grid.style.gridTemplateColumns = "repeat(auto-fit, minmax(420px, 1fr))";
    grid.style.gap = "12px";
    const slots = {};
    for (const k of ["throughput", "outcomes", "read", "fire", "carriers", "towns"]) {
      slots[k] = el("div");
      slots[k].id = "chart-" + k;
      slots[k].style.minWidth = "0";
      grid.appendChild(slots[k]);
    }
    root.appendChild(grid);
    root.appendChild(exportBox());
    parts = { kpis, slots };
  }

  function put(slot, node) { slot.textContent = ""; slot.appendChild(node); }

  async function refresh() {
    if (!parts) return;
    const x = (t) => hhmm(t);
    const jobs = [
      getJson("/api/totals").then((today) => getJson("/api/totals?shift=current").then((shift) => {
        parts.kpis.textContent = "";
        parts.kpis.appendChild(totalsCard(W.today, today));
        parts.kpis.appendChild(totalsCard(W.shift, shift));
      })),
      getJson("/api/series?metric=throughput&bucket_s=60").then((s) => put(parts.slots.throughput,
        bars(W.throughput, s.t, [{ name: W.per_min, colour: "#2563eb", values: s.series.parcels || [] }], x))),
      getJson("/api/series?metric=outcomes&bucket_s=600").then((s) => put(parts.slots.outcomes,
        bars(W.outcomes, s.t, Object.keys(s.series).map((o) => ({ name: o, colour: OUTCOME_COLOURS[o] || "#999", values: s.series[o] })),
             x, "", true))),
      getJson("/api/series?metric=read_rate&bucket_s=600").then((s) => put(parts.slots.read,
        lines(W.cam_read, s.t, Object.keys(s.series).map((c, i) => ({ name: c, colour: SERIES_COLOURS[i % SERIES_COLOURS.length], values: s.series[c] })), x))),
      getJson("/api/totals/carriers?shift=current").then((d) => put(parts.slots.carriers, groupTable(W.carriers, d))),
      getJson("/api/totals/towns?shift=current").then((d) => put(parts.slots.towns, groupTable(W.towns, d))),
    ];
    for (const r of await Promise.allSettled(jobs)) if (r.status === "rejected") console.warn("charts:", r.reason);
  }

  let lastHistN = -1;
  function onStatus(st) {
    if (!parts || !st) return;
    const hist = st.fire_hist;
    if (hist && hist.n !== lastHistN) { lastHistN = hist.n; put(parts.slots.fire, fireHistogram(hist)); }
    else if (!hist && lastHistN === -1) { lastHistN = -2; put(parts.slots.fire, fireHistogram(null)); }
  }

  function start() {
    const root = document.getElementById("charts");
    if (!root) return;
    build(root);
    refresh();
    setInterval(refresh, REFRESH_MS);
    // the histogram follows the page's live status once the page uses window.sorterLive (SSE);
    // until then it is read with the other charts (an open event stream also keeps a
    // --virtual-time-budget Chromium waiting for ever: tests/test_api.py)
    if (window.sorterLive && window.sorterLiveForCharts) window.sorterLive.subscribe(onStatus);
    else {
      const pull = () => getJson("/api/status").then(onStatus).catch(() => {});
      pull();
      setInterval(pull, REFRESH_MS);
    }
  }

  window.sorterCharts = { refresh, searchExportUrl };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
