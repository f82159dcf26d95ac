"""A pre-allocated ring of frame slots in shared memory.

The camera worker's capture thread writes each frame straight into a slot (the simulated camera's
socket ``recv_into`` the slot, OpenCV converts into it), the decoder reads it in place, and the
slots keep the last few seconds of frames for the no-read images, so a frame is never copied on
its way. Other processes (the API's ``last.jpg``) attach to the ring by name and copy one frame out
under a sequence check (a slot overwritten during the copy is detected and skipped).

Layout: a 64-byte global header (magic, n_slots, slot_bytes, last decoded slot, its seq) then
``n_slots`` 32-byte slot headers (seq, capture_mono, height, width), then a 4 KB note of the last
decoded frame (its seq, then what the decoder read in it, as the worker writes it: JSON), then the
slots.
"""

from __future__ import annotations

import struct
import threading
from collections import deque
from multiprocessing import shared_memory

import numpy as np

_G = struct.Struct("<8sIIqq")  # magic, n_slots, slot_bytes, last_slot, last_seq
_S = struct.Struct("<qdII")  # seq, t_cap, h, w
_N = struct.Struct("<qI")  # the note: seq of the frame it is about, length
_GSIZE, _SSIZE, _NSIZE = 64, 32, 4096
MAGIC = b"SRTRING2"
_OWNED: set[str] = set()  # rings this process created (and so registered with its resource tracker)


class FrameRing:
    """Owner side (the worker). ``queue_depth`` bounds the frames waiting to be decoded: when the
    decoder is behind, the oldest waiting frame is dropped and counted, the camera never waits."""

    def __init__(self, name: str, slot_bytes: int, n_slots: int, queue_depth: int = 4):
        self.n, self.slot_bytes = n_slots, slot_bytes
        size = _GSIZE + _SSIZE * n_slots + _NSIZE + slot_bytes * n_slots
        self.shm = shared_memory.SharedMemory(name=name, create=True, size=size)
        self.name = self.shm.name
        _OWNED.add(self.name)
        self.buf = self.shm.buf
        _G.pack_into(self.buf, 0, MAGIC, n_slots, slot_bytes, -1, 0)
        for i in range(n_slots):
            _S.pack_into(self.buf, _GSIZE + _SSIZE * i, 0, 0.0, 0, 0)
        _N.pack_into(self.buf, _GSIZE + _SSIZE * n_slots, 0, 0)
        self.seq = 0
        self.next = 0
        self.meta: list[tuple[int, float, int, int]] = [(0, 0.0, 0, 0)] * n_slots
        self.waiting: deque[int] = deque()
        self.queue_depth = queue_depth
        self.busy: int | None = None  # being decoded
        self.writing: int | None = None
        self.dropped = 0
        self.cond = threading.Condition()

    def _view(self, i: int, h: int, w: int) -> np.ndarray:
        off = _GSIZE + _SSIZE * self.n + _NSIZE + i * self.slot_bytes
        return np.ndarray((h, w), np.uint8, self.buf, off)

    # capture thread -----------------------------------------------------------------------
    def alloc(self, h: int, w: int) -> np.ndarray:
        """A slot to write the next frame into (call :meth:`commit` after)."""
        if h * w > self.slot_bytes:
            raise ValueError(f"frame {w}x{h} does not fit a ring slot of {self.slot_bytes} bytes")
        with self.cond:
            i = self.next
            if i == self.busy:
                i = (i + 1) % self.n
            self.next = (i + 1) % self.n
            if i in self.waiting:  # overwriting a frame nobody decoded
                self.waiting.remove(i)
                self.dropped += 1
            self.writing = i
            self.seq += 1
            self.meta[i] = (-self.seq, 0.0, h, w)  # negative: being written
            _S.pack_into(self.buf, _GSIZE + _SSIZE * i, -self.seq, 0.0, h, w)
        return self._view(i, h, w)

    def commit(self, t_cap: float) -> None:
        with self.cond:
            i = self.writing
            self.writing = None
            seq, _, h, w = self.meta[i]
            self.meta[i] = (-seq, t_cap, h, w)
            _S.pack_into(self.buf, _GSIZE + _SSIZE * i, -seq, t_cap, h, w)
            self.waiting.append(i)
            while len(self.waiting) > self.queue_depth:
                self.waiting.popleft()
                self.dropped += 1
            self.cond.notify()

    def abort(self) -> None:
        with self.cond:
            if self.writing is not None:
                self.meta[self.writing] = (0, 0.0, 0, 0)
                _S.pack_into(self.buf, _GSIZE + _SSIZE * self.writing, 0, 0.0, 0, 0)
                self.writing = None

    # decoder ------------------------------------------------------------------------------
    def take(self, timeout: float) -> tuple[int, float, np.ndarray] | None:
        """The oldest waiting frame (slot, capture_mono, view), held until :meth:`release`."""
        with self.cond:
            if not self.waiting and not self.cond.wait_for(lambda: bool(self.waiting), timeout):
                return None
            i = self.waiting.popleft()
            self.busy = i
            _, t, h, w = self.meta[i]
            return i, t, self._view(i, h, w)

    def release(self, i: int, decoded: bool = True, note: bytes = b"") -> None:
        """The decoder is done with slot `i`; `decoded`: it is now the last decoded frame, `note` what
        was read in it (dropped when over the note's 4 KB: a reader then sees no note)."""
        with self.cond:
            self.busy = None
            if decoded:
                seq = self.meta[i][0]
                if len(note) > _NSIZE - _N.size:
                    note = b""
                off = _GSIZE + _SSIZE * self.n
                self.buf[off + _N.size:off + _N.size + len(note)] = note
                _N.pack_into(self.buf, off, seq, len(note))
                _G.pack_into(self.buf, 0, MAGIC, self.n, self.slot_bytes, i, seq)

    def pending(self) -> bool:
        with self.cond:
            return bool(self.waiting) or self.writing is not None

    def frames_between(self, lo: float, hi: float) -> list[tuple[float, np.ndarray]]:
        """Copies of the frames still in the ring captured in [lo, hi], oldest first."""
        with self.cond:
            out = [(t, self._view(i, h, w).copy()) for i, (seq, t, h, w) in enumerate(self.meta)
                   if seq > 0 and lo <= t <= hi and i != self.writing]
        return sorted(out, key=lambda x: x[0])

    def close(self) -> None:
        try:
            self.buf = None
            self.shm.close()
            self.shm.unlink()
        except (FileNotFoundError, BufferError, OSError):
            pass


