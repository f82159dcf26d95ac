"""Declarative scenarios (tests/scenarios/*.yaml), one behaviour each, run on the real timing loop
against the simulated line on a virtual clock (tests/virtual_line.py), as Klipper runs its host on
recorded inputs. A scenario file holds:

    description: what behaviour it pins down, and why
    base: wenling-line1.yaml            # optional: the example config to start from
    config: {line.belt_speed_mps: 2.5}  # dotted keys onto it (tests/conftest.py)
    parcels: {plan: {n: 200, seed: 3}}  # or {seed: 1, list: [{town: 城西街道, label: missing}, ...]}
    run: {decode_latency_ms: 30, rtt_ms: 0.3, reads: true, start_s: 0}
    events: [{at_s: 4.0, link_down_s: 1.5}, ...]          # run seconds: the first parcel is at 1.0
    expect: {...}                                          # below
    xfail: why                                             # a known defect: must fail (strict)

Events: link_down_s, link_drop_quietly_s, slow_link_ms (one way, + for_s), no_answer (+ applied), refuse (+ for_s), stall_ms, chute_full (+ for_s),
disable_chute, enable_chute, pause (true/false), estop_s, reset (the e-stop reset from the page/API),
force ({signal: value} + for_s), take_off (a parcel index lifted off the belt by hand),
put_on ({at_mm:, length_mm:}: a parcel put on by hand after the induct eye),
jam (a diverter output that no longer acts, + for_s).

Expect, all optional: outcomes ({outcome: N or {min:, max:}} over all records); as_planned (each
parcel's outcome is its plan's: sorted, no_read, multi_read, no_route); all_sortable_sorted;
parcels ({index: check}); groups ([{where: {...}, check...}]); loop ({loop attribute, link pace
attribute (controller/timing/link_pace.py) or tracker counter: N}); alarms_seen, alarms_not_seen, alarms_at_end; coils ([{signal, between: [from_s,
to_s], value}]: the output as the device had it); read_back ([signal]); fire_error_ms_max.
A check: outcome (one or a list), reason (a part of it), chute (the record's), landed (where the
physics put it), count, outcomes, as_planned. where: index (n, [...] or "a-b"), town, expected
(the plan's outcome), inducted ([from_s, to_s]), in_flight_at (s), landed (chute), landed_s.

Whatever a scenario expects, the invariants are checked too (check_invariants): nothing in a wrong
chute, one record per parcel, a reason for every reject, sorted records true to the physics.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sorter.messages import ResetLine, SetPaused
from sorter.plc.sim.parcels import ParcelPlan
from tests.conftest import load_line_config
from tests.virtual_line import ListPlan, ParcelTruth, Run, VirtualLine, check_invariants

HERE = Path(__file__).parent / "scenarios"
TOP_KEYS = {"description", "base", "config", "parcels", "run", "events", "expect", "xfail"}
RUN_KEYS = {"decode_latency_ms", "rtt_ms", "reads", "cameras_report", "start_s", "idle_every_ms"}
EVENT_KEYS = {"at_s", "link_down_s", "link_drop_quietly_s", "slow_link_ms", "no_answer", "applied", "refuse", "for_s", "stall_ms", "chute_full",
              "disable_chute", "enable_chute", "pause", "estop_s", "reset", "force", "jam", "take_off", "put_on"}
EXPECT_KEYS = {"outcomes", "as_planned", "all_sortable_sorted", "parcels", "groups", "loop", "alarms_seen",
               "alarms_not_seen", "alarms_at_end", "coils", "read_back", "fire_error_ms_max"}
WHERE_KEYS = {"index", "town", "expected", "inducted", "in_flight_at", "landed", "landed_s"}
CHECK_KEYS = {"outcome", "reason", "chute", "landed", "count", "outcomes", "as_planned"}


class ScenarioError(Exception):
    pass


def _refuse_unknown(where: str, got: dict, allowed: set[str]) -> None:
    unknown = set(got) - allowed
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(allowed))})")


def load(path: Path) -> dict:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    _refuse_unknown(str(path), spec, TOP_KEYS)
    if not spec.get("description"):
        raise ScenarioError(f"{path}: description: say what behaviour this pins down")
    _refuse_unknown(f"{path}: run", spec.get("run") or {}, RUN_KEYS)
    for i, ev in enumerate(spec.get("events") or []):
        _refuse_unknown(f"{path}: events.{i}", ev, EVENT_KEYS)
        if "at_s" not in ev:
            raise ScenarioError(f"{path}: events.{i}: at_s missing")
    _refuse_unknown(f"{path}: expect", spec.get("expect") or {}, EXPECT_KEYS)
    for i, g in enumerate((spec.get("expect") or {}).get("groups") or []):
        _refuse_unknown(f"{path}: expect.groups.{i}", g, CHECK_KEYS | {"where"})
        _refuse_unknown(f"{path}: expect.groups.{i}.where", g.get("where") or {}, WHERE_KEYS)
    for i, c in ((spec.get("expect") or {}).get("parcels") or {}).items():
        _refuse_unknown(f"{path}: expect.parcels.{i}", c, CHECK_KEYS - {"count", "outcomes"})
    return spec


# ------------------------------------------------------------------------------------ building
def build(spec: dict, cfg) -> VirtualLine:
    ps = spec["parcels"]
    seed = int(ps.get("seed", (ps.get("plan") or {}).get("seed", 1)))
    if "list" in ps:
        plan = ListPlan(cfg, seed, ps["list"])
        n = len(plan)
    else:
        plan, n = ParcelPlan(cfg, seed), int(ps["plan"]["n"])
    r = spec.get("run") or {}
    line = VirtualLine(cfg, plan, n, seed, decode_latency_s=r.get("decode_latency_ms", 30) / 1000,
                       rtt_s=r.get("rtt_ms", 0.3) / 1000, reads=r.get("reads", True),
                       cameras_report=r.get("cameras_report", True), start_s=r.get("start_s", 0.0),
                       idle_every_s=r.get("idle_every_ms", 50) / 1000)
    for ev in spec.get("events") or []:
        line.at(float(ev["at_s"]), lambda ev=ev: apply_event(line, ev))
    return line


def apply_event(line: VirtualLine, ev: dict) -> None:
    io, for_s = line.io, ev.get("for_s")

    def later(fn):
        if for_s is not None:
            line.at(line.now_s + float(for_s), fn)

    if "link_down_s" in ev:
        io.link_down(float(ev["link_down_s"]))
    if "link_drop_quietly_s" in ev:
        io.drop_quietly(float(ev["link_drop_quietly_s"]))
    if "slow_link_ms" in ev:
        if for_s is None:
            raise ScenarioError("slow_link_ms: say for how long (for_s)")
        io.slow(float(ev["slow_link_ms"]) / 1000, float(for_s))
    if "no_answer" in ev:
        io.no_answer[ev["no_answer"]] = bool(ev.get("applied", True))
    if "refuse" in ev:
        sigs = [ev["refuse"]] if isinstance(ev["refuse"], str) else list(ev["refuse"])
        io.refuse.update(sigs)
        later(lambda: io.refuse.difference_update(sigs))
    if "stall_ms" in ev:
        io.stall_s = float(ev["stall_ms"]) / 1000
    if "chute_full" in ev:
        line.chute_full(ev["chute_full"], None if for_s is None else float(for_s))
    if "disable_chute" in ev:
        line.set_chute_enabled(ev["disable_chute"], False)
    if "enable_chute" in ev:
        line.set_chute_enabled(ev["enable_chute"], True)
    if "pause" in ev:
        line.send(SetPaused(bool(ev["pause"])))
    if ev.get("reset"):
        line.send(ResetLine("a scenario"))
    if "take_off" in ev:
        if not line.physics.take_off(int(ev["take_off"]), line.clock.t):
            raise ScenarioError(f"take_off: parcel {ev['take_off']} is not on the belt at {ev['at_s']} s")
    if "put_on" in ev:
        line.extras.append(line.physics.put_on(line.clock.t, float(ev["put_on"]["at_mm"]),
                                               float(ev["put_on"].get("length_mm", 300))))
    if "estop_s" in ev:
        sig = line.cfg.plc.estop_signal
        if sig is None:
            raise ScenarioError("estop_s: the config maps no plc.estop_signal")
        line.force(sig, 0)  # the e-stop circuit opens (the signal is wired fail-safe: 1 = healthy)
        line.at(line.now_s + float(ev["estop_s"]), lambda: line.force(sig, None))
    if "jam" in ev:
        line.jam(ev["jam"], None if for_s is None else float(for_s))
    if "force" in ev:
        for sig, value in ev["force"].items():
            line.force(sig, int(value))
            later(lambda sig=sig: line.force(sig, None))


# ------------------------------------------------------------------------------------ checking
def count_ok(spec, n: int) -> bool:
    if isinstance(spec, dict):
        return spec.get("min", n) <= n <= spec.get("max", n)
    return n == int(spec)


def select(run: Run, where: dict) -> list[ParcelTruth]:
    plan = run.line.plan
    out = []
    for p in run.parcels:
        if "index" in where:
            want = where["index"]
            if isinstance(want, str) and "-" in want:
                lo, hi = (int(x) for x in want.split("-"))
                if not lo <= p.index <= hi:
                    continue
            elif p.index not in (want if isinstance(want, list) else [int(want)]):
                continue
        if "town" in where and plan.get(p.index).town != where["town"]:
            continue
        if "expected" in where and p.expected != where["expected"]:
            continue
        if "inducted" in where:
            lo, hi = where["inducted"]
            if not lo <= p.head_s <= hi:
                continue
        if "in_flight_at" in where and not (p.head_s <= where["in_flight_at"] < (p.landed_s or float("inf"))):
            continue
        if "landed" in where and p.landed != where["landed"]:
            continue
        if "landed_s" in where:
            lo, hi = where["landed_s"]
            if p.landed_s is None or not lo <= p.landed_s <= hi:
                continue
        out.append(p)
    return out


def check_parcels(what: str, parcels: list[ParcelTruth], c: dict) -> None:
    if "count" in c:
        assert count_ok(c["count"], len(parcels)), f"{what}: {len(parcels)} parcels, expected {c['count']}"
    if "outcomes" in c:
        got = {}
        for p in parcels:
            got[p.record["outcome"]] = got.get(p.record["outcome"], 0) + 1
        for outcome, n in c["outcomes"].items():
            assert count_ok(n, got.get(outcome, 0)), f"{what}: {got.get(outcome, 0)} {outcome}, expected {n} ({got})"
    for p in parcels:
        r = p.record
        where = f"{what}: parcel {p.index} ({r['outcome']}: {r['reason']!r}, chute {r['chute']}, landed {p.landed})"
        if c.get("as_planned"):
            assert r["outcome"] == p.expected, f"{where}: expected {p.expected}, as planned"
            assert r["outcome"] != "sorted" or p.landed in p.want, f"{where}: expected it in {p.want}"
        if "outcome" in c:
            allowed = c["outcome"] if isinstance(c["outcome"], list) else [c["outcome"]]
            assert r["outcome"] in allowed, f"{where}: expected {c['outcome']}"
        if "reason" in c:
            assert c["reason"] in r["reason"], f"{where}: expected a reason with {c['reason']!r}"
        if "chute" in c:
            assert r["chute"] == c["chute"], f"{where}: expected chute {c['chute']}"
        if "landed" in c:
            assert p.landed == c["landed"], f"{where}: expected it to land in {c['landed']}"


def coil_at(run: Run, signal: str, t_s: float) -> int:
    """The coil's state at run second t_s, as the device saw the writes arrive."""
    value = 0
    for t, sig, v in run.line.io.writes:
        if sig == signal and t - run.line.t0 <= t_s:
            value = v
    return value


