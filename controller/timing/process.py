"""Entry of the timing process (spawned by the service): the timing loop on an event loop built on
select(), whose timers have microsecond resolution (epoll rounds waits up to whole milliseconds).

SIGTERM (from the service, or from Linux when the service died) ends the loop through its one
shutdown path, so the outputs go to their safe state; if the loop cannot get there within a few
seconds (a link that hangs), the alarm signal ends the process anyway: the PLC's heartbeat watchdog
then holds the line safe.
"""

from __future__ import annotations

import asyncio
import selectors
import signal
from multiprocessing.connection import Connection

from sorter.controller.config.line import Config
from sorter.controller.timing.gc_pauses import GcPauses
from sorter.controller.timing.loop import TimingLoop

SHUTDOWN_GRACE_S = 3


def timing_main(cfg: Config, conn: Connection, run_id: str, plc_url: str | None = None, routing=None,
                first_pid: int = 1, latch_baseline: int | None = None) -> None:
    """`routing`: the tables the service loaded, or why it has none (TimingLoop's `routing`)."""
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    asyncio.set_event_loop(loop)
    try:
        cls = TimingLoop
        if cfg.plc.mode == "plc_tracking":  # the PLC tracks parcels; the PC answers in a mailbox
            from sorter.controller.timing.mailbox import MailboxLoop as cls
        tl = cls(cfg, conn, run_id, plc_url, routing=routing, first_pid=first_pid, latch_baseline=latch_baseline)
        # everything start-up made (modules, tables, the loop) is frozen out of the collector's walks
        tl.gc_pauses = GcPauses()
        tl.gc_pauses.install()

        def on_term() -> None:
            tl.stop = True
            signal.alarm(SHUTDOWN_GRACE_S)  # default action of SIGALRM: the process ends

        loop.add_signal_handler(signal.SIGTERM, on_term)
        loop.run_until_complete(tl.run())
    finally:
        loop.close()
