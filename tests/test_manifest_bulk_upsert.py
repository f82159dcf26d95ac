"""A bulk upsert binds many rows per INSERT statement (store.ROWS_PER_STATEMENT): it must store
what a row-by-row upsert stores -- the later of two rows of a waybill, inside one statement or
across two, the rows after the last full statement, every value in its own column -- and a row of
the wrong width must still fail rather than shift the values of the rows after it."""

from __future__ import annotations

import sqlite3

import pytest

import sorter.controller.routing.manifest.store as store_mod
from sorter.controller.routing.manifest import Manifest

K = store_mod.ROWS_PER_STATEMENT


def stored(m: Manifest) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in m._db.execute("SELECT waybill, town, carrier, intercept FROM manifest")}


@pytest.mark.parametrize("n", [1, K - 1, K, K + 1, 2 * K + 37])
def test_every_row_lands_in_its_own_columns(tmp_path, n):
    rows = [(f"75{i:012d}", f"镇{i % 7}", f"C{i % 5}X") for i in range(n)]
    with Manifest(tmp_path / "m.db") as m:
        assert m.upsert(rows, ("waybill", "town", "carrier")) == n
        assert stored(m) == {w: (t, c, 0) for w, t, c in rows}


def test_the_later_row_of_a_waybill_wins_within_one_statement_and_across_two(tmp_path):
    rows = [(f"75{i:012d}", "泽国镇") for i in range(2 * K + 5)]
    rows[3] = ("75000000000001", "松门镇")        # same statement as row 1
    rows[K + 2] = ("75000000000002", "大溪镇")    # the next statement
    rows[-1] = ("75000000000000", "箬横镇")       # the rows after the last full statement
    with Manifest(tmp_path / "m.db") as m:
        m.upsert(rows)
        assert m.lookup("75000000000001") == "松门镇"
        assert m.lookup("75000000000002") == "大溪镇"
        assert m.lookup("75000000000000") == "箬横镇"
        assert m.count() == len({w for w, _ in rows})


def test_a_row_of_the_wrong_width_fails_and_stores_nothing(tmp_path):
    rows = [(f"75{i:012d}", "泽国镇") for i in range(3 * K)]
    rows[K // 2] = ("75999999999999", "泽国镇", "571-W30-02")   # one value too many
    rows[K // 2 + 1] = ("75888888888888",)                       # and one too few: same total
    with Manifest(tmp_path / "m.db") as m:
        with pytest.raises(sqlite3.ProgrammingError):
            m.upsert(rows)
        assert m.count() == 0


def test_a_re_sent_row_replaces_the_old_advice_whole(tmp_path):
    with Manifest(tmp_path / "m.db") as m:
        m.upsert([(f"75{i:012d}", "松门镇", "576-W08-01", "温岭市松门镇", "STO", "standard", 2.5, 1)
                  for i in range(K + 3)])
        m.upsert([(f"75{i:012d}", "泽国镇", "ZTO") for i in range(K + 3)], ("waybill", "town", "carrier"))
        rows = {tuple(m.lookup_row(f"75{i:012d}")) for i in range(K + 3)}
    assert rows == {("泽国镇", None, None, "ZTO", None, None, 0)}
