"""The durable parcel records: SQLite (WAL) store, queries, daily export and the writer thread."""
