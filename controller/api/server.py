"""The API and status page served by uvicorn in a thread of the service process."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn

from sorter.controller.api.app import create_app
from sorter.controller.api.guard import BodyLimits
from sorter.controller.config.line import BodyLimitsConfig

log = logging.getLogger("sorter.web")


def body_limits(cfg: BodyLimitsConfig) -> BodyLimits:
    """The guard's limits from the line config's api.body_limits (its kinds of endpoint by path)."""
    return BodyLimits(default=cfg.default_kb << 10, by_path={"/api/manifest": cfg.manifest_mb << 20})


class ApiServer:
    def __init__(self, svc, host: str, port: int):
        from sorter.controller.api import routing as api_routing
        from sorter.controller.api import plc as api_plc
        from sorter.controller.api import vision as api_vision
        from sorter.controller.api import commission as api_commission
        routers = [r for r in (m.router(svc) for m in (api_routing, api_vision, api_plc, api_commission)) if r is not None]
        app = create_app(svc.status, svc.store, control=svc, token=svc.token, routers=routers,
                         published=getattr(svc, "published", None), body_limits=body_limits(svc.cfg.api.body_limits))
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                                    access_log=False, lifespan="off",
                                                    # uvloop and httptools (dependencies) when installed,
                                                    # else asyncio and h11: the loop is this thread's
                                                    # own, the process's other loops stay asyncio's
                                                    loop="auto", http="auto",
                                                    # event streams never end by themselves: a stop
                                                    # waits this long for them, then cuts them
                                                    timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, name="api", daemon=True)
        self.host = host

    def start(self, timeout: float = 10) -> None:
        self.thread.start()
        end = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > end:
                raise RuntimeError("the API server did not start (is the port in use?)")
            time.sleep(0.02)
        for s in self.server.servers:
            for sock in s.sockets:
                h, p = sock.getsockname()[:2]
                self.port = p
                log.info("status page on http://%s:%d/", self.host, p)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)
