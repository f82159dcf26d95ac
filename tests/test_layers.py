"""The layers point one way: config models -> hardware I/O, routing, records -> timing -> service,
API, wiring, CLI, tools. A module may import its own layer's package and the layers below it, never
above; the hardware packages know nothing of parcels, routes or records; the simulated line is a
world of its own (config models, its own code, and vision's label renderer for its cameras).

Read from the source with `ast`, so an import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sorter

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"sorter": "sorter", "sorter.controller": "controller", "sorter.vision": "vision",
                "sorter.plc": "plc", "sorter.tools": "tools"}

# each group and what it may import besides itself
CONFIG = "sorter.controller.config"
# the typed messages between processes and the logging set-up: stdlib only, usable by every layer
BASE = {"sorter.messages", "sorter.logs"}
ALLOWED: dict[str, set[str]] = {
    "sorter.messages": set(),
    "sorter.logs": set(),
    CONFIG: set(),
    "sorter.plc": {CONFIG},
    "sorter.vision": {CONFIG},
    "sorter.controller.routing": {CONFIG},
    "sorter.controller.records": {CONFIG},
    "sorter.plc.sim": {CONFIG, "sorter.vision.labels", "sorter.vision.code128", "sorter.vision.geometry"},
    "sorter.controller.timing": {CONFIG, "sorter.plc", "sorter.controller.routing"},
    # the top: the service process, the API, the wiring, the CLI and the tools may import anything
    # below (the simulated line only through the wiring and the CLI that start it)
    "sorter.controller.service": {CONFIG, "sorter.plc", "sorter.vision", "sorter.controller.routing",
                                  "sorter.controller.records", "sorter.controller.timing"},
}
TOP = {"sorter.controller.api", "sorter.controller.cli", "sorter.controller.app", "sorter.controller.harness",
       "sorter.tools", "sorter"}
ALLOWED["sorter.controller.api"] = ALLOWED["sorter.controller.service"] | {"sorter.controller.service"}


def modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGE_DIRS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = path
    return out


def group_of(module: str) -> str:
    best = ""
    for g in list(ALLOWED) + sorted(TOP):
        if (module == g or module.startswith(g + ".")) and len(g) > len(best):
            best = g
    return best


def imports_of(module: str, path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            out += [(node.lineno, f"{target}.{a.name}") for a in node.names]
    # `from sorter import logs` names the top package too: its __init__ is only a docstring
    return [(n, t) for n, t in out if t.startswith("sorter.")]


def test_every_module_is_in_a_layer():
    mods = modules()
    assert len(mods) > 50
    assert not [m for m in mods if not group_of(m)]


def test_no_module_imports_upward():
    mods = modules()
    bad = []
    for mod, path in sorted(mods.items()):
        g = group_of(mod)
        if g in TOP and g not in ALLOWED:
            continue
        allowed = ALLOWED[g] | {g} | BASE
        for line, target in imports_of(mod, path):
            if target not in mods and target.rsplit(".", 1)[0] in mods:
                continue  # `from pkg.mod import name`: the module itself was checked
            tgt = group_of(target) or target
            if not any(target == a or target.startswith(a + ".") for a in allowed) and tgt != g:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {mod} ({g}) imports {target}")
    assert not bad, "imports that point up or across the layers:\n" + "\n".join(bad)


def test_the_hardware_packages_know_no_parcels():
    """plc/ and vision/ import nothing from the sorting core (config models only)."""
    mods = modules()
    for mod, path in mods.items():
        if mod.startswith(("sorter.plc", "sorter.vision")) and not mod.startswith("sorter.plc.sim"):
            for line, target in imports_of(mod, path):
                assert not target.startswith("sorter.controller.") or target.startswith(CONFIG), \
                    f"{path}:{line}: {target}"


@pytest.mark.parametrize("name", ["sorter.controller.config", "sorter.controller.timing", "sorter.plc"])
def test_layer_check_sees_a_planted_upward_import(tmp_path, name):
    """The check itself: a module of a low layer that imports the service is caught."""
    src = tmp_path / "m.py"
    src.write_text("from sorter.controller.service.service import Service\n")
    g = group_of(name + ".planted")
    assert g == name
    targets = [t for _, t in imports_of(name + ".planted", src)]
    assert any(not any(t == a or t.startswith(a + ".") for a in ALLOWED[g] | {g}) for t in targets)


def test_one_top_level_package():
    assert Path(sorter.__file__).parent.name == "sorter"
