"""Config models (pydantic, unknown keys refused) and the YAML loader that reports file:line: key.path.

The bottom layer: it imports nothing else from sorter."""
