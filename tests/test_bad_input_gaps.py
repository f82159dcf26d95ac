"""Bad input that still got through after issue 12's first pass: a parcel's record quoting the
address it could not route (a name and a phone number, on a page any reader sees); a town named
only by the recipient's name beside the phone number; a short UTF-8 file with a stray byte in its
Chinese header read as GB18030; `sorter routes check` passing a file that lost most of the rules
of the table the line runs on; a YAML 1.1 number that hid the config's other mistakes until it was
fixed; a route file's bad byte blamed on line 1."""

from __future__ import annotations

import pytest

from sorter.controller.cli.main import main
from sorter.controller.routing import last_good
from sorter.controller.routing.gazetteer import load_gazetteer
from sorter.controller.routing.manifest import Manifest, ManifestRow
from sorter.controller.routing.manifest.importer import guess_encoding
from sorter.controller.routing.router import Router, load_routing_config
from tests.conftest import ROOT
from tests.test_routes_safety import cut_after

PHONE = "13912345678"


def test_a_no_route_reason_never_quotes_the_address(example_config):
    cfg = example_config()
    router = Router.from_config(cfg)
    try:
        row = ManifestRow(None, None, f"上海市浦东新区世纪大道8号 李小明 {PHONE}", None, None, None, 0)
        d = router.route(router.state, "75123456789012", "ZTO", row)
        # the reason is kept in the parcel's record and shown to anyone who may read the page
        assert d.outcome == "no_route" and "no known town" in d.reason
        assert PHONE not in d.reason and "李小明" not in d.reason and "世纪大道" not in d.reason
    finally:
        router.close()


def test_a_town_only_in_the_recipients_name_is_no_route_never_that_town():
    g = load_gazetteer(ROOT / "config/towns.yaml")
    for address in (f"温岭市人民路5号 王大溪 {PHONE}", f"温岭市人民路5号 {PHONE} 王大溪",
                    f"温岭市人民路5号 王大溪{PHONE}", "温岭市人民路5号 收件人:张泽国 电话:139-1234-5678",
                    "温岭市人民路5号 张泽国 0576-86123456"):
        town, how = g.resolve(address)
        assert town is None and "recipient" in how, (address, town, how)
        assert "王大溪" not in how and "张泽国" not in how
    # a place beside the phone number is still the place; the address before the name still counts
    assert g.resolve(f"温岭市 大溪镇 {PHONE}")[0] == "大溪镇"
    assert g.resolve(f"温岭市 大溪 {PHONE}")[0] == "大溪镇"
    assert g.resolve(f"温岭市泽国镇横径村12号 王大溪 {PHONE}")[0] == "泽国镇"
    assert g.resolve(f"温岭市泽国镇人民路 王大溪 {PHONE}")[0] == "泽国镇"
    assert g.resolve(f"温岭市泽国镇横径村12号{PHONE}")[0] == "泽国镇"


def test_a_short_utf8_file_with_a_stray_byte_in_its_chinese_header_is_read_as_utf8(tmp_path):
    cut = "乡镇".encode()[:-1] + b"\xff"            # the header's last character lost a byte
    data = "运单号,乡镇,快递公司\n".encode().replace("乡镇".encode(), cut) + "SF1423456789012,泽国镇,SF\n".encode()
    assert guess_encoding(data) == "utf-8"
    p = tmp_path / "a.csv"
    p.write_bytes(data)
    with Manifest(tmp_path / "m.db") as m:
        rep = m.import_csv(p)
    # refused for its header, which the message quotes as it is, the bad bytes as bytes
    assert rep.encoding == "utf-8" and rep.error.startswith("line 1: header must name")
    assert "'运单号'" in rep.error and "乡\\xe9\\x95\\xff" in rep.error and "\\udc" not in rep.error
    # a GBK file is still GBK
    assert guess_encoding("运单号,乡镇\nSF1423456789012,泽国镇\n".encode("gbk")) == "gb18030"


