"""The plc: section and the I/O map: URLs, relay boards, fail-safe signals, the latch; errors name
the key path (and the loader the YAML line)."""

from __future__ import annotations

import pytest

from sorter.controller.config.load import ConfigError, load_config
from sorter.controller.config.plc import parse_plc_url
from tests.plc_helpers import line_config


def test_urls():
    assert parse_plc_url("tcp://10.0.0.5:502") == {"kind": "tcp", "host": "10.0.0.5", "port": 502}
    r = parse_plc_url("rtu:///dev/ttyUSB0?baud=115200&parity=E&unit=3")
    assert (r["device"], r["baud"], r["parity"], r["unit"]) == ("/dev/ttyUSB0", 115200, "E", 3)
    for bad in ("udp://x:1", "rtu://", "rtu:///dev/ttyS0?baud=fast", "rtu:///dev/ttyS0?parity=X",
                "rtu:///dev/ttyS0?speed=9600", "rtu:///dev/ttyS0?unit=300"):
        with pytest.raises(ValueError):
            parse_plc_url(bad)


def test_failsafe_example_loads(tmp_path):
    cfg = load_config(line_config(tmp_path))
    assert cfg.plc.heartbeat.signal == "heartbeat" and cfg.plc.latch.head_count == "latch_head_count"


def _broken(tmp_path, old: str, new: str) -> str:
    path = line_config(tmp_path)
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return str(exc.value)


@pytest.mark.parametrize("old,new,expect", [
    ("latch_head_count: {table: input_register, address: 4, words: 2}",
     "latch_head_count: {table: input_register, address: 4}", "plc.latch.head_count"),
    ("heartbeat: {table: holding_register, address: 100}", "heartbeat: {table: discrete_input, address: 100}",
     "plc.heartbeat.signal"),
    ("estop_signal: estop_ok", "estop_signal: no_such_signal", "is not in io"),
    ("tower_red: {table: coil, address: 42}", "tower_red: {table: coil, address: 41}", "overlaps"),
    ("url: tcp://127.0.0.1:1502", "url: rtu:///dev/ttyS0?baud=12", "plc.url"),
    ("  mode: direct", "  mode: plc_tracking", "plc.mailbox"),  # plc_tracking needs the mailbox registers
    ("tower_green: {table: coil, address: 40}", "tower_green: {table: relay, address: 1}", "needs board"),
    ("encoder: {table: input_register, address: 0, words: 2}",
     "encoder: {table: input_register, address: 65535, words: 2}", "past 65535"),
])
def test_bad_io_maps_are_refused_with_the_place(tmp_path, old, new, expect):
    msg = _broken(tmp_path, old, new)
    assert expect in msg
    assert "line.yaml:" in msg


def test_relay_board_outputs(tmp_path):
    path = line_config(tmp_path)
    text = path.read_text(encoding="utf-8").replace(
        "  induct_enable: induct_enable\n",
        "  induct_enable: induct_enable\n  relay_boards: [{name: tower, port: /dev/ttyUSB1, channels: 4}]\n", 1)
    text = text.replace("tower_amber: {table: coil, address: 41}", "tower_amber: {table: relay, board: tower, address: 2}")
    path.write_text(text, encoding="utf-8")
    cfg = load_config(path)
    assert cfg.io["tower_amber"].board == "tower"
    path.write_text(text.replace("board: tower, address: 2", "board: tower, address: 9"), encoding="utf-8")
    with pytest.raises(ConfigError, match="channels 1..4"):
        load_config(path)
