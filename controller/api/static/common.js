// What every page shares: building text-only DOM, the logged-in user, and POSTs that carry the
// session's CSRF token. Everything shown comes from barcodes, configuration or users and is
// untrusted: text goes in with textContent only — never innerHTML with data.
"use strict";
(function () {
  const I = window.SorterI18n;
  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // a word in the page's language; the key itself when there is none (never blank)
  function T(key, params) {
    const w = I.t(key, params);
    return w === null ? key : w;
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

  function dateTime(wall) {
    if (typeof wall !== "number" || !isFinite(wall)) return "—";
    const d = new Date(wall * 1000);
    const p = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + clock(wall);
  }

  const OUTCOMES = ["sorted", "no_read", "multi_read", "no_route", "chute_unavailable", "too_late",
    "gap_too_small", "lost", "unconfirmed", "fault"];

  // a class name from data: only the known words, never the raw text
  function safeClass(word, known) {
    return known.indexOf(word) >= 0 ? word : "unknown";
  }

  function outcomePill(outcome) {
    const o = safeClass(outcome, OUTCOMES);
    return el("span", "pill " + o, o === "unknown" ? String(outcome || "?") : T("outcome." + o));
  }

  function parcelLink(rec, text) {
    const a = el("a", "plink", text);
    a.href = "/parcel?run=" + encodeURIComponent(String(rec.run_id)) + "&id=" + encodeURIComponent(String(rec.parcel_id));
    return a;
  }

  // who this browser is: {user: {name, role, via} | null, csrf, read, users}
  const session = { me: null };
  const RANK = { viewer: 0, supervisor: 1, technician: 2 };

  async function loadMe() {
    try {
      const r = await fetch("/api/me", { cache: "no-store", credentials: "same-origin" });
      session.me = r.ok ? await r.json() : null;
    } catch (e) {
      session.me = null;
    }
    return session.me;
  }

  function may(role) {
    const u = session.me && session.me.user;
    return !!u && (RANK[u.role] || 0) >= RANK[role];
  }

  // a POST with the session's CSRF token; answers {ok, status, body}
  async function post(url, body) {
    const headers = { "Content-Type": "application/json" };
    if (session.me && session.me.csrf) headers["X-CSRF-Token"] = session.me.csrf;
    try {
      const r = await fetch(url, { method: "POST", headers, credentials: "same-origin",
        body: body === undefined ? "" : JSON.stringify(body) });
      const data = await r.json().catch(() => ({}));
      return { ok: r.ok, status: r.status, body: data };
    } catch (e) {
      return { ok: false, status: 0, body: { detail: String(e) } };
    }
  }

  async function getJson(url, timeoutMs) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs || 2500);
    try {
      const r = await fetch(url, { cache: "no-store", signal: ctl.signal, credentials: "same-origin" });
      if (r.status === 401 && window.location.pathname !== "/login") {
        window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
      }
      if (!r.ok) throw new Error("HTTP " + r.status);
      return await r.json();
    } finally {
      clearTimeout(timer);
    }
  }

  function detail(res) {
    const d = res.body && (res.body.message || res.body.detail);
    return (res.ok ? "✓ " : "✗ ") + (typeof d === "string" ? d : String(res.status));
  }

  // the user box in the header: name and role, log in / log out, the language switch
  function renderUser() {
    const u = session.me && session.me.user;
    const name = $("user-name");
    if (name) name.textContent = u ? u.name + " · " + T("role." + u.role) : T("role.none");
    const login = $("login-link");
    if (login) {
      login.hidden = !!u;
      login.href = "/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
    }
    const out = $("logout-btn");
    if (out) out.hidden = !(u && u.via === "session");
    const lang = $("lang-link");
    if (lang) lang.href = I.otherUrl();
    for (const e of document.querySelectorAll(".needs-supervisor")) e.disabled = !may("supervisor");
    for (const e of document.querySelectorAll(".needs-technician")) e.disabled = !may("technician");
    document.body.classList.toggle("can-control", may("supervisor"));
    const hint = $("login-hint");
    if (hint) hint.hidden = may("supervisor");
  }

  async function logout() {
    await post("/api/logout");
    await loadMe();
    renderUser();
  }

  function startCommon() {
    I.apply();
    const kiosk = new URLSearchParams(window.location.search).get("kiosk") === "1";
    document.body.classList.toggle("kiosk", kiosk);
    const out = $("logout-btn");
    if (out) out.addEventListener("click", logout);
  }

  window.Sorter = { $, el, T, num, pct, clock, dateTime, OUTCOMES, safeClass, outcomePill, parcelLink, session,
    loadMe, may, post, getJson, detail, renderUser, startCommon };
})();