def read_latest(name: str) -> tuple[float, np.ndarray] | None:
    """From another process: a copy of the last decoded frame of the ring ``name``, or None."""
    got = read_latest_noted(name)
    return None if got is None else got[:2]


def read_latest_noted(name: str) -> tuple[float, np.ndarray, bytes | None] | None:
    """As read_latest, with the decoder's note about that frame (None: none, or it was
    overwritten by the next frame's while copying)."""
    try:
        shm = shared_memory.SharedMemory(name=name, create=False)
    except (FileNotFoundError, OSError, ValueError):
        return None
    try:
        # Python < 3.13 registers an attached segment with the resource tracker, which would unlink
        # it when this process exits: it is the worker's, not ours. A ring this process owns keeps
        # its one registration (a second unregister makes the tracker print a KeyError at exit)
        if shm._name.lstrip("/") not in {n.lstrip("/") for n in _OWNED}:  # type: ignore[attr-defined]
            from multiprocessing import resource_tracker
            resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        pass
    try:
        magic, n, slot_bytes, last, seq = _G.unpack_from(shm.buf, 0)
        if magic != MAGIC or last < 0 or last >= n:
            return None
        s_seq, t, h, w = _S.unpack_from(shm.buf, _GSIZE + _SSIZE * last)
        if s_seq != seq or h * w > slot_bytes or h * w == 0:
            return None
        off = _GSIZE + _SSIZE * n + _NSIZE + last * slot_bytes
        img = np.ndarray((h, w), np.uint8, shm.buf, off).copy()
        noff = _GSIZE + _SSIZE * n
        n_seq, n_len = _N.unpack_from(shm.buf, noff)
        note = bytes(shm.buf[noff + _N.size:noff + _N.size + min(n_len, _NSIZE - _N.size)])
        if _S.unpack_from(shm.buf, _GSIZE + _SSIZE * last)[0] != seq:
            return None  # overwritten while copying
        if n_seq != seq or _N.unpack_from(shm.buf, noff)[0] != seq:
            note = None  # about another frame, or rewritten while copying
        return t, img, note
    finally:
        shm.close()
