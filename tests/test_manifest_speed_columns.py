"""The column-wise import of (waybill, town, carrier) files -- what bench/manifest.py measures --
stores and refuses exactly what record-by-record validation does, whatever the chunk boundaries:
lower-case, padded, empty, too long and wrong carrier codes, quotes, CRLF, bad rows with their lines;
and the columns a file does not give are cleared, as the record-by-record import clears them."""

from __future__ import annotations

import csv
import io
import random

import pytest

import sorter.controller.routing.manifest.importer as importer_mod
from sorter.controller.routing.manifest import Manifest, validate_row

HEADER = "运单号,乡镇,快递公司"


def reference(text: str):
    """(waybill -> (town, carrier) of the last good row, bad rows) validating each record alone."""
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    idx = {"waybill": 0, "town": 1, "carrier": 2}
    rows, bad = {}, []
    while True:
        first = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        if not any(c.strip() for c in row):
            continue
        if len(row) <= 2:
            bad.append((first, f"{len(row)} columns, expected 3"))
            continue
        rec, problem = validate_row(lambda c: row[idx[c]] if c in idx else None)
        if rec is None:
            bad.append((first, problem))
        else:
            rows[rec[0]] = (rec[1], rec[4])
    return rows, bad


def messy(seed: int, n: int = 500, quotes: bool = True) -> str:
    rng = random.Random(seed)
    towns = ["泽国镇", "大溪镇", "松门镇", "太平街道"]
    carriers = ["ZTO", "YTO", "SF", "JD", "YUNDA"]
    out = [HEADER + ("\r\n" if rng.random() < 0.5 else "\n")]
    for i in range(n):
        wb = f"75{rng.randrange(10**12):012d}" if rng.random() < 0.9 else f"75{i:012d}"
        town, car = rng.choice(towns), rng.choice(carriers)
        r = rng.random()
        if r < 0.70:
            line = f"{wb},{town},{car}"
        elif r < 0.73:
            line = f"{wb},{town},{car.lower()}"
        elif r < 0.76:
            line = f"{wb},{town}, {car} "
        elif r < 0.79:
            line = f"{wb},{town},"
        elif r < 0.81:
            line = f"{wb},{town},Z"                        # too short for a carrier code
        elif r < 0.83:
            line = f"{wb},{town},{'X' * 17}"               # too long
        elif r < 0.85:
            line = f"{wb},{town},中通"                      # not a code
        elif r < 0.87:
            line = f"{wb},{town}"                          # a column short
        elif r < 0.89:
            line = f"{wb},,{car}"                          # no town
        elif r < 0.91:
            line = f"ab-{i},{town},{car}"
        elif r < 0.95 and quotes:
            line = f'"{wb}","{town}","{car}"'
        else:
            line = f"{wb},{town},{car}"
        out.append(line + ("\r\n" if rng.random() < 0.2 else "\n"))
    return "".join(out)


@pytest.mark.parametrize("chunk", [50, 401, 1 << 21])
@pytest.mark.parametrize("seed,quotes", [(1, False), (2, False), (3, True)])
def test_carrier_files_import_as_record_by_record_validation_would(tmp_path, monkeypatch, chunk, seed, quotes):
    monkeypatch.setattr(importer_mod, "CHUNK_CHARS", chunk)
    monkeypatch.setattr(importer_mod, "BATCH", 41)
    monkeypatch.setattr(importer_mod, "WRITE_ROWS", 60)
    text = messy(seed, quotes=quotes)
    p = tmp_path / "a.csv"
    p.write_bytes(text.encode("utf-8"))
    want_rows, want_bad = reference(text)
    with Manifest(tmp_path / "m.db") as m:
        rep = m.import_csv(p)
        got = {w: (t, c) for w, t, c in m._db.execute("SELECT waybill, town, carrier FROM manifest")}
    assert rep.error is None
    assert rep.bad_rows == want_bad
    assert got == want_rows
    assert rep.imported + rep.updated + rep.duplicate_in_file == len(want_rows) + rep.duplicate_in_file


def test_a_carrier_file_clears_what_it_does_not_give(tmp_path):
    """Advice re-sent by a (waybill, town, carrier) file replaces the whole row: the old sort code,
    address, weight and intercept flag go, as they do for a file imported record by record."""
    with Manifest(tmp_path / "m.db") as m:
        m.upsert([("75123456789012", "松门镇", "576-W08-01", "温岭市松门镇", "STO", "standard", 2.5, 1)])
        p = tmp_path / "b.csv"
        p.write_text(f"{HEADER}\n75123456789012,泽国镇,zto\n", encoding="utf-8")
        rep = m.import_csv(p)
        assert rep.updated == 1 and rep.imported == 0 and rep.ok
        row = m.lookup_row("75123456789012")
    assert tuple(row) == ("泽国镇", None, None, "ZTO", None, None, 0)


def test_upsert_of_named_columns_checks_them(tmp_path):
    with Manifest(tmp_path / "m.db") as m:
        assert m.upsert([("75123456789012", "泽国镇", "ZTO")], ("waybill", "town", "carrier")) == 1
        assert m.lookup_row("75123456789012").carrier == "ZTO"
        for cols in (("town", "waybill", "carrier"), ("waybill", "town"), ("waybill", "town", "nope")):
            with pytest.raises(ValueError):
                m.upsert([("75123456789012", "泽国镇", "ZTO")], cols)
