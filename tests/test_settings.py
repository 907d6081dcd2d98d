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
    s = settings_mod.load({"S3GATE_CONFIG": str(cfg), "S3GATE_PORT": "7000", "S3GATE_TRUST_FORWARDED": "yes"})
    assert s.port == 7000
    assert s.part_size == 16 * 1024 * 1024
    assert s.download_mode == "redirect"
    assert s.trust_forwarded is True


@pytest.mark.parametrize(
    "env,message",
    [
        ({"S3GATE_PORT": "many"}, "port"),
        ({"S3GATE_DOWNLOAD_MODE": "teleport"}, "download_mode"),
        ({"S3GATE_PART_SIZE": "1MiB"}, "part_size"),
        ({"S3GATE_UPLOAD_MEMORY_BUDGET": "1MiB"}, "upload_memory_budget"),
        ({"S3GATE_SHUTDOWN_TIMEOUT": "60"}, "shutdown_timeout"),
        ({"S3GATE_TRUST_FORWARDED": "maybe"}, "trust_forwarded"),
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
