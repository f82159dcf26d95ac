"""Config of the line's I/O: the Modbus points (the I/O map), the connection to them, the fail-safe
signals (heartbeat, signal tower, run/stop, e-stop), the encoder latch, serial relay boards and the
PLC-tracking mailbox.

Every signal named anywhere in `plc:` must be in `io:` with the right table; `verify_io` reports
what is wrong as (key path, problem) pairs so that the loader points at the YAML line.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs, urlparse

from pydantic import Field, field_validator, model_validator

from sorter.controller.config.base import Strict

SignalTable = Literal["coil", "discrete_input", "input_register", "holding_register", "relay"]
TABLE_SIZE = 65536


class Signal(Strict):
    """One named point in the I/O map: a Modbus point (unit, table, address), or a channel of a serial
    relay board."""

    table: SignalTable = Field(description="Modbus table the signal lives in: discrete_input (photo-eyes and other "
                                           "inputs), coil (outputs: diverters, lamps; readable too), input_register / "
                                           "holding_register (encoder count, latch, mailbox, heartbeat); `relay` = a "
                                           "channel of a serial relay board")
    address: int = Field(ge=0, le=65535, description="0-based Modbus address (relay: 1-based channel). A manual that "
                                                     "numbers from 1, or as 10001/30001/40001, means address 0 there")
    unit: int = Field(default=1, ge=0, le=247, description="Modbus unit (device) id; an rtu:// url's unit= overrides "
                                                           "it for every signal; 0 (broadcast) is refused on RS-485")
    words: Literal[1, 2] = Field(default=1, description="registers: 2 for a 32-bit counter (high word first); the "
                                                        "encoder count and the latched counts need 2")
    board: str | None = Field(default=None, description="relay board name (plc.relay_boards) for table: relay; none "
                                                        "for Modbus signals")


class RelayBoard(Strict):
    """A serial relay board: the common USB boards take 4 bytes `A0 <ch> <state> <sum>` and answer
    nothing; some answer a status query (0xFF) with text lines `CH1:ON`."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$",
                      description="board name, as `io:` signals with table: relay give it in board:")
    port: str = Field(min_length=1, description="serial device, e.g. /dev/ttyUSB0")
    baud: int = Field(default=9600, ge=1200, le=921600, description="serial speed, baud (the common boards: 9600)")
    channels: int = Field(default=4, ge=1, le=16, description="relays on the board; relay signals use addresses "
                                                              "1..channels")
    protocol: Literal["lcus"] = Field(default="lcus", description="command set: lcus = the 4-byte A0 <ch> <state> "
                                                                  "<sum> frames (the only one so far)")
    query: bool = Field(default=False, description="the board answers the 0xFF status query (read-back)")
    timeout_s: float = Field(default=0.2, gt=0, le=5, description="serial write timeout, and how long to wait for "
                                                                  "the status query's answer, s")


class Heartbeat(Strict):
    """Written every `period_ms`; the PLC/relay board drops outputs and stops induction when it stops."""

    signal: str = Field(description="`io:` signal written: a holding register counts up (wraps at 65535), a coil "
                                    "toggles")
    period_ms: float = Field(default=100, ge=10, le=5000,
                             description="written this often, ms; set the PLC's or module's watchdog to several "
                                         "periods (e.g. 500 ms for 100)")


class SignalTower(Strict):
    """The signal tower (stack light): green while sorting, amber while an alarm is active (or after an
    e-stop or belt stop, until the line runs again), red in the safe state (starting, link lost,
    stopped); the buzzer sounds with red. Each lamp is an `io:` output (coil or relay); none = not
    fitted."""

    green: str | None = Field(default=None, description="output of the green lamp: sorting, no alarm")
    amber: str | None = Field(default=None, description="output of the amber lamp: an alarm is active")
    red: str | None = Field(default=None, description="output of the red lamp: the safe state, nothing is sorted")
    buzzer: str | None = Field(default=None, description="output of the buzzer: on with red")


