"""What `s3gate serve` prepares for metrics and JSON logs before gunicorn starts (end to end: tests/integration/test_metrics.py)."""

from __future__ import annotations

import logging
import stat

from s3gate import launcher
from s3gate import settings as settings_mod
from s3gate.gunicorn_conf import JsonLogger


def test_the_metrics_folder_is_private_and_emptied_at_each_start(tmp_path):
    folder = launcher.fresh_metrics_dir(tmp_path)
    assert folder == tmp_path / "metrics"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    # A previous run's files (a worker's counters) would add up with the new run's.
    (folder / "counter_4242.db").write_bytes(b"old")
    (folder / "gauge_livesum_4242.db").write_bytes(b"old")
    folder.chmod(0o755)
    assert launcher.fresh_metrics_dir(tmp_path) == folder
    assert list(folder.iterdir()) == []
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_gunicorn_gets_the_hooks_and_json_logs_when_asked():
    argv = launcher.gunicorn_argv(settings_mod.load({}, use_file=False))
    assert argv[argv.index("--config") + 1] == "python:s3gate.gunicorn_conf"
    assert "--logger-class" not in argv
    argv = launcher.gunicorn_argv(settings_mod.load({"S3GATE_LOG_FORMAT": "json"}, use_file=False))
    assert argv[argv.index("--logger-class") + 1] == "s3gate.gunicorn_conf.JsonLogger"


def test_gunicorns_own_lines_in_json(capsys):
    from gunicorn.config import Config

    logger = JsonLogger(Config())
    handler = logger.error_log.handlers[0]
    record = logging.LogRecord("gunicorn.error", logging.INFO, __file__, 1, "Booting worker with pid: %s", (7,), None)
    line = handler.format(record)
    assert line.startswith("{") and '"message":"Booting worker with pid: 7"' in line
