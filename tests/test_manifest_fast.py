"""The fast (column-wise) CSV import accepts, refuses and reports exactly what record-by-record
validation does, whatever the chunk boundaries: quotes, CRLF, NULs, blank lines, bad rows."""

import csv
import io
import random

import pytest

import sorter.controller.routing.manifest.importer as importer_mod
from sorter.controller.routing.manifest import Manifest, validate_row


def reference(text: str):
    """(last row per waybill, bad rows (line, problem)) by validating each record on its own."""
    reader = csv.reader(io.StringIO(text.replace("\x00", ""), newline=""))
    header = next(reader)
    idx = {"waybill": 0, "town": 1}
    rows, bad = {}, []
    while True:
        first = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        if not any(c.strip() for c in row):
            continue
        if len(row) <= 1:
            bad.append((first, f"{len(row)} columns, expected {len(header)}"))
            continue
        rec, problem = validate_row(lambda c: row[idx[c]] if c in idx else None)
        if rec is None:
            bad.append((first, problem))
        else:
            rows[rec[0]] = rec[1]
    return rows, bad


def messy_csv(seed: int, n: int = 400, quotes: bool = True) -> str:
    rng = random.Random(seed)
    towns = ["泽国镇", "大溪镇", "松门镇", "太平街道"]
    out = ["运单号,乡镇\r\n" if rng.random() < 0.5 else "运单号,乡镇\n"]
    for i in range(n):
        wb = f"75{rng.randrange(10**12):012d}" if rng.random() < 0.9 else f"75{i:012d}"  # some duplicates
        town = rng.choice(towns)
        r = rng.random()
        end = "\r\n" if rng.random() < 0.2 else "\n"
        if r < 0.70:
            line = f"{wb},{town}"
        elif r < 0.73:
            line = f"{wb.lower()[:2]}{wb[2:]},{town}"
        elif r < 0.76:
            line = f" {wb} ,{town}"
        elif r < 0.79:
            line = f"{wb}, {town} "
        elif r < 0.81:
            line = f"{wb},"
        elif r < 0.83:
            line = f"AB-{i},{town}"
        elif r < 0.85:
            line = f"{wb},{'镇' * 70}"
        elif r < 0.87:
            line = f"{wb},{town},extra"
        elif r < 0.89:
            line = f"{wb}"
        elif r < 0.91:
            line = ""
        elif r < 0.92:
            line = f"{wb},{town}\x00"
        elif r < 0.96 and quotes:
            line = f'"{wb}","{town}"'
        elif r < 0.98 and quotes:
            line = f'{wb},"{town}\n第二行"'
        else:
            line = f"{wb},{town}"
        out.append(line + end)
    return "".join(out)


@pytest.mark.parametrize("chunk", [64, 333, 1 << 21])
@pytest.mark.parametrize("seed,quotes", [(1, False), (2, False), (3, True), (4, True)])
def test_fast_import_matches_record_by_record(tmp_path, monkeypatch, chunk, seed, quotes):
    monkeypatch.setattr(importer_mod, "CHUNK_CHARS", chunk)
    monkeypatch.setattr(importer_mod, "BATCH", 37)
    monkeypatch.setattr(importer_mod, "WRITE_ROWS", 50)
    text = messy_csv(seed, quotes=quotes)
    p = tmp_path / "a.csv"
    p.write_bytes(text.encode("utf-8"))
    want_rows, want_bad = reference(text)
    with Manifest(tmp_path / "m.db") as m:
        rep = m.import_csv(p)
        got = dict(m._db.execute("SELECT waybill, town FROM manifest"))
    assert rep.error is None
    assert rep.bad_rows == want_bad
    assert got == want_rows
    assert rep.imported >= len(want_rows)


def test_fast_import_gbk_and_text(tmp_path):
    text = messy_csv(5, 200, quotes=False).replace("\x00", "")
    want_rows, want_bad = reference(text)
    p = tmp_path / "g.csv"
    p.write_bytes(text.encode("gbk"))
    with Manifest(tmp_path / "m.db") as m:
        rep = m.import_csv(p)
        assert rep.encoding == "gb18030" and rep.bad_rows == want_bad
        assert dict(m._db.execute("SELECT waybill, town FROM manifest")) == want_rows
    with Manifest(tmp_path / "m2.db") as m:
        rep = m.import_csv_text(text)
        assert rep.bad_rows == want_bad
        assert dict(m._db.execute("SELECT waybill, town FROM manifest")) == want_rows