class InductLatch(Strict):
    """Registers where the PLC/counter module latches the encoder count at each edge of the induct
    photo-eye (a 16-bit edge counter and the 32-bit count at the last edge)."""

    head_seq: str = Field(description="register: rising edges so far (16-bit, wraps)")
    head_count: str = Field(description="32-bit register: encoder count at the last rising edge")
    tail_seq: str = Field(description="register: falling edges so far (16-bit, wraps)")
    tail_count: str = Field(description="32-bit register: encoder count at the last falling edge")


class Mailbox(Strict):
    """PLC-tracking mode: the PLC posts each new parcel id, the PC answers a chute number for that id
    before the deadline, the PLC posts where each parcel went. All holding registers.

    The handshake:
    - new parcel: when a parcel's tail has cleared the induct photo-eye the PLC writes new_id (never
      0), new_head_count / new_length_mm when mapped, then increments new_seq. The PC polls it at the
      poll rate; a jump of new_seq by more than one is a parcel the PC missed (a `fault` record).
    - answer: the PC writes answer_chute, then answer_id (which commits it). The PLC takes it only
      before the parcel's deadline (its diverter must switch: position minus lead, minus actuation);
      otherwise, or with no answer, the parcel goes to the reject chute. Answers are spaced at least
      answer_interval_ms apart so that a PLC scanning its mailbox every few ms sees each one.
    - result: the PLC posts result_id, result_chute (0 = reject), result_code, then increments
      result_seq; it posts the next result only when the PC has written result_ack = result_seq.
      result_code: 0 = went where answered, 1 = no answer before the deadline (rejected),
      2 = diverted but not confirmed in its chute, 3 = answered a chute number it does not know.
    """

    new_seq: str = Field(description="PLC: counts parcels posted (16-bit)")
    new_id: str = Field(description="PLC: id of the newest parcel (16-bit)")
    new_head_count: str | None = Field(default=None, description="PLC: 32-bit encoder count at its head (for camera matching)")
    new_length_mm: str | None = Field(default=None, description="PLC: its measured length in mm (not mapped: "
                                                                "line.min_length_mm is assumed)")
    answer_id: str = Field(description="PC: the parcel id answered (written last: it commits the answer)")
    answer_chute: str = Field(description="PC: chute number for answer_id (0 = reject)")
    result_seq: str = Field(description="PLC: counts results posted (16-bit)")
    result_id: str = Field(description="PLC: id of the parcel the result is for")
    result_chute: str = Field(description="PLC: chute number where it went (0 = reject)")
    result_code: str | None = Field(default=None, description="PLC: 0 ok, 1 no answer in time, 2 not confirmed, 3 bad chute")
    result_ack: str = Field(description="PC: the last result_seq read (the PLC then posts the next)")
    answer_interval_ms: float = Field(default=20, ge=0, le=1000,
                                      description="at least this long between two answers (the PLC's mailbox scan)")
    result_timeout_ms: float = Field(default=3000, ge=100, le=60_000,
                                     description="no result this long after the parcel should have reached its chute: lost")
    chute_numbers: dict[str, int] = Field(default_factory=dict,
                                          description="chute id -> number in the PLC (default: order in line.chutes, from 1)")