def test_routes_check_refuses_a_big_fall_from_the_table_the_line_runs_on(example_config, capsys):
    cfg = example_config()
    routes = cfg.routing.routes
    line_file = routes.parent / "line.yaml"
    good = routes.read_text(encoding="utf-8")
    state = load_routing_config(cfg)
    last_good.keep(cfg, state)                      # what the running line keeps of its table
    n = len(state.table.rules)
    routes.write_text(cut_after(good, 3) + "default: MANUAL\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["routes", "check", "--config", str(line_file)]) == 1
    err = capsys.readouterr().err
    assert f"3 rules where the table in force has {n}" in err and state.version in err
    assert main(["check-config", str(line_file)]) != 0
    out = capsys.readouterr()
    assert "reload_max_rule_drop" in out.out + out.err
    # the same table in force as on disk: OK
    routes.write_text(good, encoding="utf-8")
    assert main(["routes", "check", "--config", str(line_file)]) == 0


def test_a_yaml_11_number_comes_with_the_files_other_mistakes_in_one_pass(example_config, capsys):
    cfg = example_config()
    line_file = cfg.routing.routes.parent / "wenling-line1.yaml"   # the shipped file, as a technician edits it
    text = line_file.read_text(encoding="utf-8")
    for old, new in (("C02_confirm: {table: discrete_input, address: 2}", "C02_confirm: {table: discrete_input, address: 02}"),
                     ("confirm_signal: C01_confirm", "confirm_signal: C01_confrm"),
                     ("routes: wenling-routes.yaml", "routes: nope-routes.yaml")):
        assert old in text
        text = text.replace(old, new)
    line_file.write_text(text, encoding="utf-8")
    capsys.readouterr()
    assert main(["check-config", str(line_file)]) != 0
    out = capsys.readouterr()
    said = out.out + out.err
    assert "io.C02_confirm.address: 02 has a leading zero" in said
    assert "'C01_confrm' is not in io" in said and "nope-routes.yaml: no such file" in said
    # alone, it still stops the file (and 1_000, text to YAML 1.2, is said once, not twice)
    text = text.replace("C01_confrm", "C01_confirm").replace("nope-routes.yaml", "wenling-routes.yaml")
    line_file.write_text(text.replace("address: 02}", "address: 1_000}"), encoding="utf-8")
    assert main(["check-config", str(line_file)]) != 0
    out = capsys.readouterr()
    said = out.out + out.err
    assert said.count("io.C02_confirm.address") == 1 and "write 1000 for the number" in said


def test_a_route_file_that_is_not_utf8_is_blamed_on_the_line_of_the_bad_byte(example_config, capsys):
    cfg = example_config()
    routes = cfg.routing.routes
    routes.write_bytes(b"rules:\n  - {town: \xe5\xa4\xa7\xe6\xba, chute: C07}\ndefault: MANUAL\n")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["routes", "check", "--config", str(routes.parent / "line.yaml")])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert f"{routes}:2: not UTF-8 text" in err and "e6 ba" in err


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

GAZETTEER = load_gazetteer(ROOT / "config/towns.yaml")
# address-ish text: places, a recipient's name, phone numbers, the separators people type
addressish = st.lists(st.sampled_from(
    ["温岭市", "泽国镇", "大溪", "横径村", "东门村", "人民路", "5号", "王大溪", "张泽国", "收件人", "电话", ":", " ",
     "，", "/", PHONE, "138-0000-0000", "0576-86123456", "+86", "\n", "\ud800", "镇", "村"]), max_size=12).map("".join)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.one_of(addressish, st.text(max_size=80)))
def test_an_address_gives_a_town_it_names_or_a_reason_never_an_exception(address):
    town, how = GAZETTEER.resolve(address)
    assert isinstance(how, str) and how
    if town is not None:
        assert town in GAZETTEER.towns
        # a town the text names (by its name, an alias or one of its villages), never another
        assert any(n in "".join(address.split()) for n in (town, *GAZETTEER.towns[town][0],
                                                           *GAZETTEER.villages_of(town)))


def test_an_address_glued_after_the_phone_number_still_counts():
    assert GAZETTEER.resolve(f"{PHONE}温岭市泽国镇横径村12号")[0] == "泽国镇"
    assert GAZETTEER.resolve(f"{PHONE}王大溪 温岭市人民路5号")[0] is None
