// One parcel's story (GET /api/parcels/{run}/{id}): its reads, the route decision, the chute, fire
// timing, confirm, keying and outcome, the control actions on it, and what the records do not hold.
"use strict";
(function () {
  const S = window.Sorter;
  const { $, el, T, num, dateTime } = S;

  function panel(title, rows) {
    const sec = el("section", "panel");
    sec.appendChild(el("h2", "", title));
    const dl = el("dl", "kv");
    for (const [k, v] of rows) {
      dl.appendChild(el("dt", "", k));
      const dd = el("dd", "mono");
      if (v instanceof Node) dd.appendChild(v); else dd.textContent = v === null || v === undefined || v === "" ? "—" : String(v);
      dl.appendChild(dd);
    }
    sec.appendChild(dl);
    return sec;
  }

  function render(s) {
    const rec = s.record || {}, d = s.decision || {}, c = s.chute || {};
    $("p-ref").textContent = rec.run_id + "/" + rec.parcel_id;
    const parts = [];
    const oc = el("span");
    oc.appendChild(S.outcomePill(s.outcome));
    parts.push(panel(T("c.outcome"), [[T("c.outcome"), oc], [T("c.waybill"), rec.waybill], [T("c.carrier"), rec.carrier],
      [T("c.town"), rec.destination], [T("p.length"), rec.length_mm === null ? null : num(rec.length_mm) + " mm"]]));
    const reads = el("section", "panel");
    reads.appendChild(el("h2", "", T("p.reads") + " (" + (s.reads || []).length + ")"));
    const ul = el("ul", "reads");
    for (const r of s.reads || []) {
      // where on the parcel (from its head) and when (after its induct) the camera read it
      const at = typeof r.at_mm === "number" && typeof r.t_s === "number"
        ? " · " + T("p.read_at", { mm: num(r.at_mm), s: num(r.t_s, 2) }) : "";
      ul.appendChild(el("li", "mono", (r.camera || "?") + " · " + (r.symbology || "?") + " · " + (r.text || "") + at + (r.weak ? " (weak)" : "")));
    }
    reads.appendChild(ul);
    parts.push(reads);
    parts.push(panel(T("p.decision"), [[T("p.rule"), d.rule], [T("p.version"), d.routing_version], [T("p.why"), d.reason],
      ["decision ms", d.decision_ms === null ? null : num(d.decision_ms, 2)]]));
    parts.push(panel(T("c.chute"), [[T("p.chosen"), c.chosen ? c.chosen + " " + (c.chosen_name || "") : null],
      [T("p.reached"), c.reached ? c.reached + " " + (c.reached_name || "") : null],
      [T("p.fire"), s.fire && typeof s.fire.error_ms === "number" ? num(s.fire.error_ms, 2) + " ms" : null],
      [T("p.confirm"), s.confirm ? T("confirm." + s.confirm) : null]]));
    const t = s.times || {};
    parts.push(panel(T("p.times"), [[T("p.induct"), dateTime(t.induct_wall)], [T("p.decided"), dateTime(t.decided_wall)],
      [T("p.fired"), dateTime(t.fired_wall)], [T("p.confirmed"), dateTime(t.confirmed_wall)],
      [T("p.ended"), dateTime(t.ended_wall)]]));
    if (s.keyed) {
      const k = s.keyed;
      parts.push(panel(T("p.keyed"), [[T("c.waybill"), k.waybill], [T("c.chute"), k.chute ? k.chute + " " + (k.chute_name || "") : null],
        [T("c.town"), k.destination], [T("p.rule"), k.rule], [T("p.by"), k.by + " · " + (k.via || "")], [T("c.time"), dateTime(k.wall)]]));
    }
    if ((s.frames || []).length) {
      const fr = el("section", "panel");
      fr.appendChild(el("h2", "", T("noreads")));
      const box = el("div", "ri-frames");
      for (const f of s.frames) {
        if (typeof f.file !== "string" || !/^[A-Za-z0-9_-]{1,200}\.jpg$/.test(f.file)) continue;
        const img = el("img");
        img.src = "/api/noreads/" + encodeURIComponent(f.file);
        img.alt = String(f.camera || "");
        box.appendChild(img);
      }
      fr.appendChild(box);
      parts.push(fr);
    }
    if ((s.audit || []).length) {
      parts.push(panel(T("p.audit"), s.audit.map((a) => [dateTime(a.wall), a.user + " " + a.action + " " + a.result + (a.detail ? " · " + a.detail : "")])));
    }
    const miss = el("section", "panel");
    miss.appendChild(el("h2", "", T("p.missing")));
    const mu = el("ul", "missing");
    for (const m of s.not_recorded || []) mu.appendChild(el("li", "", T("missing." + m)));
    miss.appendChild(mu);
    parts.push(miss);
    $("story").replaceChildren(...parts);
  }

  async function start() {
    S.startCommon();
    await S.loadMe();
    S.renderUser();
    const q = new URLSearchParams(window.location.search);
    const run = q.get("run") || "", id = q.get("id") || "";
    try {
      render(await S.getJson("/api/parcels/" + encodeURIComponent(run) + "/" + encodeURIComponent(id), 10000));
    } catch (e) {
      $("p-msg").textContent = String(e);
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
