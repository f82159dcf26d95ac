"""Child processes of the service: spawned (never forked from a threaded process), and bound to
their parent's life.

Every child asks Linux to send it SIGTERM when its parent dies (PR_SET_PDEATHSIG), so a `kill -9`
of the service, or of `sorter sim`, leaves nothing behind: the timing process puts the outputs in
their safe state and ends, a camera worker removes its ring, the simulated line stops. `daemon=True`
only covers a normal exit. Ctrl-C is for the parent, which stops its children in order.

Note: Linux ties the death signal to the *thread* that started the child. The supervisor thread
restarts crashed children, so those get SIGTERM when it ends, which is at shutdown anyway.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import signal

from sorter import logs

CTX = mp.get_context("spawn")
PR_SET_PDEATHSIG = 1
log = logging.getLogger("sorter.processes")


def spawn(name: str, target, *args, **kwargs) -> mp.Process:
    """Start `target(*args, **kwargs)` in a new process named `name`, bound to this one's life."""
    p = CTX.Process(target=_child_main, name=name, daemon=True,
                    args=(os.getpid(), logs.level(), name, target, args, kwargs))
    p.start()
    return p


def die_with_parent(parent_pid: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d)", ctypes.get_errno())
    except (OSError, AttributeError):  # not Linux: the parent's pipes still end the child's loops
        return
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _child_main(parent_pid: int, level: str, name: str, target, args, kwargs) -> None:
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.setup(level, name.removeprefix("sorter-"))
    target(*args, **kwargs)


def stop_process(p: mp.Process, timeout: float, what: str) -> None:
    """Wait for `p` to end by itself, then SIGTERM, then SIGKILL: it is gone when this returns."""
    p.join(timeout)
    if p.is_alive():
        log.warning("%s did not stop within %.0f s; terminating it", what, timeout)
        p.terminate()
        p.join(3)
    if p.is_alive():
        log.error("%s ignored SIGTERM; killing it", what)
        p.kill()
        p.join(2)
