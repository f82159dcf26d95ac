// The manual-sort station at the reject chute: a scanner (a keyboard that types the waybill and
// Enter) or the worker types it; the chute it routes to is shown large, readable from a metre
// away, and the parcel's record is completed (POST /api/station/scan).
"use strict";
(function () {
  const S = window.Sorter;
  const { $, T } = S;

  async function scan(ev) {
    ev.preventDefault();
    const input = $("scan");
    const wb = input.value.trim();
    if (!wb) return;
    $("st-msg").textContent = "…";
    const res = await S.post("/api/station/scan", { waybill: wb });
    input.value = "";
    input.focus();
    if (!res.ok) {
      $("result").hidden = true;
      $("st-msg").textContent = S.detail(res);
      if (res.status === 401) { await S.loadMe(); S.renderUser(); }
      return;
    }
    const b = res.body, d = b.decision || {};
    $("result").hidden = false;
    $("result").className = "station-result " + (b.chute ? "st-ok" : "st-none");
    $("st-waybill").textContent = d.waybill || wb;
    $("st-chute").textContent = b.chute || T("outcome." + S.safeClass(d.outcome, S.OUTCOMES));
    $("st-name").textContent = [b.chute_name, d.destination].filter(Boolean).join(" · ");
    $("st-why").textContent = d.reason || "";
    const rec = b.record;
    $("st-record").replaceChildren();
    if (rec) {
      $("st-record").append(S.el("span", "", "✓ " + T("station.record") + " "), S.parcelLink(rec, rec.run_id + "/" + rec.parcel_id));
    } else {
      $("st-record").textContent = T("station.norecord");
    }
    $("st-msg").textContent = "";
  }

  async function start() {
    S.startCommon();
    $("scan-form").addEventListener("submit", scan);
    await S.loadMe();
    S.renderUser();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
