"""`sorter run` with a config file it refuses: drive nothing, serve the refusal page
(controller/api/refused.py) on the address the file asks for (or --host/--port), tell systemd
(READY, a STATUS saying why, watchdog pings), and once the file on disk is valid, start over as
the real controller (the same command, exec'd in place: same PID for systemd).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

import uvicorn

from sorter.controller.config.line import ApiConfig
from sorter.controller.config.load import ConfigError, load_config, read_yaml
from sorter.controller.service.notify import Notifier, watchdog_interval_s

log = logging.getLogger("sorter.run")
WATCH_S = 1.0


def api_address(config: Path, host: str | None, port: int | None) -> tuple[str, int]:
    """The file's `api:` section if that part of it is readable and valid, else the defaults."""
    api = ApiConfig()
    try:
        data, _ = read_yaml(config)
        if isinstance(data, dict) and isinstance(data.get("api"), dict):
            api = ApiConfig.model_validate(data["api"])
    except (ConfigError, ValueError):
        pass
    return host or api.host, port if port is not None else api.port


def _signature(path: Path):
    try:
        st = path.stat()
        return st.st_mtime_ns, st.st_size
    except OSError:
        return None


def serve_refused(config: str, exc: ConfigError, host: str | None, port: int | None) -> int:
    from sorter.controller.api.refused import refused_app
    path = Path(config).resolve()
    problems = list(exc.problems)
    log.error("%s: configuration refused; the line is not driven, the status page says why:\n%s",
              path, "\n".join(f"  {p}" for p in problems))
    host, port = api_address(path, host, port)
    server = uvicorn.Server(uvicorn.Config(refused_app(str(path), problems), host=host, port=port,
                                           log_level="critical", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    stop = threading.Event()
    while not server.started:
        if not thread.is_alive():
            sys.stderr.write(f"sorter run: the status page cannot listen on {host}:{port} (in use, or not an "
                             "address of this PC); set api.port in the config or pass --port\n")
            return 2
        stop.wait(0.02)
    bound = [s.getsockname()[1] for srv in server.servers for s in srv.sockets][:1] or [port]
    log.info("status page (configuration refused) on http://%s:%d/", host, bound[0])
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    notifier = Notifier()
    first = problems[0] if problems else str(path)
    notifier.ready(f"faulted: configuration refused, the line is not driven: {first}")
    ping_s = min(WATCH_S, (watchdog_interval_s() or 4 * WATCH_S) / 4)
    seen, repaired = _signature(path), False
    while not stop.wait(ping_s):
        if not thread.is_alive():
            log.error("the status page stopped")
            return 2
        notifier.watchdog()
        sig = _signature(path)
        if sig != seen:
            seen = sig
            try:
                load_config(path)
            except ConfigError as again:
                log.error("%s changed, still refused:\n%s", path, "\n".join(f"  {p}" for p in again.problems))
                continue
            repaired = True
            break
    server.should_exit = True
    thread.join(5)
    if not repaired:
        notifier.stopping()
        return 0
    log.info("%s is valid now: starting the line", path)
    notifier.status("configuration repaired: starting the line")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "sorter", *sys.argv[1:]])
    return 0  # not reached