def check(spec: dict, run: Run) -> None:
    e = spec.get("expect") or {}
    outcomes = run.outcomes()
    for outcome, n in (e.get("outcomes") or {}).items():
        assert count_ok(n, outcomes.get(outcome, 0)), f"{outcomes.get(outcome, 0)} {outcome}, expected {n} ({dict(outcomes)})"
    if e.get("as_planned"):
        for p in run.parcels:
            assert p.record["outcome"] == p.expected, (p.index, p.expected, p.record["outcome"], p.record["reason"])
    if e.get("all_sortable_sorted"):
        for p in run.sortable():
            assert p.record["outcome"] == "sorted" and p.landed in p.want, \
                (p.index, p.want, p.landed, p.record["outcome"], p.record["reason"])
    by_index = {p.index: p for p in run.parcels}
    for i, c in (e.get("parcels") or {}).items():
        assert int(i) in by_index, f"parcel {i} never entered the line"
        check_parcels("expect.parcels", [by_index[int(i)]], c)
    for k, g in enumerate(e.get("groups") or []):
        check_parcels(f"expect.groups.{k} {g.get('where')}", select(run, g.get("where") or {}), g)
    for name, n in (e.get("loop") or {}).items():
        pace = getattr(run.loop, "pace", None)
        got = (getattr(run.loop, name) if hasattr(run.loop, name) else getattr(pace, name) if hasattr(pace, name)
               else run.tracker.counters.get(name, 0))
        assert count_ok(n, got), f"loop {name} = {got}, expected {n}"
    for a in e.get("alarms_seen") or []:
        assert a in run.alarms_seen, f"alarm {a} never raised (seen: {sorted(run.alarms_seen)})"
    for a in e.get("alarms_not_seen") or []:
        assert a not in run.alarms_seen, f"alarm {a} raised"
    if "alarms_at_end" in e:
        active = {a["id"] for a in run.loop.alarms.list()}
        assert active == set(e["alarms_at_end"]), f"alarms at the end: {sorted(active)}"
    for c in e.get("coils") or []:
        lo, hi = c["between"]
        times = [lo] + [t - run.line.t0 for t, sig, _ in run.line.io.writes
                        if sig == c["signal"] and lo <= t - run.line.t0 <= hi]
        states = {coil_at(run, c["signal"], t) for t in times}
        assert states == {int(c["value"])}, f"{c['signal']} was {sorted(states)} in {lo}..{hi} s, expected {c['value']}"
    for sig in e.get("read_back") or []:
        assert any(s == sig for _, s, _ in run.line.io.reads_back), f"{sig} was never read back"
    if "fire_error_ms_max" in e:
        fe = run.fire_errors_ms()
        assert fe and max(abs(x) for x in fe) <= e["fire_error_ms_max"], (min(fe), max(fe))


def scenarios():
    for path in sorted(HERE.glob("*.yaml")):
        spec = load(path)
        marks = [pytest.mark.xfail(strict=True, reason=spec["xfail"])] if spec.get("xfail") else []
        yield pytest.param(path, id=path.stem, marks=marks)


@pytest.mark.parametrize("path", list(scenarios()))
def test_scenario(path, config_dir):
    spec = load(path)
    cfg = load_line_config(config_dir, spec.get("base", "wenling-line1.yaml"), spec.get("config") or {})
    run = build(spec, cfg).run()
    check_invariants(run)
    check(spec, run)


def test_scenario_files_are_checked(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: x\nparcels: {plan: {n: 1}}\nevents: [{at_s: 1, link_down: 2}]\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"bad.yaml: events.0: unknown key\(s\) link_down"):
        load(bad)
    bad.write_text("parcels: {plan: {n: 1}}\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="description"):
        load(bad)
