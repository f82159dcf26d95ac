// The site panel: this line's site database forwarder, MQTT publisher and carrier uploads
// (/api/status keys site_db, mqtt, uploads; each null when not configured: the panel stays hidden).
// DOM built from text only (the page's CSP allows no inline script; no innerHTML anywhere).
(function () {
  "use strict";
  const POLL_MS = 2000;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function when(wall) {
    if (!wall) return "—";
    return new Date(wall * 1000).toLocaleTimeString();
  }

  function row(cells) {
    const tr = el("tr");
    for (const c of cells) {
      const td = el("td", c.cls || "");
      if (c.node) td.appendChild(c.node);
      else td.textContent = c.text === undefined || c.text === null ? "—" : String(c.text);
      tr.appendChild(td);
    }
    return tr;
  }

  function table(head, rows) {
    const t = el("table", "grid site-grid");
    const thead = el("thead");
    const tr = el("tr");
    for (const h of head) tr.appendChild(el("th", h.num ? "num" : "", h.text));
    thead.appendChild(tr);
    t.appendChild(thead);
    const tb = el("tbody");
    for (const r of rows) tb.appendChild(r);
    t.appendChild(tb);
    return t;
  }

  function stateText(ok) {
    return ok ? "在线 connected" : "断开 down";
  }

  async function resend(target, msg) {
    const url = "/api/uploads/resend?target=" + encodeURIComponent(target);
    let res;
    const S = window.Sorter;
    if (S && S.post && S.session && S.session.me && S.session.me.user) {
      res = await S.post(url);  // logged in: the session cookie and its CSRF token
    } else {
      let token = sessionStorage.getItem("sorter-token");
      if (!token) token = window.prompt("控制口令 Control token");
      if (!token) return;
      try {
        const r = await fetch(url, { method: "POST", headers: { Authorization: "Bearer " + token } });
        const body = await r.json().catch(() => ({}));
        res = { ok: r.ok, status: r.status, body };
        if (r.status === 401 || r.status === 403) sessionStorage.removeItem("sorter-token");
        else sessionStorage.setItem("sorter-token", token);
      } catch (e) {
        res = { ok: false, status: 0, body: { detail: String(e) } };
      }
    }
    msg.textContent = res.ok ? "✓ " + res.body.resent + " 重发 re-sent" : "✗ " + (res.body.detail || res.status);
  }

  function render(st) {
    const panel = document.getElementById("site-panel");
    if (!panel) return;
    panel.dataset.polls = String((Number(panel.dataset.polls) || 0) + 1);  // (the page test waits on it)
    const db = st.site_db, mq = st.mqtt, up = st.uploads;
    panel.hidden = !(db || mq || up);
    if (panel.hidden) return;
    const box = el("div", "site-body");
    box.appendChild(el("h2", "", "站点 Site"));
    const parts = [];
    if (db) {
      parts.push(row([{ text: "中心数据库 Site database" }, { text: db.url }, { text: stateText(db.connected),
        cls: db.connected ? "ok" : "bad" }, { text: db.backlog, cls: "num" + (db.backlog ? " warn" : "") },
      { text: db.sent, cls: "num" }, { text: db.last_error }]));
    }
    if (mq) {
      parts.push(row([{ text: "MQTT" }, { text: mq.broker + " · " + mq.topic + "/…" },
        { text: stateText(mq.connected), cls: mq.connected ? "ok" : "bad" },
        { text: mq.queued, cls: "num" + (mq.queued ? " warn" : "") }, { text: mq.acked, cls: "num" },
        { text: mq.dropped ? mq.dropped + " dropped · " + (mq.last_error || "") : mq.last_error }]));
    }
    if (parts.length) {
      box.appendChild(table([{ text: "部分 Part" }, { text: "地址 Where" }, { text: "状态 State" },
        { text: "积压 Backlog", num: true }, { text: "已发 Sent", num: true }, { text: "最近错误 Last error" }], parts));
    }
    if (up) {
      const rows = [];
      for (const t of up.targets || []) {
        const cell = el("span");
        if (t.failed) {
          const b = el("button", "site-resend", "重发 Re-send");
          b.type = "button";
          const msg = el("span", "site-msg");
          b.addEventListener("click", () => resend(t.name, msg));
          cell.appendChild(b);
          cell.appendChild(msg);
        }
        rows.push(row([{ text: t.name }, { text: t.pending, cls: "num" + (t.pending ? " warn" : "") },
          { text: t.failed, cls: "num" + (t.failed ? " bad" : "") }, { text: t.sent, cls: "num" },
          { text: when(t.last_ok_wall) }, { text: t.failures_in_row ? t.last_error : "" }, { node: cell }]));
      }
      box.appendChild(el("h3", "", "上传 Uploads (到件 / 分拣)"));
      box.appendChild(table([{ text: "目标 Target" }, { text: "待发 Pending", num: true },
        { text: "失败 Failed", num: true }, { text: "已发 Sent", num: true }, { text: "最近成功 Last OK" },
        { text: "最近错误 Last error" }, { text: "" }], rows));
    }
    // keep an open re-send answer: only replace the panel when what it shows changed
    const sig = JSON.stringify([db, mq, up && (up.targets || []).map((t) => [t.name, t.pending, t.failed, t.sent,
      t.last_error, t.failures_in_row])]);
    if (panel.dataset.sig === sig) return;
    panel.dataset.sig = sig;
    panel.replaceChildren(box);
  }

  async function poll() {
    try {
      const r = await fetch("/api/status", { cache: "no-store", credentials: "same-origin" });
      if (r.ok) render(await r.json());
    } catch (e) {
      // the main script shows a lost connection; this panel keeps its last figures
    }
    setTimeout(poll, POLL_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", poll);
  else poll();
})();