class PlcConfig(Strict):
    """The link to the line's I/O (a PLC or a remote-I/O module, over Modbus TCP or RTU) and the
    fail-safe signals. Every signal named here must be in `io:` with a suitable table."""

    mode: Literal["direct", "plc_tracking"] = Field(
        default="direct", description="direct: the PC reads the photo-eyes and the encoder and switches the diverter "
                                      "outputs itself; plc_tracking: a PLC tracks the parcels and drives the "
                                      "diverters, the PC answers chute numbers in plc.mailbox")
    url: str = Field(default="tcp://127.0.0.1:1502",
                     description="tcp://HOST:PORT or rtu:///dev/ttyUSB0?baud=115200&parity=N&unit=1 (also stopbits=, "
                                 "bytesize=); `sorter run --plc` overrides it")
    timeout_s: float = Field(default=0.25, gt=0, le=10,
                             description="a request with no answer after this long, s, is unanswered: a read is "
                                         "retried (retries), then the link counts as lost; a write leaves its output "
                                         "unknown (switched off, its parcels to reject)")
    retries: int = Field(default=1, ge=0, le=5, description="a timed-out READ is retried this often (writes never)")
    poll_hz: float = Field(default=1000, ge=10, le=5000,
                           description="every input is polled this often, Hz (1000 = each ms); a slower link polls "
                                       "as fast as it can")
    idle_poll_hz: float | None = Field(default=None, ge=5, le=5000,
                                       description="with nothing on the belt (no parcel tracked, no output on, the "
                                                   "induct photo-eye clear) for idle_after_s, poll this often "
                                                   "instead, Hz, so an idle line costs a fraction of a core; back to "
                                                   "poll_hz from the poll that sees the induct photo-eye blocked. "
                                                   "The first parcel's head is then known to half an idle period: "
                                                   "fit plc.latch for exact heads; none = always poll_hz")
    idle_after_s: float = Field(default=1.0, ge=0, le=600,
                                description="how long the belt must be empty before polling at idle_poll_hz, s")
    reconnect_min_s: float = Field(default=0.2, gt=0, le=60,
                                   description="after a lost link, the first reconnection attempt after this, s; "
                                               "the wait doubles up to reconnect_max_s")
    reconnect_max_s: float = Field(default=5.0, gt=0, le=600,
                                   description="the longest wait between reconnection attempts, s (not below "
                                               "reconnect_min_s)")
    max_late_ms: float = Field(default=8.0, ge=0.5, le=500,
                               description="an output later than this is not switched (too_late), ms: its parcel "
                                           "goes to reject, never a late fire")
    heartbeat: Heartbeat | None = Field(default=None, description="the fail-safe heartbeat; none = no heartbeat")
    tower: SignalTower | None = Field(default=None, description="the signal tower lamps; none = no tower")
    run_signal: str | None = Field(default=None,
                                   description="input: belt running (true = running); the belt stopping sends "
                                               "the parcels in flight to reject; none = not wired")
    estop_signal: str | None = Field(default=None,
                                     description="input: e-stop circuit healthy (true = OK; wired fail-safe); "
                                                 "false sends the parcels in flight to reject, outputs off, and "
                                                 "latches the line in `estop` until a reset after the input clears")
    reset_signal: str | None = Field(default=None,
                                     description="input: a reset push-button (rising edge): ends a latched e-stop "
                                                 "once the e-stop input has cleared; none = reset from the page or "
                                                 "the API only")
    induct_enable: str | None = Field(default=None,
                                      description="coil: induction allowed; on only while the line is `running` "
                                                  "(off while booting, ready, paused, faulted, in e-stop, stopping)")
    drain_s: float = Field(default=10.0, ge=0, le=120,
                           description="on stop (SIGTERM): induction off, then the parcels in flight are tracked to "
                                       "their chutes for at most this long before every output goes off, s "
                                       "(0 = stop at once: parcels in flight go to reject as fault)")
    latch: InductLatch | None = Field(default=None,
                                      description="registers with the encoder count latched at each induct photo-eye "
                                                  "edge (exact edge positions whatever the polling); none = edges are "
                                                  "timed by the poll")
    mailbox: Mailbox | None = Field(default=None, description="plc_tracking: the mailbox registers (required in "
                                                              "that mode)")
    relay_boards: list[RelayBoard] = Field(default_factory=list, max_length=16,
                                           description="serial relay boards driving outputs (`io:` signals with "
                                                       "table: relay)")
    test_mode: Literal["off", "fixed", "round_robin"] = Field(
        default="off", description="commissioning: every parcel to test_chute, or to each chute in turn "
                                   "(`sorter run --test-mode fixed:C05` or `round-robin` sets it)")
    test_chute: str | None = Field(default=None, description="test_mode fixed: the chute id every parcel goes to")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parse_plc_url(v)
        return v

    @model_validator(mode="after")
    def _order(self) -> "PlcConfig":
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        if self.test_mode == "fixed" and not self.test_chute:
            raise ValueError("test_mode fixed needs test_chute")
        return self


