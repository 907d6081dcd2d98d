"""Settings: file, environment, coercion, checks, and every one documented."""

import re
from dataclasses import fields
from pathlib import Path

import pytest

from s3gate import settings as settings_mod
from s3gate.errors import ConfigError
from s3gate.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_environment_wins_over_file(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('[s3gate]\nport = 6000\npart_size = "16MiB"\ndownload_mode = "redirect"\n')
    s = settings_mod.load({"S3GATE_CONFIG": str(cfg), "S3GATE_PORT": "7000", "S3GATE_TRUSTED_PROXIES": "::1"})
    assert s.port == 7000
    assert s.part_size == 16 * 1024 * 1024
    assert s.download_mode == "redirect"
    assert s.trusted_proxies == "::1"


@pytest.mark.parametrize(
    "env,message",
    [
        ({"S3GATE_PORT": "many"}, "port"),
        ({"S3GATE_DOWNLOAD_MODE": "teleport"}, "download_mode"),
        ({"S3GATE_PART_SIZE": "1MiB"}, "part_size"),
        ({"S3GATE_UPLOAD_MEMORY_BUDGET": "1MiB"}, "upload_memory_budget"),
        ({"S3GATE_SHUTDOWN_TIMEOUT": "60"}, "shutdown_timeout"),
        ({"S3GATE_TRUSTED_PROXIES": "127.0.0.1, nginx"}, "trusted_proxies: 'nginx' is not an IP address"),
        ({"S3GATE_TLS_CERT": "cert.pem"}, "tls_cert and tls_key go together"),
        ({"S3GATE_HTTP_REDIRECT_PORT": "8080"}, "http_redirect_port redirects to HTTPS"),
    ],
)
def test_bad_values_refused_at_start(env, message):
    with pytest.raises(ConfigError, match=message):
        settings_mod.load(env, use_file=False)


def test_unknown_setting_in_file_is_an_error(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text("[s3gate]\nprot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        settings_mod.load({"S3GATE_CONFIG": str(cfg)})


def test_secrets_redacted():
    s = settings_mod.load({"S3GATE_S3_SECRET_KEY": "hunter2-secret"}, use_file=False)
    assert "hunter2-secret" not in repr(s.redacted())


def test_every_setting_documented_in_readme_and_example():
    readme = (ROOT / "README.md").read_text()
    readme = readme[readme.index("\n## Settings") :]
    readme = readme[: readme.index("\n## ", 5)]
    example = (ROOT / "config" / "s3gate.example.toml").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", readme, re.M))
    names = {f.name for f in fields(Settings)}
    assert names - documented == set(), "settings missing from README's settings table"
    assert documented - names == set(), "README documents settings that do not exist"
    in_example = set(re.findall(r"^#? ?([a-z0-9_]+) =", example, re.M))
    assert names - in_example == set(), "settings missing from config/s3gate.example.toml"


def test_example_config_loads_and_equals_defaults():
    s = settings_mod.load({"S3GATE_CONFIG": str(ROOT / "config" / "s3gate.example.toml")})
    assert s == settings_mod.load({}, use_file=False)


@pytest.mark.parametrize(
    "env,message",
    [
        ({"S3GATE_LOG_LEVEL": "loud"}, "log_level must be one of"),
        ({"S3GATE_WORKERS": "-1"}, "workers must be >= 0"),
        ({"S3GATE_EVENT_LOOP": "trio"}, "event_loop must be uvloop or asyncio"),
        ({"S3GATE_HOST": "not a host"}, "host must be"),
        ({"S3GATE_HOST": "-bad-.example"}, "host must be"),
        ({"S3GATE_PORT": "0"}, "port must be between"),
        ({"S3GATE_PORT": "70000"}, "port must be between"),
        ({"S3GATE_EMBEDDED_S3_PORT": "60000"}, "embedded_s3_port"),
        ({"S3GATE_S3_ENDPOINT": "localhost:9000"}, "s3_endpoint must be an http"),
        ({"S3GATE_PUBLIC_URL": "https://files.example.org:port/"}, "public_url must be an http"),
        ({"S3GATE_PART_SIZE": "1e400"}, "part_size: expected a number"),
        ({"S3GATE_S3_TIMEOUT": "nan"}, "s3_timeout: expected a finite number"),
        ({"S3GATE_S3_TIMEOUT": "0"}, "s3_timeout must be > 0"),
        ({"S3GATE_PORT": "٥٠٠٠"}, "port: expected a number"),  # Arabic-Indic digits
        ({"S3GATE_S3_MAX_CONNECTIONS": "0"}, "s3_max_connections"),
        ({"S3GATE_MAX_FORM_FILES": "0"}, "max_form_files"),
        ({"S3GATE_DOWNLOAD_CHUNK": "0"}, "download_chunk"),
        ({"S3GATE_ABORT_STALE_UPLOADS_HOURS": "-1"}, "abort_stale_uploads_hours"),
    ],
)
def test_every_setting_is_checked(env, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        settings_mod.load(env, use_file=False)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "0.0.0.0", "localhost", "files.example.org"])
def test_good_hosts_pass(host):
    assert settings_mod.load({"S3GATE_HOST": host}, use_file=False).host == host


def test_log_level_any_case():
    assert settings_mod.load({"S3GATE_LOG_LEVEL": "WARNING"}, use_file=False).log_level == "WARNING"


def test_unknown_variable_is_refused_like_an_unknown_key():
    with pytest.raises(ConfigError, match=r"S3GATE_MAX_UPLOD_BYTES \(did you mean S3GATE_MAX_UPLOAD_BYTES\?\)"):
        settings_mod.load({"S3GATE_MAX_UPLOD_BYTES": "1"}, use_file=False)
    # Not settings, but s3gate's own: the config file's path.
    assert settings_mod.load({"S3GATE_CONFIG": "/nonexistent.toml"}, use_file=False).port == 5000


def test_unknown_key_in_file_gets_a_suggestion(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text("[s3gate]\npart_sise = 1\n")
    with pytest.raises(ConfigError, match=r"part_sise \(did you mean part_size\?\)"):
        settings_mod.load({"S3GATE_CONFIG": str(cfg)})


@pytest.mark.parametrize("where", ["file", "environment", "override"])
def test_trust_forwarded_is_refused_naming_its_replacement(tmp_path, where):
    """The yes/no setting became a list of proxies: an old configuration stops with what to write instead."""
    cfg = tmp_path / "s.toml"
    cfg.write_text("[s3gate]\ntrust_forwarded = true\n" if where == "file" else "[s3gate]\n")
    env = {"S3GATE_CONFIG": str(cfg)}
    overrides = {}
    if where == "environment":
        env["S3GATE_TRUST_FORWARDED"] = "1"
    if where == "override":
        overrides["trust_forwarded"] = True
    with pytest.raises(ConfigError) as caught:
        settings_mod.load(env, **overrides)
    assert str(caught.value).startswith("trust_forwarded was replaced by trusted_proxies")
    assert 'trusted_proxies = "127.0.0.1, ::1"' in str(caught.value)


def test_trusted_proxies_parsed_once():
    s = settings_mod.load({"S3GATE_TRUSTED_PROXIES": "127.0.0.1/32, ::1 10.1.2.3/8 unix"}, use_file=False)
    assert [str(n) for n in s.trusted_networks] == ["127.0.0.1/32", "::1/128", "10.0.0.0/8", "unix"]
    assert s.trusted_networks is s.trusted_networks


def test_a_password_in_the_users_database_url_is_redacted():
    s = settings_mod.load(
        {"S3GATE_USERS_DB": "postgresql://gate:hunter2@db.internal/users", "S3GATE_SECRET_FILE": "/s"}, use_file=False
    )
    assert "hunter2" not in repr(s.redacted()) and s.redacted()["users_db"] == "postgresql://gate:***@db.internal/users"
