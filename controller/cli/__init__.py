"""The `sorter` command, one module per area."""
