"""`GET /api/events`: the status snapshot pushed as Server-Sent Events.

Each client gets the snapshot when it connects, then each newly published one, at most once per
`min_interval_s` (the supervisor publishes twice a second; a wall screen needs one), and a comment
line as a heartbeat when nothing has been sent for `heartbeat_s` (proxies and browsers drop a
silent connection). The bytes are the cache's (service/status_cache.py): 50 screens cost one
serialisation, not 50. The page keeps its poll as the fallback (static/live.js).

The publisher runs in the supervisor's thread; the clients wait on this event loop. `Wakeup` is
the bridge: the publisher only schedules `loop.call_soon_threadsafe`, it never waits on a client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

log = logging.getLogger(__name__)

MAX_CLIENTS = 200          # a room of screens, with room to spare; more is refused (503), not queued
RETRY_MS = 3000            # how soon a browser reconnects after the stream breaks


class Wakeup:
    """Wakes every waiting SSE client of one event loop when a snapshot is published."""

    def __init__(self, source: Any):
        self._source = source
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def _bind(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first client, or a server restarted on a new loop
            if self._loop is not None:
                self._source.unsubscribe(self._on_publish)
            self._loop, self._event = loop, asyncio.Event()
            self._source.subscribe(self._on_publish)
        assert self._event is not None
        return self._event

    def _on_publish(self, _pub: Any) -> None:  # the publisher's thread
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._fire)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _fire(self) -> None:
        ev, self._event = self._event, asyncio.Event()
        if ev is not None:
            ev.set()

    async def wait(self, timeout: float) -> None:
        ev = self._bind()
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except asyncio.TimeoutError:
            pass


def event_bytes(version: int, body: bytes) -> bytes:
    # the JSON has no raw newline (json.dumps escapes them), so one data line carries it
    return b"id: %d\ndata: " % version + body + b"\n\n"


def router(source: Any, min_interval_s: float = 1.0, heartbeat_s: float = 15.0,
           max_clients: int = MAX_CLIENTS) -> APIRouter:
    """`source`: a StatusCache (pushes) or a PulledStatus (polled on the heartbeat's tick)."""
    r = APIRouter()
    wake = Wakeup(source)
    clients = {"n": 0}
    # a source that publishes nothing by itself is looked at on this tick
    poll_s = min_interval_s if not hasattr(source, "publish") else heartbeat_s

    async def stream(request: Request):
        last_version, sent_at, wrote_at = None, 0.0, time.monotonic()
        clients["n"] += 1  # counted here, so that the finally below always pairs with it
        try:
            yield b"retry: %d\n\n" % RETRY_MS
            while True:
                pub = source.latest()
                now = time.monotonic()
                if pub is not None and pub.version != last_version:
                    wait = sent_at + min_interval_s - now
                    if wait <= 0:
                        yield event_bytes(pub.version, pub.body)
                        last_version, sent_at = pub.version, now
                        wrote_at = now
                        continue
                    await asyncio.sleep(wait)
                    continue
                if now - wrote_at >= heartbeat_s:
                    yield b": keepalive\n\n"
                    wrote_at = now
                await wake.wait(min(poll_s, heartbeat_s - (now - wrote_at)) if heartbeat_s > 0 else poll_s)
        finally:
            clients["n"] -= 1

    @r.get("/api/events", summary="The status snapshot as Server-Sent Events (text/event-stream)",
           response_class=StreamingResponse,
           responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                            "description": "`retry:` once, then `id: N` + `data: <the /api/status JSON>` per "
                                           "new snapshot (at most once a second) and `: keepalive` comments"},
                      503: {"description": "too many clients"}})
    async def events(request: Request) -> StreamingResponse:
        if clients["n"] >= max_clients:
            raise HTTPException(503, f"too many event-stream clients ({max_clients}); poll /api/status instead")
        return StreamingResponse(stream(request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    r.sse_clients = clients  # type: ignore[attr-defined]  # for the status page's figures and tests
    return r
