"""The CLI run away from the gateway's data directory (issue 7, item 19).

Run as an operator would: the real `s3gate` script, in a directory that is not
the gateway's and without S3GATE_DATA_DIR. A command that reads or changes
existing users must refuse, not create an empty ./data/users.db and answer
from it; only `users add` creates the database.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

S3GATE = str(Path(sys.executable).parent / "s3gate")

READ_OR_CHANGE = [
    ("users", "list"),
    ("users", "list", "--json"),
    ("users", "passwd", "alice", "--password-stdin"),
    ("users", "disable", "alice"),
    ("users", "enable", "alice"),
    ("users", "delete", "alice", "--yes"),
    ("users", "admin", "alice", "on"),
    ("users", "grant", "alice", "files", "read"),
    ("users", "grant", "*", "files/pub", "read"),
    ("users", "revoke", "alice", "files"),
    ("users", "unlock", "alice"),
    ("users", "logout", "alice"),
    ("tokens", "create", "alice"),
    ("tokens", "list"),
    ("tokens", "revoke", "1"),
]


def s3gate(*argv: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3GATE_")}
    return subprocess.run([S3GATE, *argv], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("argv", READ_OR_CHANGE, ids=" ".join)
def test_commands_on_existing_users_refuse_to_create_a_database(tmp_path, argv):
    res = s3gate(*argv, cwd=tmp_path, stdin="a long enough password\n")
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "no users database at" in res.stderr and str(tmp_path / "data" / "users.db") in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "data").exists(), list(tmp_path.rglob("*"))


def test_users_add_creates_the_database(tmp_path):
    res = s3gate("users", "add", "alice", "--password-stdin", cwd=tmp_path, stdin="a long enough password\n")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "data" / "users.db").exists()
    listed = s3gate("users", "list", cwd=tmp_path)
    assert listed.returncode == 0 and "alice" in listed.stdout
