"""Property tests for the parsers that read what people and carriers send: whatever the input, a
clean error (a ConfigError / RoutesError / a report with its problems) or a valid result, never an
exception escaping. Bounded example counts and no deadline (a shared 2-core machine)."""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from sorter.controller.api.guard import check_json  # noqa: E402
from sorter.controller.config.yaml12 import YamlProblem, load12  # noqa: E402
from sorter.controller.routing.manifest import Manifest  # noqa: E402
from sorter.controller.routing.routes import RoutesError, load_routes  # noqa: E402

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CHUTES = {"C01", "C06", "C07", "MANUAL"}

# YAML-ish text: the characters that make YAML's structure, plus numbers, words and Chinese
yamlish = st.lists(st.sampled_from(
    ["rules:", "default:", "intercept:", "\n", "  ", "- ", "{", "}", "[", "]", ", ", ": ", "town", "chute",
     "carrier", "sort_code", "weight_kg", "泽国镇", "C06", "MANUAL", "025", "1_000", "1:30", "yes", "no", "~",
     "&a ", "*a", "!!int ", "!!str ", "'", '"', "#", "0x1F", ".inf", "-", "null", "true", "\t", "\\", "%",
     "@", "`", "|", ">", "?"]), max_size=40).map("".join)


@SETTINGS
@given(st.one_of(yamlish, st.text(max_size=200)))
def test_yaml12_gives_data_or_a_located_problem(text):
    try:
        load12(text)
        load12(text, fast=True)
    except YamlProblem as exc:
        assert exc.problems and all(isinstance(p, str) and p for _, _, p in exc.problems)


@SETTINGS
@given(text=st.one_of(yamlish, st.text(max_size=200)))
def test_route_loader_gives_a_table_or_routes_error(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("r") / "routes.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        t = load_routes(p, CHUTES)
    except RoutesError as exc:
        assert exc.problems and all(str(p) in q for q in exc.problems)
    else:
        assert all(r.chutes for r in t.rules)


csvish = st.lists(st.sampled_from(
    ["waybill", "town", "运单号", "目的地", "三段码", ",", "\n", "\r\n", '"', "75123456789012", "SF1423456789012",
     "泽国镇", "大溪镇", "\x00", "\xff", " ", "576-W06-11", "x" * 70, "#"]), max_size=60).map("".join)


@SETTINGS
@given(data=st.one_of(csvish.map(lambda s: s.encode("utf-8")), st.binary(max_size=300),
                      csvish.map(lambda s: s.encode("gb18030", "replace"))))
def test_manifest_csv_import_reports_never_raises(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("m")
    p = d / "a.csv"
    p.write_bytes(data)
    with Manifest(d / "m.db") as m:
        rep = m.import_csv(p)
        stored = m.count()
    assert rep.error is not None or rep.imported + rep.updated == stored
    assert all(isinstance(n, int) and n >= 1 for n, _ in rep.bad_rows)


jsonish = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20)),
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
    max_leaves=20)


@SETTINGS
@given(jsonish)
def test_manifest_records_import_reports_never_raises(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("j")
    with Manifest(d / "m.db") as m:
        rep = m.import_records(data)
    assert rep.error is not None or rep.imported + rep.updated + rep.duplicate_in_file + rep.bad_count >= 0


@SETTINGS
@given(st.one_of(st.binary(max_size=200), st.lists(st.sampled_from(
    [b"{", b"}", b"[", b"]", b'"', b"\\", b"\\ud800", b"NaN", b"1e309", b":", b",", b"9" * 30, b'"a"']),
    max_size=60).map(b"".join)))
def test_json_check_gives_a_verdict_never_an_exception(raw):
    verdict = check_json(raw)
    assert verdict is None or (isinstance(verdict[0], str) and len(verdict[0]) < 400)
