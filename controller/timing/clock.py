"""The clock the timing loop runs on: monotonic time to schedule by, wall time for records, and the
sleep that waits for the next turn.

`SystemClock` is the real one. Its members are time.monotonic, time.time and asyncio.sleep
themselves, not wrappers, so the loop (which binds them once) pays nothing on its hot path; on the
select()-based event loop that timing/process.py builds, asyncio.sleep waits to the microsecond.
Tests hand the loop a virtual clock instead (tests/virtual_line.py): its sleep moves time on at
once, so the real loop runs a whole shift in seconds and the same inputs give the same run.
"""

from __future__ import annotations

import asyncio
import os
import select
import time


class SystemClock:
    monotonic = staticmethod(time.monotonic)
    wall = staticmethod(time.time)
    sleep = staticmethod(asyncio.sleep)

    @staticmethod
    def wait_readable(conn, s: float) -> bool:
        """Wait up to `s` for `conn` to have something to read, without an event-loop turn (see
        TimingLoop._wait). Only the real clock has it; a virtual clock's sleep moves time instead."""
        return bool(select.select((conn,), (), (), s)[0])

    @staticmethod
    def request_realtime() -> str:
        """Ask for SCHED_FIFO (granted under systemd's CPUSchedulingPolicy or CAP_SYS_NICE): the
        clock's timers are only as good as the scheduler lets the process wake up on time."""
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(20))
            return "fifo"
        except (PermissionError, OSError, AttributeError):
            return "normal"
