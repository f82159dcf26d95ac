"""Whether a valid route table is safe to put in force: a table can be valid and still stop the
line (an editor that truncates before it writes, a file cut short by a full disk or a bad copy).

A table with no rules, or with no default, sends every parcel (or every parcel no rule names) to
reject as `no_route`; one that lost most of the rules of the table in force is almost always a
cut-short file. These are refused on reload unless a person forces it, and `sorter routes check`
reports them as errors.
"""

from __future__ import annotations

from sorter.controller.routing.routes.table import RouteTable

FORCE_HINT = "a forced reload (POST /api/routes/reload?force=true, with the token) installs it anyway"


def unsafe(new: RouteTable, in_force: RouteTable | None = None, max_rule_drop: float = 0.5) -> list[str]:
    """Why `new` must not replace `in_force` (or, without one, go live at all); [] when it may.
    max_rule_drop: the largest share of the rules in force the new table may lose."""
    out = []
    if not new.rules:
        out.append(f"{new.path}: no rules (an empty or cut-short file?): every parcel would go "
                   f"to {'the default ' + new.default if new.default else 'reject as no_route'}")
    if new.default is None:
        out.append(f"{new.path}: no default: chute (a cut-short file?): every parcel no rule takes "
                   f"would go to reject as no_route")
    if in_force is not None and in_force.rules and new.rules:
        before, after = len(in_force.rules), len(new.rules)
        fall = (before - after) / before
        if fall > max_rule_drop:
            out.append(f"{new.path}: {after} rules where the table in force has {before} (a fall of "
                       f"{fall:.0%}, more than routing.reload_max_rule_drop {max_rule_drop:.0%}): "
                       f"a cut-short file?")
    return out
