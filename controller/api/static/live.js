// Live status for the page: Server-Sent Events from /api/events, and the poll of /api/status as
// the fallback (no EventSource, or the stream keeps failing: a proxy that buffers, an old
// browser). One connection per page, however many parts of the page subscribe.
//
//   const stop = window.sorterLive.subscribe((status, via) => { ... });   // via: "sse" | "poll"
//   window.sorterLive.onStale((stale) => { ... });   // true after STALE_MS without a snapshot
//   window.sorterLive.mode();                        // "sse" | "poll" | "off"
"use strict";
(function () {
  const POLL_MS = 1000;        // the fallback's pace (the page's own poll was once a second too)
  const STALE_MS = 5000;       // no snapshot for this long: the data shown may be old
  const SSE_ERRORS = 3;        // errors in a row before falling back to the poll ...
  const SSE_RETRY_MS = 60000;  // ... and how long before trying the stream again
  const subs = new Set();
  const staleSubs = new Set();
  let es = null, pollTimer = null, mode = "off", errors = 0, last = 0, lastStatus = null, stale = null;

  function setStale(s) {
    if (s === stale) return;
    stale = s;
    for (const fn of staleSubs) { try { fn(s); } catch (e) { console.error(e); } }
  }

  function deliver(st, via) {
    last = Date.now();
    lastStatus = st;
    setStale(false);
    for (const fn of subs) { try { fn(st, via); } catch (e) { console.error(e); } }
  }

  function startSse() {
    if (!window.EventSource) { startPoll(); return; }
    mode = "sse";
    es = new window.EventSource("/api/events");
    es.onmessage = (ev) => {
      errors = 0;
      let st;
      try { st = JSON.parse(ev.data); } catch (e) { return; }
      deliver(st, "sse");
    };
    es.onerror = () => {
      errors += 1;  // EventSource reconnects by itself; give up on it after a few failures
      if (errors >= SSE_ERRORS || es.readyState === window.EventSource.CLOSED) {
        es.close();
        es = null;
        startPoll();
        setTimeout(retrySse, SSE_RETRY_MS);
      }
    };
  }

  function startPoll() {
    mode = "poll";
    if (pollTimer !== null) return;
    const tick = async () => {
      try {
        const ctl = window.AbortController ? new window.AbortController() : null;
        const timer = ctl ? setTimeout(() => ctl.abort(), 4000) : null;
        const r = await fetch("/api/status", { cache: "no-store", credentials: "same-origin",
                                               signal: ctl ? ctl.signal : undefined });
        if (timer) clearTimeout(timer);
        if (r.ok) deliver(await r.json(), "poll");
      } catch (e) { /* the stale flag says so */ }
      pollTimer = mode === "poll" ? setTimeout(tick, POLL_MS) : null;
    };
    tick();
  }

  function retrySse() {
    if (mode !== "poll") return;
    if (pollTimer !== null) { clearTimeout(pollTimer); pollTimer = null; }
    errors = 0;
    startSse();
  }

  function ensureStarted() {
    if (mode !== "off") return;
    const started = Date.now();
    startSse();
    setInterval(() => setStale(Date.now() - (last || started) > STALE_MS), 1000);
  }

  window.sorterLive = {
    subscribe(fn) {
      subs.add(fn);
      if (lastStatus !== null) { try { fn(lastStatus, "cache"); } catch (e) { console.error(e); } }
      ensureStarted();
      return () => subs.delete(fn);
    },
    onStale(fn) {
      staleSubs.add(fn);
      if (stale !== null) fn(stale);
      return () => staleSubs.delete(fn);
    },
    mode() { return mode; },
    last() { return lastStatus; },
  };
})();
