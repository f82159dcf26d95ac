"""An open-loop HTTP load client for the status benchmarks: requests are sent on a fixed schedule
(rate per second, whatever the server answers), so a slow server is measured as slow, not as a
lower rate; latency is counted from the moment a request was due. Plus SSE clients that hold
`GET /api/events` open and count the events they receive.

Loopback only (bench/status_load.py points it at the API it started). Plain asyncio streams and
HTTP/1.1 keep-alive: no client library of its own costs in the measurement.

    python bench/load_client.py http://127.0.0.1:8080/api/status --rate 200 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    """(status, body bytes) of one HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    await reader.readexactly(length)
    return status, length


async def offered_load(url: str, rate: float, seconds: float, max_conns: int = 64) -> dict:
    """GET `url` `rate` times a second for `seconds`; each request on an idle keep-alive connection
    (a new one when all are busy, up to `max_conns`; beyond that it waits, and the wait counts)."""
    u = urlsplit(url)
    host, port, path = u.hostname, u.port or 80, (u.path or "/") + (f"?{u.query}" if u.query else "")
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n\r\n".encode()
    idle: asyncio.Queue = asyncio.Queue()
    opened = 0
    latencies: list[float] = []
    errors = 0
    sizes: list[int] = []
    sem = asyncio.Semaphore(max_conns)

    async def one(due: float) -> None:
        nonlocal opened, errors
        async with sem:
            try:
                conn = idle.get_nowait()
            except asyncio.QueueEmpty:
                conn = await asyncio.open_connection(host, port)
                opened += 1
            reader, writer = conn
            try:
                writer.write(request)
                status, size = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                writer.close()
                return
            latencies.append((time.perf_counter() - due) * 1000)
            sizes.append(size)
            if status != 200:
                errors += 1
            idle.put_nowait(conn)

    loop_t0 = time.perf_counter() + 0.05
    n = int(rate * seconds)
    tasks = []
    for i in range(n):
        due = loop_t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks, return_exceptions=True)
    wall = time.perf_counter() - loop_t0
    while not idle.empty():
        _r, w = idle.get_nowait()
        w.close()
    return {"offered_per_s": rate, "sent": n, "answered": len(latencies), "errors": errors,
            "answered_per_s": len(latencies) / wall if wall > 0 else 0.0, "latencies_ms": latencies,
            "connections": opened, "bytes": (sum(sizes) / len(sizes)) if sizes else 0}


async def sequential(url: str, count: int) -> list[float]:
    """One request at a time on one connection: the latency with no queueing."""
    u = urlsplit(url)
    host, port, path = u.hostname, u.port or 80, (u.path or "/") + (f"?{u.query}" if u.query else "")
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection(host, port)
    out = []
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            writer.write(request)
            await _read_response(reader)
            out.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.005)
    finally:
        writer.close()
    return out


async def sse_clients(url: str, clients: int, seconds: float) -> dict:
    """`clients` connections to an SSE endpoint held for `seconds`: events and comments received."""
    u = urlsplit(url)
    host, port, path = u.hostname, u.port or 80, u.path or "/"
    counts = {"events": 0, "heartbeats": 0, "failed": 0, "connected": 0}

    async def one() -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            counts["failed"] += 1
            return
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        end = time.monotonic() + seconds
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
                counts["failed"] += 1
                return
            counts["connected"] += 1
            while (left := end - time.monotonic()) > 0:
                try:
                    line = await asyncio.wait_for(reader.readline(), left)
                except asyncio.TimeoutError:
                    break
                if not line:
                    break
                # chunked encoding: a chunk-size line, then the SSE lines
                if line.startswith(b"data:"):
                    counts["events"] += 1
                elif line.startswith(b":"):
                    counts["heartbeats"] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            counts["failed"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(clients)))
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--sequential", type=int, default=0, help="first this many requests one at a time")
    ap.add_argument("--sse", help="SSE endpoint to hold open during the load")
    ap.add_argument("--sse-clients", type=int, default=50)
    args = ap.parse_args()

    async def run() -> dict:
        out = {}
        if args.sequential:
            out["sequential_ms"] = await sequential(args.url, args.sequential)
        jobs = [offered_load(args.url, args.rate, args.seconds)]
        if args.sse:
            jobs.append(sse_clients(args.sse, args.sse_clients, args.seconds + 1))
        res = await asyncio.gather(*jobs)
        out["load"] = res[0]
        if args.sse:
            out["sse"] = res[1]
        return out

    sys.stdout.write(json.dumps(asyncio.run(run())) + "\n")


if __name__ == "__main__":
    main()
