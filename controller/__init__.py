"""The sorting core: config models, routing, records, timing, service, API, wiring and CLI."""
