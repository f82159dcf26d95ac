import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sorter.controller.routing.manifest import Manifest

ROOT = Path(__file__).resolve().parents[1]


def test_upsert_lookup_count(tmp_path):
    m = Manifest(tmp_path / "m.db")
    assert m.count() == 0
    assert m.upsert([("75123456789012", "泽国镇"), ("SF1423456789012", "大溪镇")]) == 2
    assert m.lookup("75123456789012") == "泽国镇"
    assert m.lookup("SF1423456789012") == "大溪镇"
    assert m.lookup("nope") is None
    m.upsert([("75123456789012", "松门镇")])          # update, not a duplicate row
    assert m.lookup("75123456789012") == "松门镇"
    assert m.count() == 2
    assert m.upsert([]) == 0
    m.upsert(iter([("YT7512345678901", "石塘镇")]))    # any iterable
    assert m.count() == 3
    m.close()
    # it is a real file, in WAL mode
    db = sqlite3.connect(tmp_path / "m.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT count(*) FROM manifest").fetchone()[0] == 3


def test_upsert_is_one_transaction(tmp_path):
    m = Manifest(tmp_path / "m.db")
    with pytest.raises(Exception):
        m.upsert([("A1234567", "x"), ("B1234567", None)])  # town NOT NULL
    assert m.count() == 0
    m.close()


def test_readonly(tmp_path):
    w = Manifest(tmp_path / "m.db")
    w.upsert([("75123456789012", "泽国镇")])
    r = Manifest(tmp_path / "m.db", readonly=True)
    assert r.lookup("75123456789012") == "泽国镇"
    with pytest.raises(PermissionError):
        r.upsert([("75123456789013", "x")])
    with pytest.raises(sqlite3.OperationalError):
        r._db.execute("DELETE FROM manifest")
    r.close()
    w.close()


def test_large_upsert_fast(tmp_path):
    m = Manifest(tmp_path / "m.db")
    rows = [(f"75{i:012d}", "泽国镇") for i in range(200_000)]
    t0 = time.perf_counter()
    m.upsert(rows)
    dt = time.perf_counter() - t0
    assert m.count() == 200_000
    assert dt < 5, dt
    m.close()


def write(path: Path, text: str, encoding: str) -> Path:
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_import_encodings(tmp_path, encoding):
    csv_text = "运单号,目的地\r\n75123456789012,泽国镇\r\nSF1423456789012,石桥头镇\r\nYT7512345678901,箬横镇\r\n"
    m = Manifest(tmp_path / "m.db")
    rep = m.import_csv(write(tmp_path / "a.csv", csv_text, encoding))
    assert rep.error is None and rep.bad_rows == []
    assert rep.imported == 3
    assert rep.encoding == ("gb18030" if encoding.startswith("gb") else "utf-8")
    assert m.lookup("SF1423456789012") == "石桥头镇"
    assert m.lookup("YT7512345678901") == "箬横镇"
    m.close()


def test_import_english_header_and_bad_rows(tmp_path):
    csv_text = textwrap.dedent("""\
        waybill,town
        75123456789012,泽国镇
        ,大溪镇
        SF1423456789012
        YT7512345678901,
        JT0012345678901,温峤镇

        bad waybill!,松门镇
        "JDVA12345678901","坞根镇"
        """)
    m = Manifest(tmp_path / "m.db")
    rep = m.import_csv(write(tmp_path / "a.csv", csv_text, "utf-8"))
    assert rep.imported == 3
    lines = [n for n, _ in rep.bad_rows]
    assert lines == [3, 4, 5, 8]
    assert "empty waybill" in rep.bad_rows[0][1]
    assert "columns" in rep.bad_rows[1][1]
    assert "empty town" in rep.bad_rows[2][1]
    assert "bad waybill" in rep.bad_rows[3][1]
    assert "line 3" in rep.summary()
    assert m.lookup("JDVA12345678901") == "坞根镇"
    assert m.lookup("JT0012345678901") == "温峤镇"
    m.close()


def test_import_extra_columns_and_town_header_variant(tmp_path):
    csv_text = "序号,运单号,收件人,乡镇\n1,75123456789012,张三,泽国镇\n2,sf1423456789012 ,李四,大溪镇\n"
    m = Manifest(tmp_path / "m.db")
    rep = m.import_csv(write(tmp_path / "a.csv", csv_text, "gbk"))
    assert rep.imported == 2 and not rep.bad_rows
    assert m.lookup("SF1423456789012") == "大溪镇"   # normalised: stripped, upper case
    m.close()


def test_import_bad_header_and_missing_file(tmp_path):
    m = Manifest(tmp_path / "m.db")
    rep = m.import_csv(write(tmp_path / "a.csv", "foo,bar\n1,2\n", "utf-8"))
    assert rep.error and "header" in rep.error and rep.imported == 0
    rep = m.import_csv(tmp_path / "missing.csv")
    assert rep.error and "cannot read" in rep.error
    rep = m.import_csv(write(tmp_path / "e.csv", "", "utf-8"))
    assert rep.error
    m.close()


WRITER = """
import sys, time
from sorter.controller.routing.manifest import Manifest
m = Manifest(sys.argv[1])
for b in range(20):
    m.upsert([(f"75{b:04d}{i:08d}", "泽国镇" if b % 2 else "大溪镇") for i in range(5000)])
    time.sleep(0.02)
m.upsert([("75999999999999", "last")])
m.close()
"""


def test_concurrent_writer_process_and_reader(tmp_path):
    path = tmp_path / "m.db"
    reader = Manifest(path, readonly=True)   # the controller opens first; the file is created
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT)
    counts = []
    lookups = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # reads never block or fail while the other process writes
        counts.append(reader.count())
        for b in range(20):
            if reader.lookup(f"75{b:04d}{4999:08d}") is not None:
                lookups += 1
        if reader.lookup("75999999999999") == "last":
            break
        time.sleep(0.005)
    assert proc.wait(timeout=30) == 0
    assert reader.lookup("75999999999999") == "last"
    assert reader.count() == 100_001
    assert counts == sorted(counts)            # batches appear whole, in order
    assert any(0 < c < 100_001 for c in counts), counts[:5]  # we saw it while it was writing
    assert all(c % 5000 == 0 or c == 100_001 for c in counts)  # never half a batch
    assert reader.lookup("75000100004999") == "泽国镇"
    reader.close()


def test_readonly_usable_from_another_thread(tmp_path):
    import threading
    w = Manifest(tmp_path / "m.db")
    w.upsert([("75123456789012", "泽国镇")])
    r = Manifest(tmp_path / "m.db", readonly=True)   # built here, used by the "timing thread"
    out = []
    t = threading.Thread(target=lambda: out.append(r.lookup("75123456789012")))
    t.start()
    t.join()
    assert out == ["泽国镇"]
    r.close()
    w.close()
