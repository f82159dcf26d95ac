"""Config of routing (the `routing:` section of a line file): where the route table, the
manifest, the gazetteer and the carriers' formats are, and the optional real-time lookup."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from sorter.controller.config.base import Strict


class LookupConfig(Strict):
    """Real-time lookup of a waybill the manifest does not have (carrier or platform HTTP API).

    The service process queries it as soon as a camera reads the waybill (never the timing
    process) and writes the answer into the manifest, where the parcel's decision finds it. An
    answer later than the parcel's decision is still stored (for a re-scan); the parcel itself
    goes `no_route` with the lookup's state as its reason.
    """

    url: str = Field(min_length=8, max_length=500,
                     description="URL template, e.g. http://10.0.0.5/api/waybill/{waybill}?carrier={carrier}; "
                                 "answer: JSON object with the manifest's column names (town, sort_code, "
                                 "address, carrier, service, weight_kg, intercept); 404 = not known")
    timeout_ms: float = Field(default=250, ge=5, le=10_000,
                              description="per query; capped at the parcel's decision budget (scan-zone "
                                          "transit time + decision grace)")
    carriers: list[str] = Field(default_factory=list,
                                description="carrier codes to look up (empty: every carrier)")
    cache_size: int = Field(default=50_000, ge=0, le=10_000_000, description="answers kept (LRU)")
    cache_ttl_s: float = Field(default=600, ge=0, le=86_400, description="how long a found answer is kept")
    negative_ttl_s: float = Field(default=60, ge=0, le=86_400, description="how long a 'not known' is kept")
    workers: int = Field(default=4, ge=1, le=64, description="queries in flight at once")
    max_pending: int = Field(default=1000, ge=1, le=100_000, description="queued queries beyond which reads are dropped")
    breaker_failures: int = Field(default=5, ge=1, le=1000,
                                  description="consecutive failures (timeouts, errors) that open the circuit")
    breaker_cooldown_s: float = Field(default=10, ge=0.1, le=3600,
                                      description="no query while the circuit is open; then one trial query")
    token_env: str | None = Field(default=None, description="environment variable holding a bearer token")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("lookup url must start with http:// or https://")
        if "{waybill}" not in v:
            raise ValueError("lookup url must contain {waybill}")
        try:
            v.format(waybill="X", carrier="Y")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"lookup url: only {{waybill}} and {{carrier}} may be used ({exc})") from None
        return v

    @field_validator("carriers")
    @classmethod
    def _carriers(cls, v: list[str]) -> list[str]:
        return [c.strip().upper() for c in v]


class RoutingConfig(Strict):
    routes: Path = Field(description="route table (YAML, or CSV): rules -> chutes")
    manifest: Path = Field(description="SQLite manifest database (waybill -> town / sort code / address), relative "
                                       "to data_dir")
    towns: Path | None = Field(default=None, description="gazetteer (towns.yaml); default: the towns the rules name")
    carriers: Path | None = Field(default=None, description="carriers' waybill formats (carriers.yaml); default: built in")
    lookup: LookupConfig | None = Field(default=None, description="real-time lookup of waybills not in the manifest")
    reload_max_rule_drop: float = Field(
        default=0.5, ge=0, le=1,
        description="largest share of the rules in force a reloaded route file may lose (0.5: a file with "
        "less than half the rules is refused as cut short); a file with no rules or no default is refused "
        "whatever this says. A forced reload (POST /api/routes/reload?force=true, with the token) installs "
        "it anyway; 1 = no limit on the fall")
    manifest_inbox: Path | None = Field(
        default=None, description="folder the carriers' advice files are dropped into (e.g. by SFTP): every "
        "complete *.csv / *.json in it is imported into the manifest as `sorter manifest import` does, then moved "
        "to done/ (or to refused/, with a .why naming the bad lines). Upload as NAME.csv.part and rename when "
        "complete, or the file is taken once it is a second old. Relative to data_dir. Unset: no inbox (`sorter sim` uses "
        "MANIFEST-inbox/ beside the manifest MANIFEST.db)")

    def resolve(self, base: Path, data: Path | None = None) -> "RoutingConfig":
        """The same with every relative path made absolute: the config files' relative to `base` (the
        line file's folder), the manifest's and the inbox's to `data` (the data_dir; default `base`)."""
        data = base if data is None else data
        upd = {k: (data if k in ("manifest", "manifest_inbox") else base) / getattr(self, k)
               for k in ("routes", "manifest", "towns", "carriers", "manifest_inbox") if getattr(self, k) is not None}
        return self.model_copy(update=upd)


def manifest_inbox_folder(routing: RoutingConfig, sim: bool = False) -> Path | None:
    """The advice inbox of a line: `routing.manifest_inbox`, or when unset and the line is the
    simulated one (`sorter sim`, the test drives), `STEM-inbox/` beside the manifest STEM.db (named
    after it: two lines whose manifests share a folder must not share an inbox). The one place both
    the simulated carriers (who write there) and the importer (who reads there) ask."""
    if routing.manifest_inbox is not None:
        return Path(routing.manifest_inbox)
    if not sim:
        return None
    m = Path(routing.manifest)
    return m.parent / f"{m.stem}-inbox"