def parse_plc_url(url: str) -> dict:
    """`tcp://HOST:PORT` or `rtu:///dev/ttyUSB0?baud=115200&parity=N&unit=1` -> its parts.
    Raises ValueError naming the problem."""
    u = urlparse(url)
    if u.scheme == "tcp":
        if not u.hostname:
            raise ValueError(f"plc url {url!r}: expected tcp://HOST:PORT")
        try:
            port = u.port or 502
        except ValueError:
            raise ValueError(f"plc url {url!r}: bad port") from None
        return {"kind": "tcp", "host": u.hostname, "port": port}
    if u.scheme == "rtu":
        device = u.path or u.netloc
        if not device:
            raise ValueError(f"plc url {url!r}: expected rtu:///dev/ttyUSB0?baud=115200&parity=N&unit=1")
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        unknown = set(q) - {"baud", "parity", "stopbits", "bytesize", "unit"}
        if unknown:
            raise ValueError(f"plc url {url!r}: unknown option(s) {', '.join(sorted(unknown))}")
        try:
            out = {"kind": "rtu", "device": device, "baud": int(q.get("baud", 19200)),
                   "parity": q.get("parity", "N").upper(), "stopbits": int(q.get("stopbits", 1)),
                   "bytesize": int(q.get("bytesize", 8)), "unit": int(q["unit"]) if "unit" in q else None}
        except ValueError:
            raise ValueError(f"plc url {url!r}: baud, stopbits, bytesize and unit must be numbers") from None
        if out["parity"] not in ("N", "E", "O"):
            raise ValueError(f"plc url {url!r}: parity must be N, E or O")
        if not 1200 <= out["baud"] <= 921600:
            raise ValueError(f"plc url {url!r}: baud out of range")
        if out["unit"] is not None and not 0 <= out["unit"] <= 247:
            raise ValueError(f"plc url {url!r}: unit must be 0..247")
        return out
    raise ValueError(f"plc url {url!r}: expected tcp://HOST:PORT or rtu:///dev/ttyUSB0?baud=115200&parity=N&unit=1")


def plc_signal_refs(plc: PlcConfig) -> list[tuple[str, str, tuple[str, ...], int | None]]:
    """Every signal the `plc:` section names: (key path, signal, allowed tables, required words)."""
    bits_in = ("discrete_input", "coil")
    out_bit = ("coil", "relay")
    regs = ("input_register", "holding_register")
    refs: list[tuple[str, str, tuple[str, ...], int | None]] = []
    if plc.heartbeat:
        refs.append(("plc.heartbeat.signal", plc.heartbeat.signal, ("holding_register", "coil"), None))
    if plc.tower:
        for k in ("green", "amber", "red", "buzzer"):
            if getattr(plc.tower, k):
                refs.append((f"plc.tower.{k}", getattr(plc.tower, k), out_bit, None))
    if plc.run_signal:
        refs.append(("plc.run_signal", plc.run_signal, bits_in, None))
    if plc.estop_signal:
        refs.append(("plc.estop_signal", plc.estop_signal, bits_in, None))
    if plc.reset_signal:
        refs.append(("plc.reset_signal", plc.reset_signal, bits_in, None))
    if plc.induct_enable:
        refs.append(("plc.induct_enable", plc.induct_enable, out_bit, None))
    if plc.latch:
        for k in ("head_seq", "tail_seq"):
            refs.append((f"plc.latch.{k}", getattr(plc.latch, k), regs, 1))
        for k in ("head_count", "tail_count"):
            refs.append((f"plc.latch.{k}", getattr(plc.latch, k), regs, 2))
    if plc.mailbox:
        m = plc.mailbox
        for k in ("new_seq", "new_id", "new_length_mm", "answer_id", "answer_chute", "result_seq",
                  "result_id", "result_chute", "result_code", "result_ack"):
            if getattr(m, k):
                refs.append((f"plc.mailbox.{k}", getattr(m, k), ("holding_register",), 1))
        if m.new_head_count:
            refs.append(("plc.mailbox.new_head_count", m.new_head_count, ("holding_register",), 2))
    return refs


