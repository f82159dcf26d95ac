"""The signal names a line file refers to, checked on the raw YAML data: what `load_config` reports
beside pydantic's errors, so that a misspelt signal name comes in the same pass as the other
mistakes (the full cross-checks, `verify_line`, need a valid config to run on).

Best effort by design: it looks at every `signal`, `*_signal` and diverter `outputs:` value under
`line:` and `plc:` and says which names `io:` does not have; the table and word checks stay with
verify_line.
"""

from __future__ import annotations

from typing import Any


def _refs(node: Any, path: tuple[Any, ...]):
    """(key path, name) of every signal reference below `node` (walked without recursion)."""
    stack = [(node, path)]
    while stack:
        v, p = stack.pop()
        if isinstance(v, dict):
            for k, item in v.items():
                key = str(k)
                if isinstance(item, str) and (key == "signal" or key.endswith("_signal")):
                    yield p + (key,), item
                elif key == "outputs" and isinstance(item, dict):
                    for side, name in item.items():
                        if isinstance(name, str):
                            yield p + (key, str(side)), name
                else:
                    stack.append((item, p + (key,)))
        elif isinstance(v, list):
            stack.extend((item, p + (i,)) for i, item in enumerate(v))


def unknown_signals(data: dict) -> list[tuple[tuple[Any, ...], str]]:
    """(key path, problem) for each signal name under line: and plc: that io: does not define."""
    io = data.get("io")
    if not isinstance(io, dict):
        return []
    out = []
    for section in ("line", "plc"):
        for where, name in _refs(data.get(section), (section,)):
            if name not in io:
                out.append((where, f"signal {name!r} is not in io"))
    return sorted(out, key=lambda p: [str(x) for x in p[0]])
