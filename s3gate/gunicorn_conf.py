"""gunicorn's configuration module (`--config python:s3gate.gunicorn_conf`), given by `s3gate serve`.

gunicorn reads every module-level name that is one of its settings, so this
module defines nothing else at module level but imports and classes: the
command line (s3gate.launcher.gunicorn_argv) carries the rest.
"""

from __future__ import annotations

import os

from gunicorn import glogging

from .logformat import JsonFormatter


def on_starting(server) -> None:
    """In the arbiter, before it binds or forks: settings no worker could boot with stop it here,
    with the one line and exit 3. (Left to the workers, each fails alone, and gunicorn 27 prints a
    traceback when two fail at the same moment.)"""
    from .app import bootable_settings

    bootable_settings()


def child_exit(server, worker) -> None:
    """In the arbiter, once a worker has exited (a crash or SIGKILL too): drop its live gauges.

    Its counters and histograms stay in their files, so totals keep what the
    dead worker counted (see s3gate.metrics).
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


class JsonLogger(glogging.Logger):
    """gunicorn's own lines ("Booting worker", "Worker exiting") as JSON too, with log_format = "json"."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())
