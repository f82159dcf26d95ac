"""Config of a site of several lines (the `site:` section of a line file): the central PostgreSQL
database the records are forwarded to, the MQTT broker the line publishes to, and the HTTP webhooks
that carriers and the county platform receive arrival scans (到件) and sort results (分拣) on.

Every part is off unless its key is set. Secrets (database password, MQTT password, webhook
signing keys) are named by an environment variable, never written in the file: the file is often
copied around, the environment (`/etc/sorter/env` under systemd) is not.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from sorter.controller.config.base import Strict

LINE_ID = r"^[A-Za-z0-9_-]{1,32}$"  # a topic level and a database key: no '/', '+', '#' or spaces
EVENTS = ("arrival", "sort")


class SiteDatabaseConfig(Strict):
    """The site's central PostgreSQL database. The line keeps writing its local SQLite file (the
    buffer); a forwarder sends its records there in order, and catches up after an outage."""

    url: str = Field(min_length=14, max_length=500,
                     description="libpq URL, e.g. postgresql://sorter@10.0.0.2:5432/site (the password from "
                                 "`password_env`, or ~/.pgpass)")
    password_env: str | None = Field(default=None, max_length=64,
                                     description="environment variable holding the database password")
    batch: int = Field(default=500, ge=1, le=10_000, description="records sent per transaction")
    retry_max_s: float = Field(default=30, ge=0.1, le=3600,
                               description="longest wait between two reconnection attempts (the wait doubles "
                                           "from 0.5 s up to this)")
    connect_timeout_s: float = Field(default=5, ge=1, le=120, description="per connection attempt")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("site database url must start with postgresql://")
        return v


class MqttConfig(Strict):
    """The MQTT broker the line publishes its availability, state, parcel events, alarms and
    statistics to (topics in README.md, *A site of several lines*)."""

    host: str = Field(min_length=1, max_length=253, description="broker host name or address")
    port: int = Field(default=1883, ge=1, le=65535, description="broker TCP port")
    topic_prefix: str = Field(default="sorter", pattern=r"^[A-Za-z0-9_/-]{1,64}$",
                              description="first topic level(s); the topics are <prefix>/<line_id>/…")
    client_id: str | None = Field(default=None, max_length=64,
                                  description="MQTT client id (default: sorter-<line_id>)")
    username: str | None = Field(default=None, max_length=128, description="broker user name")
    password_env: str | None = Field(default=None, max_length=64,
                                     description="environment variable holding the broker password")
    keepalive_s: int = Field(default=30, ge=5, le=3600,
                             description="MQTT keepalive: the broker declares the line offline (its last will) "
                                         "after 1.5 × this without a word")
    stats_interval_s: float = Field(default=10, ge=1, le=3600, description="how often the stats topic is published")
    queue_max: int = Field(default=100_000, ge=100, le=10_000_000,
                           description="messages kept in memory while the broker is unreachable; past this, new "
                                       "parcel events are dropped (counted)")
    reconnect_max_s: int = Field(default=30, ge=1, le=3600,
                                 description="longest wait between two reconnection attempts (the wait doubles "
                                             "from 1 s up to this)")


class UploadTarget(Strict):
    """One HTTP webhook: a carrier's or the county platform's receiver."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$", description="target name (page, API, outbox rows)")
    url: str = Field(min_length=8, max_length=500, description="http:// or https:// URL the events are POSTed to")
    events: list[Literal["arrival", "sort"]] = Field(
        default_factory=lambda: list(EVENTS), min_length=1,
        description="arrival: 到件 arrival scan of each parcel with a waybill; sort: 分拣 its outcome and chute")
    carriers: list[str] = Field(default_factory=list,
                                description="only parcels of these carrier codes (empty: every carrier)")
    headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers, e.g. an API key")
    secret_env: str | None = Field(default=None, max_length=64,
                                   description="environment variable holding the HMAC-SHA256 key; the body's "
                                               "signature goes in X-Sorter-Signature: sha256=<hex>")
    batch_size: int = Field(default=50, ge=1, le=1000, description="events per POST")
    timeout_s: float = Field(default=10, ge=0.5, le=300, description="per request")
    max_tries: int = Field(default=12, ge=1, le=1000,
                           description="failed tries after which an event is dead-lettered (re-sent from the page)")
    backoff_s: float = Field(default=1, ge=0.01, le=3600,
                             description="wait after the first failure; it doubles with each failure in a row")
    backoff_max_s: float = Field(default=300, ge=0.01, le=86_400, description="longest wait between two tries")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("upload url must start with http:// or https://")
        return v

    @field_validator("carriers")
    @classmethod
    def _carriers(cls, v: list[str]) -> list[str]:
        return [c.strip().upper() for c in v]

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not k or any(c in k for c in " :\r\n") or any(c in val for c in "\r\n"):
                raise ValueError(f"header {k!r}: a name without spaces or ':', a value on one line")
        return v


class SiteConfig(Strict):
    """This line as one of a site's several lines. Each part is off unless configured."""

    line_id: str = Field(pattern=LINE_ID, description="this line's id at the site (letters, digits, _ -): the "
                                                      "MQTT topic level and the site database's line_id column")
    database: SiteDatabaseConfig | None = Field(default=None, description="central PostgreSQL database for the "
                                                                          "records (off when omitted)")
    mqtt: MqttConfig | None = Field(default=None, description="MQTT publishing (off when omitted)")
    uploads: list[UploadTarget] = Field(default_factory=list, max_length=32,
                                        description="HTTP webhooks for carriers and the platform (none: off)")

    @model_validator(mode="after")
    def _unique_targets(self) -> "SiteConfig":
        names = [t.name for t in self.uploads]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"upload target names must be unique: {', '.join(dup)}")
        return self
