"""The route table: ordered rules on what the manifest says about a parcel -> its chute(s).

A rule matches on any of: carrier, town (one or a list), sort code (三段码) segment patterns,
service class, weight range, the intercept flag; it sends the parcel to a chute, or to a chute
group (one big town spread over several chutes, balanced), with an optional alternate for when
they are full or disabled. The first rule that matches wins; `default:` takes the rest (the
manual chute); `intercept:` is the chute for parcels a carrier has asked to stop (拦截件) that no
`intercept: true` rule takes. An intercepted parcel is never routed by an ordinary rule.

The table is written in YAML (rules: [...]) or CSV (one rule a line). Loading validates
everything and reports `file:line: problem` for each mistake: unknown chutes, carriers or towns,
duplicate rules, rules an earlier rule makes unreachable, bad patterns. The table is immutable;
its version is the content hash of its files.

    rules:
      - {town: 泽国镇, chute: C06}
      - {town: 城东街道, chutes: [C02, C17], alternate: MANUAL}   # a group, balanced
      - {sort_code: "576-W30-*", chute: C06}                      # 三段码 segments, glob patterns
      - {carrier: SF, service: 冷链, chute: C18}
      - {weight_kg: [30, null], chute: MANUAL}                    # 30 kg and over
      - {intercept: true, carrier: JD, chute: C19}
    default: MANUAL
    intercept: MANUAL

The package: ``table`` (Facts, the rules, the table and its matching) and ``loader`` (the files ->
a table, with file:line errors), which builds on it.
"""

from __future__ import annotations

from sorter.controller.routing.routes.loader import (ACTIONS, CONDITIONS, CSV_COLUMNS, RULE_KEYS, RULE_KEYS_SHOWN,
                                                     TOP_KEYS, RoutesError, load_routes)
from sorter.controller.routing.routes.table import Facts, Rule, RouteTable, SortCodePattern
