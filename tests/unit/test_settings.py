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


def test_trusted_proxies_default_to_loopback_and_are_normalised(tmp_path):
    assert load_settings({}, {}).trusted_proxies == ["127.0.0.1/32", "::1/128"]
    s = load_settings({}, {"ENGINE_TRUSTED_PROXIES": '["192.0.2.7", "198.51.100.0/24", "2001:db8::/32"]'})
    assert s.trusted_proxies == ["192.0.2.7/32", "198.51.100.0/24", "2001:db8::/32"]


def test_a_trusted_proxy_that_is_not_an_address_names_the_key_and_value(tmp_path):
    cfg = tmp_path / "engine.toml"
    cfg.write_text('trusted_proxies = ["proxy.internal"]\n')
    with pytest.raises(ConfigError, match=r"trusted_proxies.*proxy\.internal"):
        load_settings({"config": str(cfg)}, {})


@pytest.mark.parametrize("key", ["header_read_timeout_s", "body_read_timeout_s", "keepalive_timeout_s", "response_write_timeout_s",
                                 "max_connections_per_client", "max_connections"])
def test_front_door_limits_must_be_positive(key):
    with pytest.raises(ConfigError, match=key):
        load_settings({}, {f"ENGINE_{key.upper()}": "0"})


def test_a_deployed_environment_s_settings_are_keyed_by_its_domain_name(tmp_path):
    """`[environments."<domain>"]`: matched case-insensitively (as the router does), unknown keys and
    names that are not DNS names refused naming the key."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[environments."Shop-Dev.Example.com"]\nscale_to_zero_after_s = 30\n')
    s = load_settings({"config": str(cfg)}, environ={})
    assert s.environment_overrides("shop-dev.example.com.").scale_to_zero_after_s == 30
    assert s.environment_overrides("shop-prod.example.com").scale_to_zero_after_s is None
    assert s.environment_overrides(None).scale_to_zero_after_s is None
    cfg.write_text('[environments."shop dev"]\nscale_to_zero_after_s = 30\n')
    with pytest.raises(ConfigError, match="environments"):
        load_settings({"config": str(cfg)}, environ={})
    cfg.write_text('[environments."shop-dev.example.com"]\nmin_idle = 3\n')
    with pytest.raises(ConfigError, match="min_idle"):
        load_settings({"config": str(cfg)}, environ={})


def test_image_build_settings_have_their_defaults_and_bounds():
    s = load_settings({}, {})
    assert (s.max_parallel_image_builds, s.build_wait_timeout_s) == (2, 120.0)
    with pytest.raises(ConfigError, match="max_parallel_image_builds"):
        load_settings({"max_parallel_image_builds": 0}, {})
