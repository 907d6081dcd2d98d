"""The ``s3gate`` console script: ``serve`` runs the gateway; other rooms add their commands.

Each room that has commands exposes ``register(subparsers)``; handlers are
stored as ``func`` on the parsed namespace and return an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Rooms that contribute sub-commands (module must define register(subparsers)).
COMMAND_MODULES = ("s3gate.launcher", "s3gate.certs", "s3gate.auth.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s3gate", description="HTTP gateway to S3 for curl, wget and browsers.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
