"""`s3gate users ...` and `s3gate tokens ...` through s3gate.cli.main, on a temporary data dir."""

import asyncio
import builtins
import getpass
import io
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
from datetime import datetime

import pytest

from s3gate import cli
from s3gate import settings as settings_mod
from s3gate.auth import bootstrap
from s3gate.auth.config import check
from s3gate.auth.database import redact_url
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
    """`s3gate users` / `s3gate tokens` alone print their help, with the examples as typed (not reflowed)."""
    code, out, _ = s3gate("users")
    assert code == 2 and "grant" in out
    assert "\n  s3gate users grant alice files/docs read,list,write\n  s3gate users grant '*' files/public read,list\n" in out
    code, out, _ = s3gate("tokens")
    assert code == 2 and "create" in out
    assert "\n  s3gate tokens list alice\n  s3gate tokens revoke 3f2a9c81d0e4" in out


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



@pytest.mark.sqlite_only  # where the audit lines go does not depend on the users database
def test_with_audit_log_dash_the_commands_audit_on_their_stderr(data_dir):
    """audit_log = "-" sends the gateway's audit lines to its log on stderr; a command's go to its own stderr."""
    env = {**os.environ, "S3GATE_DATA_DIR": str(data_dir), "S3GATE_AUDIT_LOG": "-", "S3GATE_LOG_FORMAT": "json"}
    proc = subprocess.run(
        [sys.executable, "-m", "s3gate", "users", "add", "bob", "--no-password"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("created user bob")  # stdout stays the command's answer
    (line,) = [json.loads(x) for x in proc.stderr.splitlines()]
    assert json.loads(line["message"]) | {"ts": None} == {
        "ts": None, "event": "user_created", "user": getpass.getuser(), "via": "cli", "target": "bob", "outcome": "ok"
    }
    assert not (data_dir / "audit.log").exists()

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
    assert ", 1 tokens, " in out and "next, on every instance: users_db = that URL and the same secret_file" in out
    (migrated,) = [e for e in map(json.loads, (data_dir / "audit.log").read_text().splitlines()) if e["event"] == "users_migrated"]
    assert migrated["via"] == "cli" and migrated["target"] == redact_url(url) and "dropped_fields" not in migrated
    assert "3 users" in migrated["detail"] and "1 tokens" in migrated["detail"] and "1 sessions" in migrated["detail"]

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


# -- what operators read: the users table, the one-line answers, the audit lines, the prompts --------------
class Terminal(io.StringIO):
    """Standard input that is a terminal: the commands prompt instead of reading a line."""

    def isatty(self):
        return True


@pytest.fixture
def on_terminal(monkeypatch, capsys):
    """on_terminal(*argv, answers=[...]) -> (exit code, stdout, stderr, prompts): getpass and input answer in turn."""

    def call(*argv, answers=()):
        left, prompts = list(answers), []

        def answer(prompt=""):
            prompts.append(prompt)
            return left.pop(0)

        monkeypatch.setattr(sys, "stdin", Terminal())
        monkeypatch.setattr(getpass, "getpass", answer)
        monkeypatch.setattr(builtins, "input", answer)
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        assert not left, "answers left over"
        return code, out, err, prompts

    return call


def cli_audit(data_dir) -> list[dict]:
    lines = [json.loads(x) for x in (data_dir / "audit.log").read_text().splitlines()]
    return [{k: v for k, v in e.items() if k != "ts"} for e in lines if e.get("via") == "cli"]


async def test_users_list_shows_every_kind_of_user(data_dir, s3gate, monkeypatch):
    assert s3gate("users", "add", "temp", "--no-password")[0] == 0
    assert s3gate("users", "delete", "temp", "--yes")[0] == 0
    assert s3gate("users", "list") == (0, "no users\n", "")
    monkeypatch.setenv("S3GATE_PUBLIC", "files/open:read,list")
    for argv in (
        ("add", "root", "--admin", "--password-stdin"),
        ("add", "alice", "--password-stdin"),
        ("add", "bob", "--password-stdin"),
        ("add", "carol", "--no-password"),
        ("grant", "alice", "files/docs", "read,list"),
        ("grant", "alice", "photos", "write"),
        ("grant", "*", "files/pub", "read"),
        ("disable", "bob"),
    ):
        assert s3gate("users", *argv, stdin=PASSWORD + "\n")[0] == 0, argv
    code, out, err = s3gate("users", "list")
    assert (code, err) == (0, "")
    assert out == (
        "NAME       ROLE       STATUS       RULES\n"
        "*          anonymous  -            files/pub/:read\n"
        "alice      user       active       files/docs/:read,list photos:write\n"
        "bob        user       disabled     -\n"
        "carol      user       no password  -\n"
        "root       admin      active       everything\n"
        "(setting)  anonymous  -            files/open/:read,list\n"
    )
    code, out, _ = s3gate("users", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", u.pop("created")) for u in listed)
    assert listed == [
        {"name": "*", "admin": False, "disabled": False, "password": False, "rules": ["files/pub/:read"]},
        {"name": "alice", "admin": False, "disabled": False, "password": True, "rules": ["files/docs/:read,list", "photos:write"]},
        {"name": "bob", "admin": False, "disabled": True, "password": True, "rules": []},
        {"name": "carol", "admin": False, "disabled": False, "password": False, "rules": []},
        {"name": "root", "admin": True, "disabled": False, "password": True, "rules": []},
    ]
    assert s3gate("tokens", "create", "alice")[0] == 0
    token_id = json.loads(s3gate("tokens", "list", "alice", "--json")[1])[0]["id"]
    row = s3gate("tokens", "list", "alice")[1].splitlines()[1]
    assert row.split() == [token_id, "alice", "active", "never", "-", "(full)", "-"]  # LAST USED: never used


async def test_every_users_command_answers_and_audits(data_dir, s3gate):
    hint = "; give rights with: s3gate users grant {} BUCKET[/PREFIX] read,list\n"
    note = "note: files/pub/ is now open to anyone who can reach the gateway, without credentials\n"

    async def sessions_of_alice(n):
        service = await open_service()
        try:
            alice = await service.authenticate_password("alice", PASSWORD, "10.0.0.1")
            for _ in range(n):
                await service.start_session(alice, "10.0.0.1")
        finally:
            await service.close()

    assert s3gate("users", "add", "root", "--admin", "--password-stdin", stdin=PASSWORD + "\n") == (0, "created admin root\n", "")
    assert s3gate("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n") == (0, "created user alice" + hint.format("alice"), "")
    assert s3gate("users", "add", "carol", "--no-password") == (
        0, "created user carol (no password: tokens only)" + hint.format("carol"), ""
    )
    await sessions_of_alice(2)
    assert s3gate("users", "passwd", "alice", "--password-stdin", stdin=PASSWORD + "\n") == (
        0, "password of alice changed; 2 session(s) ended\n", ""
    )
    assert s3gate("users", "passwd", "carol", "--no-password") == (0, "password of carol removed; 0 session(s) ended\n", "")
    assert s3gate("users", "admin", "alice", "on") == (0, "alice is now an admin\n", "")
    assert s3gate("users", "admin", "alice", "off") == (0, "alice is no longer an admin\n", "")
    assert s3gate("users", "grant", "alice", "files/docs", "read,list") == (0, "alice: files/docs/:read,list\n", "")
    assert s3gate("users", "grant", "*", "files/pub", "read") == (0, "*: files/pub/:read\n" + note, "")  # no WARNING
    code, _, err = s3gate("users", "grant", "*", "files/drop", "delete")
    assert code == 0 and "WARNING" in err
    assert s3gate("users", "revoke", "alice", "files/docs", "list") == (0, "alice: files/docs/:read\n", "")
    assert s3gate("users", "revoke", "alice", "files/docs") == (0, "alice: no rule left on files/docs/\n", "")
    code, out, err = s3gate("users", "revoke", "alice", "files/docs", "read,fly")
    assert (code, out) == (2, "") and "fly" in err
    await sessions_of_alice(3)
    assert s3gate("users", "logout", "alice") == (0, "3 session(s) of alice ended\n", "")
    assert s3gate("users", "disable", "alice") == (0, "alice disabled; 0 session(s) ended\n", "")
    assert s3gate("users", "enable", "alice") == (0, "alice enabled\n", "")
    service = await open_service()
    try:
        with pytest.raises(InvalidCredentials):
            await service.authenticate_password("alice", "wrong password", "192.0.2.1")  # counts for both
    finally:
        await service.close()
    assert s3gate("users", "unlock", "alice") == (0, "unlocked\n", "")
    assert s3gate("users", "unlock", "--address", "192.0.2.1") == (0, "unlocked\n", "")
    assert s3gate("users", "unlock", "alice") == (0, "nothing was locked\n", "")
    code, out, err = s3gate("users", "unlock")
    assert (code, out) == (2, "") and "--address" in err
    assert s3gate("users", "delete", "carol", "--yes") == (0, "deleted carol\n", "")

    me = {"user": getpass.getuser(), "via": "cli", "outcome": "ok"}
    assert cli_audit(data_dir) == [
        {"event": "user_created", **me, "target": "root", "detail": "admin"},
        {"event": "user_created", **me, "target": "alice"},
        {"event": "user_created", **me, "target": "carol"},
        {"event": "password_changed", **me, "target": "alice"},
        {"event": "password_changed", **me, "target": "carol"},
        {"event": "user_admin", **me, "target": "alice", "detail": "on"},
        {"event": "user_admin", **me, "target": "alice", "detail": "off"},
        {"event": "rule_granted", **me, "target": "alice", "detail": "files/docs/:read,list"},
        {"event": "rule_granted", **me, "target": "*", "detail": "files/pub/:read"},
        {"event": "rule_granted", **me, "target": "*", "detail": "files/drop/:delete"},
        {"event": "rule_revoked", **me, "target": "alice", "detail": "files/docs/:list"},
        {"event": "rule_revoked", **me, "target": "alice", "detail": "files/docs/:all"},
        {"event": "sessions_ended", **me, "target": "alice", "detail": "3"},
        {"event": "user_disabled", **me, "target": "alice"},
        {"event": "user_enabled", **me, "target": "alice"},
        {"event": "unlocked", **me, "target": "alice"},
        {"event": "unlocked", **me, "target": "192.0.2.1"},
        {"event": "unlocked", **me, "target": "alice"},
        {"event": "user_deleted", **me, "target": "carol"},
    ]


def test_admin_takes_only_on_or_off(data_dir, s3gate, capsys):
    assert s3gate("users", "add", "alice", "--no-password")[0] == 0
    with pytest.raises(SystemExit) as refused:  # argparse's usage error, before anything is opened
        cli.main(["users", "admin", "alice", "yes"])
    assert refused.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert users_json(s3gate)["alice"]["admin"] is False

def test_audit_names_the_uid_without_a_passwd_entry(data_dir, s3gate, monkeypatch):
    def no_entry():
        raise KeyError("getpwuid(): uid not found")

    monkeypatch.setattr(getpass, "getuser", no_entry)
    assert s3gate("users", "add", "alice", "--no-password")[0] == 0
    assert cli_audit(data_dir)[0]["user"] == str(os.getuid())


async def test_passwords_asked_twice_on_a_terminal(data_dir, s3gate, on_terminal):
    code, out, err, prompts = on_terminal("users", "add", "alice", answers=[PASSWORD, PASSWORD])
    assert code == 0, err
    assert out.startswith("created user alice;") and prompts == ["New password for alice: ", "Repeat it: "]
    code, out, err, _ = on_terminal("users", "add", "bob", answers=[PASSWORD, PASSWORD + "!"])
    assert (code, out) == (2, "") and "passwords differ" in err.lower()
    code, out, err, _ = on_terminal("users", "passwd", "alice", answers=["a much newer password", "a much newer pass"])
    assert (code, out) == (2, "") and "passwords differ" in err.lower()
    assert set(users_json(s3gate)) == {"alice"}
    service = await open_service()
    try:
        await service.authenticate_password("alice", PASSWORD, "127.0.0.1")  # nothing changed
    finally:
        await service.close()
    code, out, err, prompts = on_terminal("users", "passwd", "alice", answers=["a much newer password"] * 2)
    assert (code, out) == (0, "password of alice changed; 0 session(s) ended\n"), err
    assert prompts == ["New password for alice: ", "Repeat it: "]
    service = await open_service()
    try:
        await service.authenticate_password("alice", "a much newer password", "127.0.0.1")
    finally:
        await service.close()


def test_delete_asks_on_a_terminal_unless_yes(data_dir, s3gate, on_terminal):
    for name in ("bob", "carol", "dave", "frank", "erin"):
        assert s3gate("users", "add", name, "--no-password")[0] == 0
    code, out, _, prompts = on_terminal("users", "delete", "bob", answers=["n"])
    assert (code, out) == (1, "nothing deleted\n")
    assert prompts == ["Delete user bob with their rules, tokens and sessions? [y/N] "]
    assert "bob" in users_json(s3gate)
    assert on_terminal("users", "delete", "bob", answers=["y"])[:2] == (0, "deleted bob\n")
    assert on_terminal("users", "delete", "carol", answers=[" YES "])[:2] == (0, "deleted carol\n")
    assert on_terminal("users", "delete", "dave", "--yes")[:2] == (0, "deleted dave\n")  # not asked
    assert on_terminal("users", "delete", "frank", "-y")[:2] == (0, "deleted frank\n")
    assert s3gate("users", "delete", "erin") == (0, "deleted erin\n", "")  # no terminal: a script, not asked
    assert users_json(s3gate) == {}


async def test_password_stdin_without_newline_or_with_crlf(data_dir, s3gate):
    assert s3gate("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\r\n")[0] == 0
    assert s3gate("users", "add", "bob", "--password-stdin", stdin=PASSWORD)[0] == 0  # printf '%s' "$PASSWORD" | ...
    service = await open_service()
    try:
        for name in ("alice", "bob"):
            assert (await service.authenticate_password(name, PASSWORD, "127.0.0.1")).name == name
    finally:
        await service.close()


@pytest.mark.sqlite_only  # a PostgreSQL URL names a server, not a file that may be missing
@pytest.mark.parametrize(
    "argv",
    [("users", "list"), ("users", "passwd", "alice", "--no-password"), ("users", "unlock", "alice"), ("users", "delete", "alice", "--yes")],
)
def test_commands_refuse_a_missing_database(data_dir, s3gate, argv):
    code, out, err = s3gate(*argv)
    assert (code, out) == (2, "")
    assert str((data_dir / "users.db").resolve()) in err and "S3GATE_DATA_DIR" in err
    assert not (data_dir / "users.db").exists()


# -- tokens: what the operator sees and the audit log keeps -------------------------------------------------
def _table_rows(out: str) -> list[list[str]]:
    """`users list` / `tokens list` output as cells (columns are two or more spaces apart)."""
    return [re.split(r" {2,}", line.rstrip()) for line in out.splitlines()]


def _shown(iso: str) -> str:
    """An ISO time of --json as the table shows it."""
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")


async def test_tokens_list_shows_each_token_as_a_row(data_dir, s3gate):
    for name in ("alice", "bob"):
        s3gate("users", "add", name, "--password-stdin", stdin=PASSWORD + "\n")
    s3gate("users", "grant", "alice", "files/docs", "read,list")
    scoped = s3gate(
        "tokens", "create", "alice", "--expires", "30d", "--scope", "files/docs/reports:read", "--scope", "files/docs/b:list", "--label", "ci"
    )[1].strip()
    s3gate("tokens", "create", "alice")
    s3gate("tokens", "create", "bob", "--label", "bob's")
    service = await open_service()
    try:
        await service.authenticate_token(scoped)  # sets its last use
    finally:
        await service.close()
    in_order = json.loads(s3gate("tokens", "list", "--json")[1])  # the table lists them in the same order
    ci, plain, bobs = ({t["label"]: t for t in in_order}[label] for label in ("ci", "", "bob's"))
    expected = {
        ci["id"]: [ci["id"], "alice", "active", _shown(ci["expires"]), _shown(ci["last_used"]),
                   "files/docs/b/:list files/docs/reports/:read", "ci"],
        plain["id"]: [plain["id"], "alice", "active", "never", "-", "(full)", "-"],
    }

    code, out, err = s3gate("tokens", "list", "alice")  # alice's only
    assert code == 0, err
    assert _table_rows(out) == [
        ["ID", "USER", "STATE", "EXPIRES", "LAST USED", "SCOPE", "LABEL"],
        *(expected[t["id"]] for t in in_order if t["id"] in expected),
    ]
    assert s3gate("tokens", "revoke", bobs["id"])[0] == 0
    assert s3gate("tokens", "list", "bob")[1].strip() == "no tokens"  # only active ones by default
    rows = _table_rows(s3gate("tokens", "list", "bob", "--all")[1])
    assert rows[1:] == [[bobs["id"], "bob", "revoked", "never", "-", "(full)", "bob's"]]


async def test_token_commands_tell_the_operator_and_the_audit_log(data_dir, s3gate):
    s3gate("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    s3gate("users", "grant", "alice", "files/docs", "read,list")
    code, _, err = s3gate("tokens", "create", "alice", "--expires", "1d", "--scope", "files/docs/a:read", "--scope", "files/docs/b:list")
    assert code == 0, err
    code, _, err2 = s3gate("tokens", "create", "alice")
    assert code == 0, err2
    scoped, full = json.loads(s3gate("tokens", "list", "--json")[1])
    if scoped["scope"] is None:
        scoped, full = full, scoped
    assert f"token {scoped['id']} for alice (files/docs/a/:read, files/docs/b/:list; expires {_shown(scoped['expires'])})." in err
    assert f"token {full['id']} for alice (all of alice's rights; expires never)." in err2
    assert "Use: curl -H 'Authorization: Bearer TOKEN' ... or curl -u alice:TOKEN" in err2
    code, out, _ = s3gate("tokens", "revoke", scoped["id"], full["id"])
    assert code == 0 and out.splitlines() == [f"revoked {scoped['id']} (alice)", f"revoked {full['id']} (alice)"]
    me = {"user": getpass.getuser(), "via": "cli", "outcome": "ok"}
    assert [e for e in cli_audit(data_dir) if e["event"].startswith("token_")] == [
        {"event": "token_created", **me, "token": scoped["id"], "target": "alice", "detail": "files/docs/a/:read files/docs/b/:list"},
        {"event": "token_created", **me, "token": full["id"], "target": "alice", "detail": "full rights"},
        {"event": "token_revoked", **me, "token": scoped["id"], "target": "alice"},
        {"event": "token_revoked", **me, "token": full["id"], "target": "alice"},
    ]
