// The login page: name and password to POST /api/login (the answer sets the session cookie),
// then back to the page that asked for it (only a path of this site).
"use strict";
(function () {
  const I = window.SorterI18n;

  function next() {
    const n = new URLSearchParams(window.location.search).get("next") || "/";
    return /^\/(?![\/\\])/.test(n) ? n : "/";
  }

  async function submit(ev) {
    ev.preventDefault();
    const msg = document.getElementById("login-msg");
    msg.textContent = "…";
    const body = { name: document.getElementById("name").value.trim(), password: document.getElementById("password").value };
    try {
      const r = await fetch("/api/login", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      if (r.ok) { window.location.href = next(); return; }
      msg.textContent = r.status === 429 ? I.t("login.blocked") : I.t("login.wrong");
    } catch (e) {
      msg.textContent = String(e);
    }
  }

  function start() {
    I.apply();
    document.getElementById("lang-link").href = I.otherUrl();
    document.getElementById("login-form").addEventListener("submit", submit);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
