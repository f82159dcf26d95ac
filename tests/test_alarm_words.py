"""Every alarm detail the line raises has its words on the page, in Chinese and English, with no
parameter the template names that the raise does not send: otherwise a Chinese page falls back to
the English sentence, or shows `{error}` to a supervisor. Read from the source (every
`alarms.raise_(id, text, "detail", **params)`) and from controller/api/static/i18n.js."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from sorter.controller.service.alarm_book import AlarmBook
from sorter.controller.timing.alarms import Alarms

ROOT = Path(__file__).resolve().parent.parent
I18N = (ROOT / "controller" / "api" / "static" / "i18n.js").read_text(encoding="utf-8")
# the camera's health alarm: the worker sends the detail and its parameters (vision/worker.py)
WORKER_DETAILS = {"camera_health.read_rate": {"rate", "floor", "n"}, "camera_health.calibration": {"error"}}


def raised() -> dict[str, set[str]]:
    """detail key -> the parameters some raise of it sends (plus `camera`, which camera alarms carry)."""
    out: dict[str, set[str]] = {}
    for path in [*ROOT.glob("controller/**/*.py"), *ROOT.glob("vision/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "raise_"):
                continue
            if len(node.args) < 3 or not isinstance(node.args[2], ast.Constant):
                continue
            params = {k.arg for k in node.keywords if k.arg}
            out.setdefault(node.args[2].value, set()).update(params)
    for key, params in WORKER_DETAILS.items():
        out[key] = params | {"camera"}
    return out


def words(lang: str) -> dict[str, str]:
    start = I18N.index(f"{lang}: {{")
    block = I18N[start:I18N.index("\n    },", start)]
    return dict(re.findall(r'"(alarmtext\.[\w.]+)": "((?:[^"\\]|\\.)*)"', block))


def test_every_detail_raised_has_its_words_in_both_languages():
    details = raised()
    assert len(details) >= 20, sorted(details)   # the scan found the raises
    for lang in ("zh", "en"):
        w = words(lang)
        for key, params in details.items():
            template = w.get(f"alarmtext.{key}")
            assert template, f"{lang}: no words for alarm detail {key}"
            named = set(re.findall(r"\{(\w+)\}", template))
            assert named <= params, f"{lang}: alarmtext.{key} names {named - params}, not sent by the raise"


def test_the_detail_and_its_parameters_reach_the_alarm_book():
    alarms = Alarms(wall=lambda: 100.0)
    alarms.raise_("plc_link", "lost the line's I/O (reset); ...", "plc_link.lost", error=ConnectionResetError("reset"))
    alarms.raise_("camera_top_drops", "camera top: 80% dropped", "camera_drops.share", camera="top", share="80%")
    alarms.raise_("records", "the record database cannot be written")          # no detail: text only
    book = AlarmBook(wall=lambda: 101.0)
    book.update(alarms.list())
    view = {life.alarm_id: life.view(101.0) for life in book.lives.values()}
    assert view["plc_link"]["detail"] == "plc_link.lost" and view["plc_link"]["params"] == {"error": "reset"}
    assert view["camera_top_drops"]["params"] == {"camera": "top", "share": "80%"}
    assert view["records"]["detail"] is None and view["records"]["text"].startswith("the record database")
    # raised again with other parameters: the page shows the latest
    alarms.raise_("plc_link", "lost the line's I/O (timeout); ...", "plc_link.lost", error="timeout")
    book.update(alarms.list())
    assert book.lives["plc_link"].view(102.0)["params"] == {"error": "timeout"}
