"""The `site:` section: a technician's mistakes are refused with file:line and the key, and a
secret named but missing from the environment stops the start with the key that names it."""

from __future__ import annotations

import copy

import pytest

from sorter.controller.config.load import ConfigError
from sorter.controller.records.site_sync import SiteForwarder
from sorter.controller.service.mqtt import MqttPublisher
from sorter.controller.service.uploads import Uploads
from tests.conftest import load_line_config

GOOD = {"line_id": "L1", "database": {"url": "postgresql://sorter@127.0.0.1:5/site"},
        "mqtt": {"host": "127.0.0.1"},
        "uploads": [{"name": "zto", "url": "http://127.0.0.1:9/hook", "carriers": ["zto"], "secret_env": "NO_SUCH_VAR"}]}


def test_a_site_section_loads_and_is_off_when_omitted(tmp_path):
    cfg = load_line_config(tmp_path / "a", overrides={"site": copy.deepcopy(GOOD)})
    assert cfg.site.line_id == "L1" and cfg.site.mqtt.port == 1883 and cfg.site.uploads[0].carriers == ["ZTO"]
    assert cfg.site.uploads[0].events == ["arrival", "sort"]
    assert load_line_config(tmp_path / "b").site is None


@pytest.mark.parametrize("override, where, says", [
    ({"site.line_id": "L1/a"}, "site.line_id", "should match pattern"),
    ({"site.database.url": "mysql://sorter@db:3306/site"}, "site.database.url", "postgresql://"),
    ({"site.mqtt.port": 0}, "site.mqtt.port", "greater than or equal to 1"),
    ({"site.uploads.0.url": "ftp://x/y"}, "site.uploads.0.url", "http://"),
    ({"site.uploads.0.events": ["arrival", "delivered"]}, "site.uploads.0.events.1", "'arrival' or 'sort'"),
    ({"site.uploads.0.headers": {"X-Key": "a\r\nInjected: 1"}}, "site.uploads.0.headers", "one line"),
    ({"site.uploads.0.batch_size": 0}, "site.uploads.0.batch_size", "greater than or equal to 1"),
    ({"site.mqtt.colour": "red"}, "site.mqtt.colour", "unknown key"),
])
def test_mistakes_are_refused_with_file_line_and_key(tmp_path, override, where, says):
    with pytest.raises(ConfigError) as exc:
        load_line_config(tmp_path / "c", overrides={"site": copy.deepcopy(GOOD), **override})
    text = "\n".join(exc.value.problems)
    assert f"line.yaml:" in text and f": {where}: " in text and says in text, text
    assert not any(p.split(":")[1] == "None" for p in exc.value.problems), text  # a line number, always


def test_two_targets_of_one_name_are_refused(tmp_path):
    twice = {**copy.deepcopy(GOOD), "uploads": copy.deepcopy(GOOD["uploads"] * 2)}
    with pytest.raises(ConfigError, match="upload target names must be unique: zto"):
        load_line_config(tmp_path / "d", overrides={"site": twice})


def test_a_missing_secret_names_its_key(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)
    cfg = load_line_config(tmp_path / "e", overrides={"site": {
        **copy.deepcopy(GOOD), "database": {**GOOD["database"], "password_env": "NO_SUCH_VAR"},
        "mqtt": {**GOOD["mqtt"], "password_env": "NO_SUCH_VAR"}}})
    with pytest.raises(ValueError, match=r"site\.uploads\.0\.secret_env: environment variable NO_SUCH_VAR"):
        Uploads.from_config(cfg)
    with pytest.raises(ValueError, match=r"site\.database\.password_env: environment variable NO_SUCH_VAR"):
        SiteForwarder.from_config(cfg)
    with pytest.raises(ValueError, match=r"site\.mqtt\.password_env: environment variable NO_SUCH_VAR"):
        MqttPublisher.from_config(cfg)
