"""Settings: precedence of flags over environment over config file, and errors naming the key."""

import pytest

from engine.config import load_settings
from engine.errors import ConfigError


def test_precedence(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('port = 4000\nadmin_port = 4001\nmin_idle = 3\n[services.shop.functions."/slow"]\ntime_limit_s = 2\n')
    s = load_settings({"config": str(cfg), "port": 5000}, environ={"ENGINE_ADMIN_PORT": "5001"})
    assert (s.port, s.admin_port, s.min_idle) == (5000, 5001, 3)
    assert s.overrides_for("shop").functions["/slow"].time_limit_s == 2


def test_yaml_config(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("max_workers: 7\n")
    assert load_settings({"config": str(cfg)}, environ={}).max_workers == 7


def test_bad_value_names_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('port = "lots"\n')
    with pytest.raises(ConfigError, match="port"):
        load_settings({"config": str(cfg)}, environ={})


def test_unknown_key_rejected(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings({"config": str(cfg)}, environ={})
