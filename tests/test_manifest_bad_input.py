"""Manifest files as carriers really send them: the encoding is decided once per file from its
start and held (a stray byte is one bad row, never a whole file of mojibake); duplicates and
re-sent waybills are counted as such; hostile JSON is a clean error from `sorter manifest import`."""

from __future__ import annotations

import json

import pytest

from sorter.controller.cli.main import main
from sorter.controller.routing.manifest import Manifest, decode_csv_bytes, detect_encoding

ROWS = [("75123456789012", "泽国镇"), ("SF1423456789012", "大溪镇"), ("YT7512345678901", "松门镇"),
        ("JT0012345678901", "温峤镇"), ("75000000000009", "城南镇"), ("75000000000010", "箬横镇")]


def csv_bytes(header: str, rows, encoding="utf-8") -> bytes:
    return (header + "\n" + "".join(f"{w},{t}\n" for w, t in rows)).encode(encoding)


@pytest.fixture
def manifest(tmp_path):
    m = Manifest(tmp_path / "m.db")
    yield m
    m.close()


@pytest.mark.parametrize("header", ["waybill,town", "运单号,目的地"])
def test_one_stray_byte_is_one_bad_row_not_a_file_of_mojibake(tmp_path, manifest, header):
    data = csv_bytes(header, ROWS)
    # line 4 (the third row): 松门镇 with its last byte cut, as a bad copy leaves it
    bad_town = "松门镇".encode()
    data = data.replace(bad_town, bad_town[:-1])
    p = tmp_path / "a.csv"
    p.write_bytes(data)
    rep = manifest.import_csv(p)
    assert rep.error is None and rep.encoding == "utf-8", rep.summary()
    assert rep.imported == len(ROWS) - 1 and rep.bad_count == 1
    line, problem = rep.bad_rows[0]
    assert line == 4 and "town" in problem and "encoding" in problem
    assert manifest.lookup("75123456789012") == "泽国镇" and manifest.lookup("75000000000010") == "箬横镇"
    assert manifest.lookup("YT7512345678901") is None


def test_many_rows_then_one_bad_byte_far_into_the_file(tmp_path, manifest):
    rows = [(f"75{i:012d}", "泽国镇") for i in range(30_000)]
    data = bytearray(csv_bytes("waybill,town", rows))
    k = data.rindex("泽国镇".encode())          # the last row's town, far past the sample
    data[k + 1] = 0xFF
    p = tmp_path / "a.csv"
    p.write_bytes(bytes(data))
    rep = manifest.import_csv(p)
    assert rep.encoding == "utf-8" and rep.imported == 29_999
    assert [n for n, _ in rep.bad_rows] == [30_001]
    towns = {t for (t,) in manifest._db.execute("SELECT DISTINCT town FROM manifest")}
    assert towns == {"泽国镇"}


def test_gbk_files_are_still_gbk_and_a_bad_sequence_there_is_a_bad_row(tmp_path, manifest):
    data = csv_bytes("运单号,乡镇", ROWS, "gbk")
    data = data.replace("松门镇".encode("gbk"), b"\x81\x20")   # a lead byte with no trail: not GB18030
    p = tmp_path / "g.csv"
    p.write_bytes(data)
    assert detect_encoding(p) == "gb18030"
    rep = manifest.import_csv(p)
    assert rep.encoding == "gb18030" and rep.imported == len(ROWS) - 1
    assert [n for n, _ in rep.bad_rows] == [4]
    assert manifest.lookup("75000000000010") == "箬横镇"


def test_upload_bytes_are_decided_the_same_way():
    text, enc = decode_csv_bytes(csv_bytes("运单号,目的地", ROWS).replace("大溪镇".encode(), b"\xff"))
    assert enc == "utf-8" and "泽国镇" in text and "运单号" in text


