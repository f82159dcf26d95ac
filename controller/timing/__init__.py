"""Timing: belt clock, parcel tracker, diverter output windows, encoder latch, PLC-tracking mailbox and the timing loop.

Nothing here may wait on JSON, SQLite, HTTP or threads: it runs alone in the timing process."""
