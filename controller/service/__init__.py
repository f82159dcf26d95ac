"""The service process: supervises the timing and camera processes, relays reads, keeps records, alarms and statistics."""
