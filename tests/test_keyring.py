"""The gateway's keys: per-host files by default, derived from one shared secret for a cluster."""

import pytest

from s3gate import settings as settings_mod
from s3gate.errors import ConfigError
from s3gate.keyring import server_key


def test_without_a_secret_file_each_key_is_a_private_file_that_stays(tmp_path):
    link = server_key(tmp_path, "", "link-signing")
    proof = server_key(tmp_path, "", "password-proof")
    assert len(link) == len(proof) == 32 and link != proof
    assert (tmp_path / "link-signing.key").stat().st_mode & 0o777 == 0o600
    assert server_key(tmp_path, "", "link-signing") == link  # the file is read back, not remade
    assert server_key(tmp_path / "other", "", "link-signing") != link  # another host: another key


def test_a_shared_secret_gives_every_instance_the_same_keys(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("x" * 40 + "\n")
    a = [server_key(tmp_path / "a", str(secret), p) for p in ("link-signing", "password-proof")]
    b = [server_key(tmp_path / "b", str(secret), p) for p in ("link-signing", "password-proof")]
    assert a == b and a[0] != a[1]
    assert not (tmp_path / "a").exists()  # nothing written per instance
    secret.write_text("y" * 40)
    assert server_key(tmp_path / "a", str(secret), "link-signing") != a[0]


def test_a_short_or_missing_secret_is_refused(tmp_path):
    short = tmp_path / "short"
    short.write_text("too short")
    with pytest.raises(ConfigError, match="at least 32"):
        server_key(tmp_path, str(short), "link-signing")
    with pytest.raises(ConfigError, match="secret_file"):
        server_key(tmp_path, str(tmp_path / "nope"), "link-signing")


def test_postgresql_needs_a_shared_secret():
    with pytest.raises(ConfigError, match="secret_file is required"):
        settings_mod.load(environ={}, use_file=False, users_db="postgresql://gate@127.0.0.1/users")
    ok = settings_mod.load(environ={}, use_file=False, users_db="postgresql://gate@127.0.0.1/users", secret_file="/s")
    assert ok.secret_file == "/s"
