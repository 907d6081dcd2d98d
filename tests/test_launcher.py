"""`s3gate serve` with a bad setting: one clear line, exit 2, and nothing started (issue 7, item 22).

The real console script in a subprocess, as run.sh runs it. A bad value must be
refused before the embedded SeaweedFS starts, before "listening on" is
printed and before gunicorn could fail with its own message.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

S3GATE = str(Path(sys.executable).parent / "s3gate")


def serve(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3GATE_")}
    env.update(S3GATE_DATA_DIR=str(tmp_path / "data"), S3GATE_EMBEDDED_S3_PORT="0", **settings)
    return subprocess.run([S3GATE, "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "settings,names",
    [
        ({"S3GATE_LOG_LEVEL": "loud"}, "log_level"),
        ({"S3GATE_PUBLIC": "files:fly"}, "public"),
        ({"S3GATE_WORKERS": "-1"}, "workers"),
        ({"S3GATE_HOST": "bad host!"}, "host"),
        ({"S3GATE_HOST": "192.0.2.1"}, "host/port"),  # a valid address that is not this machine's
        ({"S3GATE_MAX_UPLOD_BYTES": "1"}, "S3GATE_MAX_UPLOAD_BYTES"),
        ({"S3GATE_DEFAULT_BUCKET": "Bad_Bucket"}, "default_bucket"),
        ({"S3GATE_PART_SIZE": "1e400"}, "part_size"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else v,
)
def test_bad_setting_is_one_line_before_anything_starts(tmp_path, settings, names):
    res = serve(tmp_path, **settings)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("s3gate: configuration error: "), res.stderr
    assert names in lines[0]
    assert res.stdout == ""  # neither "starting embedded SeaweedFS" nor "listening on"
    assert not (tmp_path / "data").exists()


def test_port_in_use_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        res = serve(tmp_path, S3GATE_PORT=str(taken.getsockname()[1]))
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.startswith("s3gate: configuration error: host/port: cannot listen on 127.0.0.1:"), res.stderr
    assert "in use" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert res.stdout == ""
    assert not (tmp_path / "data").exists()


# -- the embedded store keeps dying (issue 7, item 13) -----------------------------------
class DyingStore:
    """Stands in for the embedded SeaweedFS: a real process that exits with 7 each time it is started."""

    def __init__(self, tmp_path: Path):
        self.log_path = tmp_path / "seaweedfs.log"
        self.endpoint = "http://127.0.0.1:8333"
        self.starts = 0
        self.start()

    def start(self) -> None:
        self.starts += 1
        self.process = subprocess.Popen(["sh", "-c", "exit 7"])
        self.process.wait()  # dead by the time the keeper looks

    def exited(self) -> int | None:
        return self.process.poll()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def keep(keeper, clock: Clock, gap: float = 0.0) -> list[float]:
    """Run the keeper as the launcher's loop does, with time skipping to each restart (plus ``gap``)."""
    from s3gate.launcher import MAX_STORE_DEATHS

    pauses = []
    while keeper.check():
        if keeper.restart_at is not None:
            pauses.append(keeper.restart_at - clock.now)
            clock.now = keeper.restart_at + gap
        if len(pauses) > 3 * MAX_STORE_DEATHS:
            break
    return pauses


def test_a_store_that_keeps_dying_is_restarted_with_growing_pauses_then_given_up(tmp_path, capsys):
    from s3gate.launcher import StoreKeeper

    store, clock = DyingStore(tmp_path), Clock()
    pauses = keep(StoreKeeper(store, clock=clock), clock)
    assert pauses == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert store.starts == 6  # the first start and five restarts; the sixth death ends it
    err = capsys.readouterr().err
    assert "exited with code 7; starting it again in 1 s" in err
    assert "died 6 times in 600 s (last exit code 7); giving up, see" in err and str(store.log_path) in err


def test_deaths_far_apart_never_add_up_to_giving_up(tmp_path):
    from s3gate.launcher import MAX_STORE_DEATHS, STORE_DEATH_WINDOW, StoreKeeper

    store, clock = DyingStore(tmp_path), Clock()
    pauses = keep(StoreKeeper(store, clock=clock), clock, gap=STORE_DEATH_WINDOW / 2)
    assert len(pauses) > 3 * MAX_STORE_DEATHS  # still restarting: at most two deaths in any window
    assert set(pauses) <= {1.0, 2.0}