def verify_io(cfg) -> list[tuple[str, str]]:
    """Checks of the I/O map beyond what the models enforce: (key path, problem) pairs."""
    problems: list[tuple[str, str]] = []
    plc: PlcConfig = cfg.plc
    boards = {b.name: b for b in plc.relay_boards}
    names = [b.name for b in plc.relay_boards]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(("plc.relay_boards", f"relay board {dup!r} is defined twice"))
    try:
        url = parse_plc_url(plc.url)
    except ValueError as exc:
        problems.append(("plc.url", str(exc)))
        url = {"kind": "tcp"}
    # two signals on one point would fire each other's diverter
    seen: dict[tuple, str] = {}
    for name, sig in cfg.io.items():
        where = f"io.{name}"
        if sig.table == "relay":
            if sig.board is None:
                problems.append((where, "a relay signal needs board: (a name from plc.relay_boards)"))
                continue
            b = boards.get(sig.board)
            if b is None:
                problems.append((f"{where}.board", f"no relay board {sig.board!r} in plc.relay_boards"))
                continue
            if not 1 <= sig.address <= b.channels:
                problems.append((f"{where}.address", f"board {b.name} has channels 1..{b.channels}"))
            key = ("relay", sig.board, sig.address)
        else:
            if sig.board is not None:
                problems.append((f"{where}.board", "only relay signals name a board"))
            if sig.words == 2 and sig.table in ("coil", "discrete_input"):
                problems.append((f"{where}.words", "words: 2 is for registers only"))
            if sig.address + sig.words > TABLE_SIZE:
                problems.append((f"{where}.address", f"{sig.address} + {sig.words} words runs past 65535"))
            if url["kind"] == "rtu" and sig.unit == 0:
                problems.append((f"{where}.unit", "unit 0 is broadcast on RS-485: no device answers it"))
            key = None
        for w in range(sig.words):
            k = key or (sig.unit, sig.table, sig.address + w)
            if k in seen:
                problems.append((where, f"overlaps io.{seen[k]} at {sig.table} {sig.address + w}"))
            seen[k] = name
    for where, sname, tables, words in plc_signal_refs(plc):
        sig = cfg.io.get(sname)
        if sig is None:
            problems.append((where, f"signal {sname!r} is not in io"))
        elif sig.table not in tables:
            problems.append((where, f"signal {sname!r} is a {sig.table}, expected {' or '.join(tables)}"))
        elif words is not None and sig.words != words:
            problems.append((where, f"signal {sname!r} must be {16 * words}-bit (words: {words})"))
    chute_ids = [c.id for c in cfg.line.chutes]
    if plc.mode == "plc_tracking":
        if plc.mailbox is None:
            problems.append(("plc.mailbox", "mode plc_tracking needs the mailbox registers"))
        else:
            for cid in plc.mailbox.chute_numbers:
                if cid not in chute_ids:
                    problems.append((f"plc.mailbox.chute_numbers.{cid}", f"no chute {cid!r}"))
            nums = list(plc.mailbox.chute_numbers.values())
            if len(set(nums)) != len(nums):
                problems.append(("plc.mailbox.chute_numbers", "two chutes share a number"))
            for cid, n in plc.mailbox.chute_numbers.items():
                if not 0 <= n <= 65535 or (n == 0 and cid != cfg.line.reject_chute):
                    problems.append((f"plc.mailbox.chute_numbers.{cid}", "chute numbers are 1..65535 (0 is the reject chute)"))
    if plc.test_mode == "fixed" and plc.test_chute not in chute_ids:
        problems.append(("plc.test_chute", f"no chute {plc.test_chute!r}"))
    return problems


def chute_numbers(cfg) -> dict[str, int]:
    """Chute id -> its number in the PLC's mailbox (plc.mailbox.chute_numbers, else the order in
    line.chutes from 1). The reject chute is always 0."""
    m = cfg.plc.mailbox
    given = dict(m.chute_numbers) if m is not None else {}
    out = given or {c.id: i for i, c in enumerate(cfg.line.chutes, 1)}
    out[cfg.line.reject_chute] = 0
    return out