def test_duplicates_new_and_updated_are_counted_apart(tmp_path, manifest):
    p = tmp_path / "dup.csv"
    p.write_bytes(b"waybill,town\n" + b"75123456789012,\xe6\xb3\xbd\xe5\x9b\xbd\xe9\x95\x87\n" * 200_000)
    rep = manifest.import_csv(p)
    assert (rep.imported, rep.updated, rep.duplicate_in_file, rep.bad_count) == (1, 0, 199_999, 0)
    assert manifest.count() == 1
    d = rep.as_dict()
    assert d["imported"] == 1 and d["duplicate_in_file"] == 199_999 and d["updated"] == 0
    # the same waybill again and two new ones: 1 updated, 2 new; the later of two rows wins
    p.write_text("waybill,town\n75123456789012,大溪镇\n75000000000009,城南镇\n75000000000009,松门镇\n"
                 "SF1423456789012,温峤镇\n", encoding="utf-8")
    rep = manifest.import_csv(p)
    assert (rep.imported, rep.updated, rep.duplicate_in_file) == (2, 1, 1)
    assert manifest.lookup("75000000000009") == "松门镇" and manifest.lookup("75123456789012") == "大溪镇"
    assert "1 updated" in rep.summary() and "1 duplicates in the file" in rep.summary()


def test_a_huge_header_field_is_blamed_on_its_own_line(tmp_path, manifest):
    p = tmp_path / "h.csv"
    p.write_text("x" * (1 << 20) + ",town\n75123456789012,泽国镇\n", encoding="utf-8")
    rep = manifest.import_csv(p)
    assert rep.error is not None and rep.error.startswith("line 1: ") and len(rep.error) < 400
    p.write_text("#" * 300 + "," + "y" * 5000 + "\n75123456789012,泽国镇\n", encoding="utf-8")
    rep = manifest.import_csv(p)
    assert rep.error.startswith("line 1: header must name") and len(rep.error) < 600


def test_a_huge_field_in_a_row_is_that_row(tmp_path, manifest):
    p = tmp_path / "f.csv"
    p.write_text("waybill,town\n75123456789012,泽国镇\nSF1423456789012," + "x" * (1 << 20) + "\n"
                 "YT7512345678901,松门镇\n", encoding="utf-8")
    rep = manifest.import_csv(p)
    assert rep.imported == 2 and [n for n, _ in rep.bad_rows] == [3]


def test_json_with_lone_surrogates_and_non_finite_weights_is_bad_rows(tmp_path, manifest):
    p = tmp_path / "a.json"
    p.write_text('[{"waybill": "75123456789012", "town": "\\ud800泽国"},'
                 ' {"waybill": "SF1423456789012", "town": "大溪镇", "weight_kg": NaN},'
                 ' {"waybill": "YT7512345678901", "town": "松门镇", "weight_kg": 1e309},'
                 ' {"waybill": "\\udfff", "town": "松门镇"},'
                 ' {"waybill": "JT0012345678901", "town": "温峤镇"}]', encoding="utf-8")
    rep = manifest.import_json(p)
    assert rep.error is None and rep.imported == 1 and [n for n, _ in rep.bad_rows] == [1, 2, 3, 4]


@pytest.fixture
def line_file(example_config):
    cfg = example_config()
    return cfg.routing.routes.parent / "line.yaml"


@pytest.mark.parametrize("content", [
    "[" * 100_000 + "]" * 100_000,
    '[{"waybill": "75123456789012", "town": ' + "[" * 100_000 + "]" * 100_000 + "}]",
    '{"waybill": ' + "9" * 5000 + '}\n{"waybill": "75123456789012", "town": "泽国镇"}\n',
])
def test_manifest_import_of_hostile_json_is_a_clean_error(tmp_path, line_file, capsys, content):
    p = tmp_path / "deep.json"
    p.write_text(content, encoding="utf-8")
    rc = main(["manifest", "import", str(p), "--config", str(line_file), "--json"])
    out, err = capsys.readouterr()
    assert rc in (1, 2) and "Traceback" not in err
    rep = json.loads(out.splitlines()[0])
    assert rep["error"] or rep["bad"]
    assert len(out) < 2000
