"""`s3gate users ...` and `s3gate tokens ...` through s3gate.cli.main, on a temporary data dir."""

import asyncio
import io
import json
import os
import sqlite3
import stat
import subprocess
import sys

import pytest

from s3gate import cli
from s3gate import settings as settings_mod
from s3gate.auth import bootstrap
from s3gate.auth.config import check
from s3gate.auth.service import AuthService, InvalidCredentials

from .conftest import PASSWORD

pytestmark = pytest.mark.usefixtures("users_backend")  # SQLite, then PostgreSQL


CLUSTER_ENV = ("S3GATE_USERS_DB", "S3GATE_SECRET_FILE")  # set by users_backend for the PostgreSQL run


@pytest.fixture
def data_dir(tmp_path, monkeypatch, users_backend):
    monkeypatch.chdir(tmp_path)  # no config/s3gate.toml from the repo
    for name in list(os.environ):
        if name.startswith("S3GATE_") and not (name in CLUSTER_ENV and users_backend == "postgresql"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("S3GATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("S3GATE_LOGIN_DELAY", "0")  # tests below log in right after a failure
    return tmp_path / "data"


def run(*argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return cli.main(list(argv))


@pytest.fixture
def s3gate(monkeypatch, capsys):
    """s3gate(*argv, stdin=None) -> (exit code, stdout, stderr)."""

    def call(*argv, stdin=None):
        code = run(*argv, stdin=stdin if stdin is not None else "", monkeypatch=monkeypatch)
        out, err = capsys.readouterr()
        return code, out, err

    return call


async def open_service():
    settings = await asyncio.to_thread(settings_mod.load)  # reads config files: start-up work, off the loop
    return await AuthService.open(check(settings))


def users_json(s3gate) -> dict:
    code, out, _ = s3gate("users", "list", "--json")
    assert code == 0
    return {u["name"]: u for u in json.loads(out)}


async def test_add_list_and_the_stored_hash(data_dir, s3gate):
    code, out, err = s3gate("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0, err
    assert "created user alice" in out
    users = users_json(s3gate)
    assert users["alice"]["admin"] is False and users["alice"]["password"] is True
    code, out, _ = s3gate("users", "list")
    assert "alice" in out and "user" in out
    service = await open_service()
    try:
        user = await service.store.get_user("alice")
        assert user.password_hash.startswith("$argon2id$")
        assert (await service.authenticate_password("alice", PASSWORD, "127.0.0.1")).name == "alice"
    finally:
        await service.close()


async def test_add_refusals(data_dir, s3gate):
    code, _, err = s3gate("users", "add", "alice")  # stdin is not a terminal
    assert code == 2 and "--password-stdin" in err
    code, _, err = s3gate("users", "add", "alice", "--password-stdin", stdin="short\n")
    assert code == 1 and "at least 12" in err
    code, _, err = s3gate("users", "add", "bad:name", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 1 and "invalid user name" in err
    assert s3gate("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")[0] == 0
    code, _, err = s3gate("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 2 and "already exists" in err
    code, _, err = s3gate("users", "add", "bob", "--password-stdin", stdin="\n")
    assert code == 2 and "no password" in err


def test_no_password_on_the_command_line(data_dir):
    with pytest.raises(SystemExit):
        cli.main(["users", "add", "alice", "--password", PASSWORD])


async def test_grant_revoke_and_everyone(data_dir, s3gate):
    s3gate("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    code, out, _ = s3gate("users", "grant", "alice", "files/docs", "read,list")
    assert code == 0 and "files/docs/:read,list" in out
    s3gate("users", "grant", "alice", "files/docs/", "write")
    assert users_json(s3gate)["alice"]["rules"] == ["files/docs/:read,list,write"]
    code, _, err = s3gate("users", "revoke", "alice", "files/docs", "delete")
    assert code == 1 and "no such right" in err
    code, out, _ = s3gate("users", "revoke", "alice", "files/docs", "write")
    assert code == 0 and users_json(s3gate)["alice"]["rules"] == ["files/docs/:read,list"]
    code, out, _ = s3gate("users", "revoke", "alice", "files/docs")
    assert code == 0 and users_json(s3gate)["alice"]["rules"] == []
    code, _, err = s3gate("users", "grant", "alice", "files/docs", "read,fly")
    assert code == 2 and "fly" in err
    code, _, err = s3gate("users", "grant", "nobody", "files", "read")
    assert code == 1 and "no such user" in err
    code, out, err = s3gate("users", "grant", "*", "files/pub", "read,list")
    assert code == 0 and "open to anyone" in out
    code, out, err = s3gate("users", "grant", "*", "files/drop", "write")
    assert "WARNING" in err
    assert users_json(s3gate)["*"]["rules"] == ["files/drop/:write", "files/pub/:read,list"]


async def test_passwd_disable_enable_admin_delete(data_dir, s3gate):
    s3gate("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    code, out, _ = s3gate("users", "passwd", "alice", "--password-stdin", stdin="a much newer password\n")
    assert code == 0 and "changed" in out
    service = await open_service()
    try:
        with pytest.raises(InvalidCredentials):
            await service.authenticate_password("alice", PASSWORD, "127.0.0.1")
        await service.authenticate_password("alice", "a much newer password", "127.0.0.1")
    finally:
        await service.close()
    assert s3gate("users", "disable", "alice")[0] == 0
    assert users_json(s3gate)["alice"]["disabled"] is True
    assert s3gate("users", "enable", "alice")[0] == 0
    assert users_json(s3gate)["alice"]["disabled"] is False
    assert s3gate("users", "admin", "alice", "on")[0] == 0
    assert users_json(s3gate)["alice"]["admin"] is True
    assert s3gate("users", "logout", "alice")[1].startswith("0 session(s)")
    code, out, _ = s3gate("users", "delete", "alice", "--yes")
    assert code == 0 and "alice" not in users_json(s3gate)
    code, _, err = s3gate("users", "passwd", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 1 and "no such user" in err


async def test_tokens_create_list_revoke(data_dir, s3gate):
    s3gate("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    s3gate("users", "grant", "alice", "files/docs", "read,list,write")
    code, out, err = s3gate("tokens", "create", "alice", "--expires", "30d", "--scope", "files/docs/reports:read", "--label", "ci")
    assert code == 0, err
    token = out.strip()
    assert token.startswith("s3g_") and "\n" not in token  # stdout is the token alone: TOKEN=$(s3gate tokens create ...)
    assert "not shown again" in err
    code, out, _ = s3gate("tokens", "list", "alice", "--json")
    listed = json.loads(out)
    assert len(listed) == 1 and listed[0]["scope"] == ["files/docs/reports/:read"] and listed[0]["expires"]
    assert token not in out
    code, _, err = s3gate("tokens", "create", "alice", "--scope", "files:read")
    assert code == 1 and "exceeds" in err
    code, _, err = s3gate("tokens", "create", "alice", "--expires", "soon")
    assert code == 2 and "bad duration" in err
    service = await open_service()
    try:
        who = await service.authenticate_token(token)
        assert who.may("read", "files", "docs/reports/q1.pdf") and not who.may("write", "files", "docs/reports/q1.pdf")
    finally:
        await service.close()
    code, out, _ = s3gate("tokens", "revoke", listed[0]["id"])
    assert code == 0 and "revoked" in out
    assert json.loads(s3gate("tokens", "list", "--json")[1]) == []
    assert json.loads(s3gate("tokens", "list", "--all", "--json")[1])[0]["state"] == "revoked"
    code, _, err = s3gate("tokens", "revoke", "nope")
    assert code == 1


async def test_unlock(data_dir, s3gate):
    s3gate("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    service = await open_service()
    try:
        with pytest.raises(InvalidCredentials):
            await service.authenticate_password("alice", "wrong password", "192.0.2.1")
    finally:
        await service.close()
    code, out, _ = s3gate("users", "unlock", "alice", "--address", "192.0.2.1")
    assert code == 0 and out.strip() == "unlocked"
    assert s3gate("users", "unlock")[0] == 2


def test_help_without_a_subcommand(data_dir, s3gate):
    code, out, _ = s3gate("users")
    assert code == 2 and "grant" in out
    code, out, _ = s3gate("tokens")
    assert code == 2 and "create" in out


def test_bad_configuration_is_reported(data_dir, s3gate, monkeypatch):
    monkeypatch.setenv("S3GATE_PUBLIC", "files:fly")
    code, _, err = s3gate("users", "list")
    assert code == 2 and "public" in err


def test_cli_actions_are_audited_without_secrets(data_dir, s3gate):
    s3gate("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    out = s3gate("tokens", "create", "alice")[1].strip()
    lines = [json.loads(x) for x in (data_dir / "audit.log").read_text().splitlines()]
    assert [e["event"] for e in lines] == ["user_created", "token_created"]
    assert all(e["via"] == "cli" for e in lines)
    text = (data_dir / "audit.log").read_text()
    assert PASSWORD not in text and out not in text


def test_console_script_end_to_end(data_dir):
    """The real entry point with a real pipe on stdin (as a shell script would use it)."""
    env = {**os.environ, "S3GATE_DATA_DIR": str(data_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "s3gate", "users", "add", "carol", "--admin", "--password-stdin"],
        input=PASSWORD + "\n", capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "created admin carol" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "s3gate", "users", "list"], capture_output=True, text=True, env=env, timeout=60)
    assert "carol" in proc.stdout and "admin" in proc.stdout and PASSWORD not in proc.stdout + proc.stderr


# -- first start ------------------------------------------------------------------
def test_first_start_creates_admin_with_a_random_password(data_dir, capsys):
    settings = settings_mod.load()
    password = bootstrap.ensure_admin(settings)
    assert password and len(password) >= 20
    path = data_dir / "admin-password"
    assert path.read_text().strip() == password
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert bootstrap.ensure_admin(settings) is None  # only when there are no users


async def test_first_start_admin_can_log_in_and_works_inside_a_loop(data_dir):
    settings = await asyncio.to_thread(settings_mod.load)  # reads config files: start-up work, off the loop
    password = bootstrap.ensure_admin(settings)  # sync form, called with a loop running
    service = await open_service()
    try:
        who = await service.authenticate_password("admin", password, "127.0.0.1")
        assert who.admin
    finally:
        await service.close()


def test_first_start_with_the_admin_password_setting(data_dir, monkeypatch):
    monkeypatch.setenv("S3GATE_ADMIN_PASSWORD", "operator chosen secret")
    assert bootstrap.ensure_admin(settings_mod.load()) is None
    assert not (data_dir / "admin-password").exists()
    monkeypatch.setenv("S3GATE_ADMIN_PASSWORD", "short")
    with pytest.raises(Exception, match="admin_password"):
        bootstrap.ensure_admin(settings_mod.load())


def test_launcher_hook_prints_the_password_once(data_dir, capsys):
    settings = settings_mod.load()
    bootstrap.run(settings, {})
    out = capsys.readouterr().out
    password = (data_dir / "admin-password").read_text().strip()
    assert password in out and "admin" in out
    bootstrap.run(settings, {})
    assert password not in capsys.readouterr().out


def test_launcher_hook_warns_loudly_when_auth_is_off_beyond_loopback(data_dir, capsys, monkeypatch):
    monkeypatch.setenv("S3GATE_AUTH", "0")
    monkeypatch.setenv("S3GATE_HOST", "0.0.0.0")
    bootstrap.run(settings_mod.load(), {})
    err = capsys.readouterr().err
    assert "AUTHENTICATION IS OFF" in err and "0.0.0.0" in err
    assert not (data_dir / "users.db").exists()
    monkeypatch.setenv("S3GATE_HOST", "127.0.0.1")
    bootstrap.run(settings_mod.load(), {})
    assert "AUTHENTICATION IS OFF" not in capsys.readouterr().err


@pytest.mark.sqlite_only  # reads the SQLite file itself
async def test_tokens_list_survives_any_stored_expiry(data_dir, s3gate):
    """Rows an older s3gate stored (999999999y, 1e400) or a hand edit left: listed, never a traceback."""
    s3gate("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    for _ in range(3):
        assert s3gate("tokens", "create", "alice")[0] == 0
    with sqlite3.connect(data_dir / "users.db") as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM tokens ORDER BY rowid")]
        for token_id, value in zip(ids, ("1e300", "9e999", "'soon'"), strict=True):
            conn.execute(f"UPDATE tokens SET expires_at = {value} WHERE id = ?", (token_id,))
    code, out, err = s3gate("tokens", "list", "--all")
    assert code == 0, err
    assert out.count("9999-12-31 23:59 UTC") == 2 and "expired" in out
    code, out, err = s3gate("tokens", "list", "--all", "--json")
    assert code == 0, err
    listed = {t["id"]: t for t in json.loads(out)}
    assert [(listed[i]["expires"], listed[i]["state"]) for i in ids] == [  # as GET /api/tokens shows them
        ("9999-12-31T23:59:59+00:00", "active"),
        ("9999-12-31T23:59:59+00:00", "active"),
        ("1970-01-01T00:00:00+00:00", "expired"),
    ]
    code, _, err = s3gate("tokens", "create", "alice", "--expires", "999999999y")
    assert code == 2 and "at most" in err


async def test_users_list_drops_everyone_without_rules(data_dir, s3gate):
    s3gate("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    s3gate("users", "grant", "*", "files/pub", "read")
    assert "*" in users_json(s3gate)
    assert any(line.startswith("*") for line in s3gate("users", "list")[1].splitlines())
    assert s3gate("users", "revoke", "*", "files/pub")[0] == 0
    assert set(users_json(s3gate)) == {"alice"}
    assert not any(line.startswith("*") for line in s3gate("users", "list")[1].splitlines())


@pytest.mark.sqlite_only  # the source is SQLite by definition; the target is the real PostgreSQL
async def test_migrate_to_postgresql_keeps_users_rules_tokens_and_sessions(data_dir, s3gate, postgres, monkeypatch, tmp_path):
    s3gate("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    s3gate("users", "add", "root", "--admin", "--password-stdin", stdin=PASSWORD + "\n")
    s3gate("users", "grant", "alice", "files/docs", "read,list")
    s3gate("users", "grant", "*", "files/public", "read")
    token = s3gate("tokens", "create", "alice", "--scope", "files/docs:read")[1].strip()
    service = await open_service()
    try:
        alice = await service.authenticate_password("alice", PASSWORD, "10.0.0.1")
        session_id, _ = await service.start_session(alice, "10.0.0.1")
    finally:
        await service.close()
    before = users_json(s3gate)

    url = postgres.create_database()
    code, out, err = s3gate("users", "migrate-to", url)
    assert code == 0, err
    assert "3 users" in out and "1 tokens" in out and "1 sessions" in out  # alice, root and '*'

    secret = tmp_path / "secret"
    secret.write_text("k" * 48)
    monkeypatch.setenv("S3GATE_USERS_DB", url)
    monkeypatch.setenv("S3GATE_SECRET_FILE", str(secret))
    assert users_json(s3gate) == before
    service = await open_service()
    try:
        assert service.store.db.dialect == "postgresql"
        who = await service.authenticate_token(token)
        assert who.name == "alice" and who.may("read", "files", "docs/a") and not who.may("list", "files", "docs/")
        assert (await service.session_principal(session_id)).name == "alice"  # still signed in
        assert (await service.authenticate_password("root", PASSWORD, "10.0.0.2")).admin
    finally:
        await service.close()
    # New rows get new ids (the sequences moved past the copied ones).
    code, _, err = s3gate("users", "add", "carol", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0, err
    # A second copy into the same database is refused: it is not empty any more.
    monkeypatch.delenv("S3GATE_USERS_DB")
    monkeypatch.delenv("S3GATE_SECRET_FILE")
    code, _, err = s3gate("users", "migrate-to", url)
    assert code == 1 and "already has" in err
    code, _, err = s3gate("users", "migrate-to", "mysql://x/y")
    assert code == 2 and "postgresql://" in err
