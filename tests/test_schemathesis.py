"""schemathesis against the running controller: `sorter run` (its real API, over real HTTP) is asked
what its OpenAPI schema allows and what it does not, for every operation, with and without the
token. No answer is a 5xx, and none is larger than a bound: bad input gets a short 4xx.

Bounded: SORTER_FUZZ_EXAMPLES examples per operation (default 2); `bench/fuzz_api.py` runs longer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import schemathesis

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.conftest import _free_port, write_line_config
from tests.test_processes import alive, descendants, wait_for

TOKEN = "fuzz-token"
EXAMPLES = int(os.environ.get("SORTER_FUZZ_EXAMPLES", "2"))
MAX_BODY = 1 << 20   # no answer of this API to one request needs a megabyte


class RunningSorter:
    """`sorter run` on a line whose I/O nobody answers (the API serves all the same), in a
    process group of its own; stop() ends it and checks that no child is left."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = _free_port()
        cfg = write_line_config(folder / "config", overrides={"plc.url": f"tcp://127.0.0.1:{_free_port()}",
                                                              "cameras": []})
        self.log = open(folder / "sorter.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sorter", "run", "--config", str(cfg), "--port", str(self.port),
             "--host", "127.0.0.1"], stdout=self.log, stderr=subprocess.STDOUT, cwd=folder,
            start_new_session=True, env={**os.environ, "SORTER_API_TOKEN": TOKEN})
        self.url = f"http://127.0.0.1:{self.port}"
        self.kids: set[int] = set()

    def wait_ready(self, timeout: float = 120) -> None:
        def up():
            try:
                with urllib.request.urlopen(self.url + "/api/status", timeout=5) as r:
                    return json.loads(r.read())
            except OSError:
                return None
        wait_for(up, timeout, "the status page of sorter run")
        self.kids = descendants(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> list[int]:
        """End it (SIGTERM, then SIGKILL); the children still alive afterwards."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.log.close()
        end = time.monotonic() + 10
        while time.monotonic() < end and any(alive(k) for k in self.kids):
            time.sleep(0.1)
        return [k for k in self.kids if alive(k)]


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    app = RunningSorter(tmp_path_factory.mktemp("fuzz"))
    try:
        app.wait_ready()
        yield app
    finally:
        left = app.stop()
    assert not left, f"children left: {left}\n" + (app.folder / "sorter.log").read_text()[-3000:]


def fuzz(url: str, examples: int, mode: GenerationMode, token: str | None, strict: bool = True) -> list[dict]:
    """Every operation of the app's schema at `url`, `examples` cases each of `mode` (positive:
    what the schema allows; negative: what it does not), with or without the token. Per operation:
    cases, status codes seen, the largest answer and the failures (strict: the first is raised)."""
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    out = []
    for result in schema.get_all_operations():
        op = result.ok()
        row = {"operation": f"{op.method.upper()} {op.path}", "cases": 0, "codes": Counter(), "max_bytes": 0,
               "failures": []}
        out.append(row)
        try:
            strategy = op.as_strategy(generation_mode=mode)
        except Exception as exc:  # noqa: BLE001 - an operation whose schema cannot make cases of this mode
            row["skipped"] = f"{type(exc).__name__}: {exc}"[:200]
            continue

        @given(case=strategy)
        @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def one(case):
            response = case.call(base_url=url, headers=headers, timeout=30)
            row["cases"] += 1
            row["codes"][response.status_code] += 1
            row["max_bytes"] = max(row["max_bytes"], len(response.content))
            problem = answer_problem(case, response, token)
            if problem:
                row["failures"].append(problem)
                if strict:
                    raise AssertionError(problem)

        try:
            one()
        except Unsatisfiable:   # nothing of this mode to send (no parameters, no body)
            row["skipped"] = "no case of this kind"
    return out


def answer_problem(case, response, token: str | None) -> str | None:
    """What is wrong with an answer, or None: a 5xx, an answer past MAX_BODY, a long 4xx, a
    control POST done without the token."""
    path = case.operation.path
    where = f"{case.method} {case.formatted_path} -> {response.status_code}"
    if response.status_code >= 500:
        return f"{where}: {response.text[:300]}"
    if not (path == "/" or path.startswith("/static/")) and len(response.content) > MAX_BODY:
        return f"{where}: {len(response.content)} bytes"
    if 400 <= response.status_code < 500 and len(response.content) >= 2000:
        return f"{where}: a {len(response.content)}-byte error"
    if token is None and case.method.upper() == "POST" and response.status_code < 300 and path not in OPEN_POSTS:
        return f"{where}: a control POST done without the token"
    return None


# the POSTs anyone may make: logging in and out
OPEN_POSTS = {"/api/login", "/api/logout"}


# two of the four combinations in the test run (allowed input with the token reaches every handler;
# not allowed input without one tries the guard); bench/fuzz_api.py runs all four, longer
@pytest.mark.parametrize("mode, token", [(GenerationMode.POSITIVE, TOKEN), (GenerationMode.NEGATIVE, None)],
                         ids=["allowed, token", "not allowed, no token"])
def test_no_5xx_no_huge_answer_no_control_without_the_token(running, mode, token):
    rows = fuzz(running.url, EXAMPLES, mode, token)
    assert running.alive(), "sorter run died:\n" + (running.folder / "sorter.log").read_text()[-3000:]
    tried = [r for r in rows if r["cases"]]
    # every operation was asked something (cases it does not allow: those that take parameters)
    least = 0.8 if mode == GenerationMode.POSITIVE else 0.3
    assert len(rows) >= 20 and len(tried) >= least * len(rows), [(r["operation"], r.get("skipped")) for r in rows]
    if mode == GenerationMode.POSITIVE:   # the upload's body is described in the schema: it is fuzzed too
        upload = next(r for r in rows if r["operation"] == "POST /api/manifest")
        print("[fuzz] upload:", upload)
        assert upload["codes"].get(200, 0) >= 1 and not upload["failures"], upload   # rows reached the importer
