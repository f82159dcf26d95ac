"""The page a line shows when its config file is refused at start: the line is not driven (no
timing process, no outputs), but the status page answers, with every problem and where it is
(`file:line: key.path: problem`), so that a technician sees what is wrong from the floor.

`GET /` is the page, `GET /api/status` the same as JSON (line state `faulted`), `/metrics` one gauge.
"""

from __future__ import annotations

import html
import re
import time

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, PlainTextResponse

_WHERE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<text>.*)$")


def parse_problem(problem: str) -> dict:
    """`file:line: text` -> {"file", "line", "text"} (line None when the problem names none)."""
    m = _WHERE.match(problem)
    if m:
        return {"file": m["file"], "line": int(m["line"]), "text": m["text"]}
    file, _, text = problem.partition(": ")
    return {"file": file if text else None, "line": None, "text": text or problem}


def refused_app(config: str, problems: list[str], started_wall: float | None = None) -> FastAPI:
    started_wall = time.time() if started_wall is None else started_wall
    reason = f"configuration refused: {problems[0] if problems else config}"
    app = FastAPI(title="sorter (configuration refused)")
    status = {
        "line": {"state": "faulted", "state_reason": reason, "name": None, "mode": "refused",
                 "state_since_wall": started_wall},
        "config_error": {"config": config, "problems": [parse_problem(p) for p in problems]},
        "alarms": [{"code": "config", "text": reason}],
    }

    @app.get("/api/status")
    def api_status() -> dict:
        return status

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return "# HELP sorter_config_refused 1 while the line config is refused\n" \
               "# TYPE sorter_config_refused gauge\nsorter_config_refused 1\n"

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(str(p['file'] or ''))}</code></td><td>{p['line'] or ''}</td>"
            f"<td>{html.escape(p['text'])}</td></tr>" for p in status["config_error"]["problems"])
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started_wall))
        return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="10"><title>sorter: configuration refused</title>
<style>body{{font-family:sans-serif;margin:2em;background:#200;color:#fee}}h1{{color:#f66}}
table{{border-collapse:collapse}}td,th{{border:1px solid #844;padding:.3em .6em;text-align:left}}</style></head>
<body><h1>FAULTED — the line is not running</h1>
<p>The configuration <code>{html.escape(config)}</code> was refused at start (since {since}).
No output is driven. Fix the file; the controller starts by itself once it is valid
(check with <code>sorter check-config {html.escape(config)}</code>).</p>
<table><tr><th>file</th><th>line</th><th>problem</th></tr>{rows}</table></body></html>"""

    return app
