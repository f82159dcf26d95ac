"""GET /api/io and /api/io/timing from the timing process's status."""

from fastapi import FastAPI
from fastapi.testclient import TestClient

from sorter.controller.api.plc import router


class Svc:
    timing_status = {"plc": {"url": "tcp://x:502", "connected": True}, "outputs_on": ["D1_left"], "alarms": [],
                     "io": {"mode": "direct", "inputs": {"pe_induct": 1, "encoder": 5}, "safe_reason": None,
                            "fire_hist": {"edges_ms": [0.0], "counts": [3, 4], "n": 7}}}


def test_io_endpoints():
    app = FastAPI()
    app.include_router(router(Svc()))
    c = TestClient(app)
    body = c.get("/api/io").json()
    assert body["plc"]["connected"] and body["inputs"]["pe_induct"] == 1 and body["outputs_on"] == ["D1_left"]
    assert c.get("/api/io/timing").json()["n"] == 7
    Svc.timing_status = {}
    assert c.get("/api/io").json()["plc"]["connected"] is False
