"""The example line configurations, shipped as package data (`sorter.examples`).

Found with importlib.resources when no --config is given; every file a config names is relative to it."""
