"""Alarms with a life (controller/service/alarm_book.py) on a clock of the test's, their history in
a real record database; and the audit rows themselves."""

from __future__ import annotations

from sorter.controller.records.store import RecordStore
from sorter.controller.service.alarm_book import REOPEN_S, AlarmBook, code_of


class Clock:
    def __init__(self):
        self.t = 1_700_000_000.0

    def __call__(self):
        return self.t


def test_codes_and_parameters_for_the_page():
    assert code_of("camera_top") == ("camera_down", {"camera": "top"})
    assert code_of("camera_side_2_drops") == ("camera_drops", {"camera": "side_2"})
    assert code_of("camera_top_health") == ("camera_health", {"camera": "top"})
    assert code_of("plc_link") == ("plc_link", {})


def test_an_alarm_lives_counts_comes_back_and_is_kept(tmp_path):
    clock = Clock()
    with RecordStore(tmp_path / "records.db") as store:
        book = AlarmBook(store.save_alarm, wall=clock)
        book.update([{"id": "plc_link", "text": "no connection", "since_wall": clock.t}])
        a = book.active()[0]
        assert (a["code"], a["severity"], a["count"], a["first_wall"]) == ("plc_link", "critical", 1, clock.t)
        clock.t += 5
        book.update([{"id": "plc_link", "text": "no connection (3 tries)", "since_wall": clock.t - 5},
                     {"id": "camera_top", "text": "camera top: no frames", "since_wall": clock.t}])
        a = book.active()
        assert [x["id"] for x in a] == ["plc_link", "camera_top"]            # critical first
        assert a[0]["count"] == 2 and a[0]["last_wall"] == clock.t and a[0]["first_wall"] == clock.t - 5
        assert book.ack("plc_link", "sam") and not book.ack("nope", "sam")
        assert book.active()[0]["acked_by"] == "sam"
        # cleared, and back within REOPEN_S: the same alarm, counted, the acknowledge undone
        clock.t += 1
        book.update([{"id": "camera_top", "text": "camera top: no frames", "since_wall": clock.t - 1}])
        assert [x["id"] for x in book.active()] == ["camera_top"]
        clock.t += 10
        book.update([{"id": "plc_link", "text": "no connection", "since_wall": clock.t},
                     {"id": "camera_top", "text": "camera top: no frames", "since_wall": clock.t - 11}])
        a = book.active()[0]
        assert a["id"] == "plc_link" and a["count"] == 3 and a["acked_by"] is None
        # shelved: still listed (marked), for at most the time given
        assert book.shelve("camera_top", "sam", 600)
        assert next(x for x in book.active() if x["id"] == "camera_top")["shelved"] is True
        clock.t += 601
        assert next(x for x in book.active() if x["id"] == "camera_top")["shelved"] is False
        # cleared for good: its history row is closed and stays
        book.update([])
        clock.t += REOPEN_S + 1
        book.update([])
        assert book.active() == [] and book.lives == {}
        hist = store.alarm_history()
    by_id = {h["alarm_id"]: h for h in hist}
    assert len(hist) == 2 and by_id["plc_link"]["count"] == 3 and by_id["plc_link"]["cleared_wall"] is not None
    assert by_id["camera_top"]["shelved_by"] == "sam" and by_id["camera_top"]["code"] == "camera_down"


def test_audit_rows_are_cut_not_refused(tmp_path):
    with RecordStore(tmp_path / "records.db") as store:
        store.add_audit("sam", "supervisor", "key", "r1/1 " + "x" * 5000, "refused", "\ud800 lone", "10.0.0.9")
        row = store.recent_audit(1)[0]
    assert len(row["target"]) == 500 and row["detail"].endswith("lone") and row["client"] == "10.0.0.9"
