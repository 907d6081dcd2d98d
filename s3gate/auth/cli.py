"""``s3gate users ...`` and ``s3gate tokens ...``: administration from the shell.

Passwords are read from a prompt (twice) or, for scripts, one line on
standard input with ``--password-stdin``; never from the command line, where
``ps`` and shell history would keep them. Commands work while the gateway
runs: SQLite in WAL mode lets both use the file, and changes (a revoked
token, a disabled user, a new rule) apply to the very next request.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import logformat
from ..errors import ConfigError, GatewayError
from . import audit
from .bootstrap import run_sync
from .config import AuthConfig, check, parse_duration, utc_time
from .database import database_path, is_server_url, redact_url
from .rules import Rule, RuleError, parse_actions, parse_target
from .service import AuthService, running_service, token_json
from .store import ANONYMOUS, StoreError


class CommandError(Exception):
    """Bad input on the command line: message printed, exit code 2."""


def _settings():
    """The gateway's settings; with ``audit_log = "-"`` the command's audit lines go to its standard error.

    (The gateway's join its main log there; a command has no other log, and an audit file
    is written by every command as by the gateway.)
    """
    from .. import settings as settings_mod

    settings = settings_mod.load()
    if audit.to_main_log(settings.audit_log):
        logformat.configure("warning", settings.log_format)  # the audit logger itself says INFO
    return settings


def _operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return str(os.getuid())


def _run(work: Callable[[AuthService], Awaitable[int]], *, create: bool = False) -> int:
    """Open the store, run ``work``, close; turn domain errors into messages and exit codes.

    Only ``create`` commands (users add) may create the database: one that reads or
    changes existing users, run from the wrong directory, must not answer from a
    new empty one ("nothing was locked").
    """
    try:
        config: AuthConfig = check(_settings())
        path = None if is_server_url(config.users_db) else database_path(config.data_dir, config.users_db)
    except ConfigError as exc:
        print(f"s3gate: configuration error: {exc}", file=sys.stderr)
        return 2
    if path is not None and not create and not path.exists():
        print(
            f"s3gate: no users database at {path.resolve()}: set S3GATE_DATA_DIR (or users_db) to the gateway's, "
            "or run this where the gateway runs",
            file=sys.stderr,
        )
        return 2

    async def main() -> int:
        async with running_service(config) as service:
            return await work(service)

    try:
        return run_sync(main())
    except (GatewayError, CommandError, ConfigError) as exc:
        message = exc.message if isinstance(exc, GatewayError) else str(exc)
        print(f"s3gate: {message}", file=sys.stderr)
        return 2 if isinstance(exc, (CommandError, ConfigError)) else 1


def _record(event: str, **fields: Any) -> None:
    audit.record(event, user=_operator(), via="cli", outcome="ok", **fields)


def read_password(args: argparse.Namespace, name: str) -> str | None:
    if getattr(args, "no_password", False):
        return None
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
        if not password:
            raise CommandError("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise CommandError("no terminal to ask for a password on: use --password-stdin (one line on standard input)")
    first = getpass.getpass(f"New password for {name}: ")
    again = getpass.getpass("Repeat it: ")
    if first != again:
        raise CommandError("passwords differ; nothing changed")
    return first


def _ts(value: float | None) -> str:
    if value is None:
        return "-"
    return utc_time(value).strftime("%Y-%m-%d %H:%M UTC")  # clamped: any stored value lists


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _rule_arg(target: str, actions: str) -> Rule:
    try:
        bucket, prefix = parse_target(target)
        return Rule(bucket, prefix, parse_actions(actions))
    except RuleError as exc:
        raise CommandError(str(exc)) from None


# -- users ----------------------------------------------------------------------
def cmd_migrate_to(args: argparse.Namespace) -> int:
    """Copy the SQLite users database the settings name into an empty PostgreSQL one."""
    from .sql import SQLStore, copy_store, open_store

    try:
        config: AuthConfig = check(_settings())
        if is_server_url(config.users_db):
            raise CommandError("users_db is already a PostgreSQL database; run this with the SQLite settings")
        if not is_server_url(args.url):
            raise CommandError("give the target as postgresql://USER@HOST[:PORT]/DATABASE")
        path = database_path(config.data_dir, config.users_db)
        if not path.exists():
            raise CommandError(f"no users database at {path.resolve()}")
    except (CommandError, ConfigError) as exc:
        print(f"s3gate: {exc}", file=sys.stderr)
        return 2

    async def main() -> str:
        # The copy is audited in the source's audit log, like every other users command.
        async with audit.running(config.audit_log, config.data_dir):
            source = await open_store(config.data_dir, config.users_db)
            try:
                target = await open_store(config.data_dir, args.url)
                try:
                    assert isinstance(source, SQLStore) and isinstance(target, SQLStore)
                    copied = await copy_store(source, target)
                finally:
                    await target.close()
            finally:
                await source.close()
            counts = ", ".join(f"{n} {table}" for table, n in copied.items())
            _record("users_migrated", target=redact_url(args.url), detail=counts)
            return counts

    try:
        counts = run_sync(main())
    except (StoreError, ConfigError) as exc:
        print(f"s3gate: {exc}", file=sys.stderr)
        return 1
    print(f"copied {counts} to {redact_url(args.url)}")
    print(
        "next, on every instance: users_db = that URL and the same secret_file "
        "(links signed before stop working; clients sign in again only if their session ended)"
    )
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    async def work(service: AuthService) -> int:
        if await service.store.get_user(args.name):
            raise CommandError(f"user {args.name} already exists")
        password = read_password(args, args.name)
        user = await service.add_user(args.name, password, admin=args.admin)
        _record("user_created", target=user.name, detail="admin" if user.admin else None)
        role = "admin" if user.admin else "user"
        hint = "" if user.admin else f"; give rights with: s3gate users grant {user.name} BUCKET[/PREFIX] read,list"
        print(f"created {role} {user.name}{' (no password: tokens only)' if password is None else ''}{hint}")
        return 0

    return _run(work, create=True)


def cmd_list(args: argparse.Namespace) -> int:
    async def work(service: AuthService) -> int:
        users = await service.list_users()
        if args.json:
            out = [
                {
                    "name": u.name,
                    "admin": u.admin,
                    "disabled": u.disabled,
                    "password": u.password_hash is not None,
                    "created": _ts(u.created_at),
                    "rules": [str(r) for r in rules],
                }
                for u, rules in users
            ]
            print(json.dumps(out, indent=2))
            return 0
        rows = [["NAME", "ROLE", "STATUS", "RULES"]]
        for u, rules in users:
            role = "anonymous" if u.name == ANONYMOUS else ("admin" if u.admin else "user")
            status = (
                "disabled"
                if u.disabled
                else ("-" if u.name == ANONYMOUS else ("active" if u.password_hash else "no password"))
            )
            rows.append([u.name, role, status, " ".join(str(r) for r in rules) or ("everything" if u.admin else "-")])
        for rule in service.config.public:
            rows.append(["(setting)", "anonymous", "-", str(rule)])
        print(_table(rows) if len(rows) > 1 else "no users")
        return 0

    return _run(work)


def cmd_passwd(args: argparse.Namespace) -> int:
    async def work(service: AuthService) -> int:
        await service._user(args.name)  # fail before prompting
        password = read_password(args, args.name)
        ended = await service.set_password(args.name, password)
        _record("password_changed", target=args.name)
        print(f"password of {args.name} {'removed' if password is None else 'changed'}; {ended} session(s) ended")
        return 0

    return _run(work)


def _cmd_flag(disabled: bool) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        async def work(service: AuthService) -> int:
            ended = await service.set_disabled(args.name, disabled)
            _record("user_disabled" if disabled else "user_enabled", target=args.name)
            print(
                f"{args.name} {'disabled' if disabled else 'enabled'}"
                + (f"; {ended} session(s) ended" if disabled else "")
            )
            return 0

        return _run(work)

    return command


def cmd_admin(args: argparse.Namespace) -> int:
    async def work(service: AuthService) -> int:
        on = args.state == "on"
        await service.set_admin(args.name, on)
        _record("user_admin", target=args.name, detail=args.state)
        print(f"{args.name} is {'now an admin' if on else 'no longer an admin'}")
        return 0

    return _run(work)


def cmd_delete(args: argparse.Namespace) -> int:
    async def work(service: AuthService) -> int:
        await service._user(args.name)
        if not args.yes and sys.stdin.isatty():
            answer = input(f"Delete user {args.name} with their rules, tokens and sessions? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 1
        await service.delete_user(args.name)
        _record("user_deleted", target=args.name)
        print(f"deleted {args.name}")
        return 0

    return _run(work)


def cmd_grant(args: argparse.Namespace) -> int:
    try:
        rule = _rule_arg(args.target, args.actions)
    except CommandError as exc:
        print(f"s3gate: {exc}", file=sys.stderr)
        return 2

    async def work(service: AuthService) -> int:
        merged = await service.grant(args.user, rule)
        _record("rule_granted", target=args.user, detail=str(rule))
        print(f"{args.user}: {merged}")
        if args.user == ANONYMOUS:
            print(f"note: {merged.target} is now open to anyone who can reach the gateway, without credentials")
            if merged.actions & {"write", "delete"}:
                print("WARNING: anonymous users may also change or delete objects there", file=sys.stderr)
        return 0

    return _run(work)


def cmd_revoke(args: argparse.Namespace) -> int:
    try:
        rule = _rule_arg(args.target, args.actions)
    except CommandError as exc:
        print(f"s3gate: {exc}", file=sys.stderr)
        return 2

    async def work(service: AuthService) -> int:
        left = await service.revoke(args.user, rule)
        _record("rule_revoked", target=args.user, detail=str(rule))
        print(f"{args.user}: {left}" if left else f"{args.user}: no rule left on {rule.target}")
        return 0

    return _run(work)


def cmd_unlock(args: argparse.Namespace) -> int:
    if not args.name and not args.address:
        print("s3gate users unlock: give a user name, --address ADDR, or both", file=sys.stderr)
        return 2

    async def work(service: AuthService) -> int:
        done = await service.unlock(name=args.name, remote=args.address)
        _record("unlocked", target=args.name or args.address)
        print("unlocked" if done else "nothing was locked")
        return 0

    return _run(work)


def cmd_logout(args: argparse.Namespace) -> int:
    async def work(service: AuthService) -> int:
        ended = await service.logout_everywhere(args.name)
        _record("sessions_ended", target=args.name, detail=str(ended))
        print(f"{ended} session(s) of {args.name} ended")
        return 0

    return _run(work)


# -- tokens ---------------------------------------------------------------------
def cmd_token_create(args: argparse.Namespace) -> int:
    try:
        expires_in = parse_duration(args.expires)
        scope = [Rule.parse(s) for s in args.scope] if args.scope else None
    except (ValueError, RuleError) as exc:
        print(f"s3gate: {exc}", file=sys.stderr)
        return 2

    async def work(service: AuthService) -> int:
        secret, token = await service.create_token(args.user, expires_in=expires_in, scope=scope, label=args.label)
        _record(
            "token_created",
            token=token.id,
            target=token.owner,
            detail=" ".join(str(r) for r in token.scope) if token.scope else "full rights",
        )
        print(secret)
        what = ", ".join(str(r) for r in token.scope) if token.scope else f"all of {token.owner}'s rights"
        print(
            f"token {token.id} for {token.owner} ({what}; expires {_ts(token.expires_at) if token.expires_at else 'never'}).\n"
            "Copy it now: it is not shown again. Use: curl -H 'Authorization: Bearer TOKEN' ... "
            f"or curl -u {token.owner}:TOKEN ...",
            file=sys.stderr,
        )
        return 0

    return _run(work)


def cmd_token_list(args: argparse.Namespace) -> int:
    async def work(service: AuthService) -> int:
        tokens = await service.list_tokens(args.user)
        now = time.time()
        if not args.all:
            tokens = [t for t in tokens if t.state(now) == "active"]
        if args.json:
            print(json.dumps([token_json(t, now) for t in tokens], indent=2))  # as GET /api/tokens lists them
            return 0
        rows = [["ID", "USER", "STATE", "EXPIRES", "LAST USED", "SCOPE", "LABEL"]]
        for t in tokens:
            scope = " ".join(str(r) for r in t.scope) if t.scope is not None else "(full)"
            rows.append(
                [
                    t.id,
                    t.owner,
                    t.state(now),
                    _ts(t.expires_at) if t.expires_at is not None else "never",
                    _ts(t.last_used_at),
                    scope,
                    t.label or "-",
                ]
            )
        print(_table(rows) if len(rows) > 1 else "no tokens")
        return 0

    return _run(work)


def cmd_token_revoke(args: argparse.Namespace) -> int:
    async def work(service: AuthService) -> int:
        for token_id in args.ids:
            token = await service.revoke_token(token_id)
            _record("token_revoked", token=token.id, target=token.owner)
            print(f"revoked {token.id} ({token.owner})")
        return 0

    return _run(work)


# -- wiring -----------------------------------------------------------------------
def _password_options(p: argparse.ArgumentParser, *, allow_none: bool) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--password-stdin", action="store_true", help="read the password as one line from standard input"
    )
    if allow_none:
        group.add_argument("--no-password", action="store_true", help="no password: the user can only use API tokens")


def _help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def show(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show


def register(subparsers: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    users = subparsers.add_parser(
        "users",
        help="manage users and their permissions",
        formatter_class=fmt,
        description="Users, passwords and permission rules.\n\nRules are BUCKET[/PREFIX] plus actions "
        "(read, list, write, delete or all). A prefix is a folder: docs == docs/, and never matches "
        "docs-private/. BUCKET * means every bucket. User '*' is everyone, without credentials.",
        epilog="examples:\n  s3gate users add alice\n  s3gate users grant alice files/docs read,list,write\n"
        "  s3gate users grant '*' files/public read,list\n  s3gate users revoke alice files/docs write\n"
        '  echo "$PASSWORD" | s3gate users passwd alice --password-stdin',
    )
    users.set_defaults(func=_help(users))
    sub = users.add_subparsers(dest="users_command", metavar="COMMAND")

    p = sub.add_parser("add", help="create a user (asks for the password)")
    p.add_argument("name")
    p.add_argument("--admin", action="store_true", help="may do everything, everywhere")
    _password_options(p, allow_none=True)
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("list", help="users, roles and rules")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("passwd", help="change a password (ends the user's sessions)")
    p.add_argument("name")
    _password_options(p, allow_none=True)
    p.set_defaults(func=cmd_passwd)

    p = sub.add_parser("disable", help="refuse all of a user's credentials (ends sessions; tokens stop working)")
    p.add_argument("name")
    p.set_defaults(func=_cmd_flag(True))

    p = sub.add_parser("enable", help="undo disable")
    p.add_argument("name")
    p.set_defaults(func=_cmd_flag(False))

    p = sub.add_parser("delete", help="delete a user with their rules, tokens and sessions")
    p.add_argument("name")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("admin", help="give or take the admin role")
    p.add_argument("name")
    p.add_argument("state", choices=("on", "off"))
    p.set_defaults(func=cmd_admin)

    p = sub.add_parser("grant", help="allow USER (or '*' for everyone) ACTIONS on BUCKET[/PREFIX]")
    p.add_argument("user")
    p.add_argument("target", metavar="BUCKET[/PREFIX]")
    p.add_argument("actions", metavar="ACTIONS", help="read,list,write,delete or all")
    p.set_defaults(func=cmd_grant)

    p = sub.add_parser("revoke", help="take ACTIONS (default all) on BUCKET[/PREFIX] away from USER")
    p.add_argument("user")
    p.add_argument("target", metavar="BUCKET[/PREFIX]")
    p.add_argument("actions", metavar="ACTIONS", nargs="?", default="all")
    p.set_defaults(func=cmd_revoke)

    p = sub.add_parser("unlock", help="clear failed-login counters for a user name and/or a client address")
    p.add_argument("name", nargs="?")
    p.add_argument("--address", help="client IP address")
    p.set_defaults(func=cmd_unlock)

    p = sub.add_parser("logout", help="end all browser sessions of a user")
    p.add_argument("name")
    p.set_defaults(func=cmd_logout)

    p = sub.add_parser(
        "migrate-to",
        help="copy this SQLite users database into an empty PostgreSQL one (for several gateways)",
    )
    p.add_argument("url", metavar="postgresql://USER@HOST/DATABASE")
    p.set_defaults(func=cmd_migrate_to)

    tokens = subparsers.add_parser(
        "tokens",
        help="manage API tokens",
        formatter_class=fmt,
        description="API tokens (s3g_...): shown once, stored hashed, revocable, optionally expiring and "
        "limited to part of the owner's rights.",
        epilog="examples:\n  s3gate tokens create alice --expires 30d --scope files/docs:read,list\n"
        "  s3gate tokens list alice\n  s3gate tokens revoke 3f2a9c81d0e4",
    )
    tokens.set_defaults(func=_help(tokens))
    tsub = tokens.add_subparsers(dest="tokens_command", metavar="COMMAND")

    p = tsub.add_parser("create", help="create a token for USER; prints it once on standard output")
    p.add_argument("user")
    p.add_argument("--expires", help="lifetime: 3600, 90m, 12h, 30d, 1y (default: never)")
    p.add_argument(
        "--scope",
        action="append",
        metavar="BUCKET[/PREFIX]:ACTIONS",
        help="limit the token to this (repeatable); must be within the user's rights",
    )
    p.add_argument("--label", default="", help="a note to recognise the token by")
    p.set_defaults(func=cmd_token_create)

    p = tsub.add_parser("list", help="active tokens (of USER, or everyone's)")
    p.add_argument("user", nargs="?")
    p.add_argument("--all", action="store_true", help="include expired and revoked tokens")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_token_list)

    p = tsub.add_parser("revoke", help="revoke tokens by id (effective at once)")
    p.add_argument("ids", nargs="+", metavar="ID")
    p.set_defaults(func=cmd_token_revoke)
