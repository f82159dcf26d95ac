"""The whole system on the simulated line under a test's or a benchmark's control: the same wiring
as `sorter sim` (`sorter.controller.app`), plus the records as they arrive and the simulated line's
fault drills: pull the line's plug (`outage`), hold an input (`force`), read the truth.
"""

from __future__ import annotations

import threading
import time

from sorter.controller.app import App, SimWorld
from sorter.controller.config.line import Config


class SimHarness:
    def __init__(self, cfg: Config, parcels: int, seed: int = 1, api: tuple[str, int] | None = None,
                 keep_records: bool = True):
        """`keep_records=False` only counts the records as they arrive (`n_records`): a soak that
        measures the service's memory must not hold a copy of every record in the same process."""
        self.sim = SimWorld(cfg, seed, parcels)
        self.cfg, self.n, self.seed = self.sim.cfg, parcels, seed
        self.records: list[dict] = []
        self.keep_records, self.n_records = keep_records, 0
        self.lock = threading.Lock()
        self.app = App(self.cfg, mode="sim", sim=self.sim, api=api, record_hook=self._on_record)
        self.t0: float | None = None

    @property
    def svc(self):
        return self.app.svc

    def start(self, ready_timeout: float = 60) -> None:
        self.app.start()
        self.app.wait_ready(ready_timeout)
        self.sim.go()
        self.t0 = self.sim.t0

    def _on_record(self, rec: dict) -> None:
        with self.lock:
            self.n_records += 1
            if self.keep_records:
                self.records.append(rec)

    def outage(self, seconds: float) -> None:
        self.sim.outage(seconds)

    def force(self, name: str, value: int | None) -> None:
        self.sim.force(name, value)

    def by_hand(self, take_off: int | None = None, put_on_mm: float | None = None, length_mm: float = 300.0):
        return self.sim.by_hand(take_off, put_on_mm, length_mm)

    def truth(self) -> dict:
        return self.sim.truth()

    def run_until_done(self, timeout: float) -> dict:
        """Wait until every planned parcel has entered (or been held back, or waits on an infeed that
        stands still), landed and been recorded. Parcels waiting count only while induction is off:
        one that waits because the belt is still busy catching up enters on its own."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            time.sleep(0.25)
            tr = self.truth()
            waiting = tr["waiting"] if tr.get("infeed_stops") and tr["infeed_stops"][-1][1] is None else 0
            if tr["inducted"] + tr["held"] + waiting >= self.n and tr["landed"] >= tr["inducted"] and \
                    self.n_records >= tr["inducted"]:
                time.sleep(0.5)
                return self.truth()
        return self.truth()

    def stop(self) -> None:
        self.app.stop()
