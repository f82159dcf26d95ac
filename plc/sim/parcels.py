"""The simulated line's parcel plan: every parcel's size, timing and label, derived from the seed.

The plan is a pure function of (sim config, line config, seed, index), so the line process (which
moves parcels and answers Modbus) and the frame process (which renders what the camera sees) compute
the same parcels independently and need not talk to each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sorter.controller.config.line import Config
from sorter.plc.sim.waybills import CARRIER_CODES, CARRIER_WEIGHTS, make_ean13, make_waybill


@dataclass(frozen=True)
class PlannedParcel:
    index: int
    head_s: float          # when the head crosses the induct photo-eye, seconds after the run's start
    length_mm: float
    width_mm: float
    carrier: str
    waybill: str
    town: str
    in_manifest: bool
    qr_text: str | None
    ean13: str | None
    stale_waybill: str | None
    damaged: bool
    missing: bool
    face_down: bool
    label_seed: int
    extras: dict = field(default_factory=dict)

    @property
    def waybill_visible(self) -> bool:
        """A camera can read the waybill: its barcode is intact, or the QR code carries it."""
        if self.missing or self.face_down:
            return False
        return not self.damaged or (self.qr_text is not None and self.waybill in self.qr_text)

    @property
    def expected_outcome(self) -> str:
        if not self.waybill_visible:
            return "no_read"
        if self.stale_waybill is not None:
            return "multi_read"
        if not self.in_manifest:
            return "no_route"
        return "sorted"


class ParcelPlan:
    """Deterministic stream of parcels for one run."""

    def __init__(self, cfg: Config, seed: int, rate_pph: float | None = None,
                 length_mm: tuple[float, float] | None = None, belt_speed_mps: float | None = None,
                 keep: int | None = None):
        self.sim = cfg.sim
        self.seed = seed
        self.rate_pph = rate_pph or cfg.sim.rate_pph
        self.length_mm = length_mm or cfg.sim.length_mm
        self.speed_mm_s = (belt_speed_mps or cfg.line.belt_speed_mps) * 1000.0
        # the towns of the truth table (advice.py), or without one the towns the chutes are named after
        self.towns = list(cfg.sim.towns) or list(dict.fromkeys(d.town for d in cfg.sim.destinations)) or \
            [c.name for c in cfg.line.chutes if c.diverter and c.id != cfg.line.manual_chute]
        share = np.array(CARRIER_WEIGHTS, dtype=float)
        self.carriers, self.share = list(CARRIER_CODES), share / share.sum()
        mean_len = sum(self.length_mm) / 2
        pitch_mm = self.speed_mm_s * 3600.0 / self.rate_pph
        self.mean_extra_gap = max(0.0, pitch_mm - mean_len - self.sim.min_gap_mm)
        self.achievable_pph = self.speed_mm_s * 3600.0 / (mean_len + self.sim.min_gap_mm)
        self._cache: dict[int, PlannedParcel] = {}
        self._next = 0  # parcels are made in order: the gaps are drawn one after another
        self.keep = keep  # an endless run keeps only the newest parcels in memory
        self._gap_rng = np.random.default_rng([seed, 1])

    def _make(self, index: int, head_s: float, length: float) -> PlannedParcel:
        rng = np.random.default_rng([self.seed, 2, index])
        s = self.sim
        carrier = str(rng.choice(self.carriers, p=self.share))
        waybill = make_waybill(carrier, rng)
        town = str(self.towns[int(rng.integers(len(self.towns)))])
        stale = None
        if rng.random() < s.p_stale_waybill:
            stale = make_waybill(str(rng.choice(self.carriers, p=self.share)), rng)
        qr = None
        if rng.random() < s.p_qr:
            # e-waybill QR codes carry the waybill and, often, Chinese text
            qr = f"{waybill}|{town}|{carrier}"
        return PlannedParcel(
            index=index, head_s=head_s, length_mm=length,
            width_mm=float(rng.uniform(*s.width_mm)), carrier=carrier, waybill=waybill, town=town,
            in_manifest=rng.random() >= s.p_unknown_waybill, qr_text=qr,
            ean13=make_ean13(rng) if rng.random() < s.p_ean13 else None, stale_waybill=stale,
            damaged=rng.random() < s.p_damaged, missing=rng.random() < s.p_missing_label,
            face_down=rng.random() < s.p_face_down, label_seed=int(rng.integers(2**31)),
        )

    def get(self, index: int) -> PlannedParcel:
        if index < self._next and index not in self._cache:
            raise IndexError(f"parcel {index} is no longer kept (keep={self.keep})")
        while self._next <= index:
            i = self._next
            length = float(self._gap_rng.uniform(*self.length_mm))
            if i == 0:
                head_s = 1.0
            else:
                prev = self._cache[i - 1]
                gap = self.sim.min_gap_mm + float(self._gap_rng.exponential(self.mean_extra_gap or 1e-9))
                head_s = prev.head_s + (prev.length_mm + gap) / self.speed_mm_s
            self._cache[i] = self._make(i, head_s, length)
            self._next += 1
            if self.keep is not None:
                self._cache.pop(i - self.keep, None)
        return self._cache[index]


def ideal_time_s(parcel: PlannedParcel, at_mm: float, induct_mm: float, speed_mm_s: float,
                 point: str = "head") -> float:
    """When a point of the parcel (head, centre, tail) is at belt position `at_mm` (run seconds)."""
    offset = {"head": 0.0, "centre": parcel.length_mm / 2, "tail": parcel.length_mm}[point]
    return parcel.head_s + (at_mm - induct_mm + offset) / speed_mm_s

