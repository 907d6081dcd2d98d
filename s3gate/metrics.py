"""Every Prometheus metric the gateway exports, defined once, and how they are rendered.

Under gunicorn each worker is a process of its own. `s3gate serve` sets
``PROMETHEUS_MULTIPROC_DIR`` (an emptied, private folder in data_dir) before
the workers start, so prometheus-client keeps each worker's values in a small
memory-mapped file there; a scrape, whichever worker answers it, adds up all
the files (:func:`render`). gunicorn's ``child_exit`` hook
(``s3gate.gunicorn_conf``) drops a dead worker's gauges ("live" modes);
its counters and histograms stay, so totals never go backwards when a
worker dies. Without the variable (tests, a single process) the
in-process default registry is used.

Label values come from short, fixed sets only (route templates, method
names, status codes, S3 operation names, outcomes): never a key, a bucket,
a user name or anything else a client chooses.

No aiohttp here: the storage and auth rooms report through small hooks
(``observe_s3``, ``observe_budget``) or the counters below.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

# prometheus-client decides this once, at its import, from the same variable.
MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ
CONTENT_TYPE = CONTENT_TYPE_LATEST
# No *_created series: multiprocess mode has none either, so one process and many look alike.
disable_created_metrics()

# Seconds. Downloads of large objects run for minutes: the top buckets are for them.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
S3_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# -- HTTP (s3gate.http.metrics.metrics_middleware) --------------------------------
HTTP_REQUESTS = Counter(
    "s3gate_http_requests_total",
    "Requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "s3gate_http_request_duration_seconds",
    "Time from the request's arrival at the app to the last byte of the response written.",
    ["route", "method"],
    buckets=HTTP_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge("s3gate_http_requests_in_flight", "Requests being handled now.", multiprocess_mode="livesum")
HTTP_RECEIVED = Counter(
    "s3gate_http_received_bytes", "Request body bytes received (uploads).", ["route", "method"]
)  # prometheus-client adds the _total suffix to counters
HTTP_SENT = Counter(
    "s3gate_http_sent_bytes", "Response bytes written to clients, headers included (downloads).", ["route", "method"]
)

# -- S3 (s3gate.storage.s3: botocore's call events and the lean path) -------------
S3_REQUESTS = Counter(
    "s3gate_s3_requests_total",
    "Calls to S3 by operation and outcome (ok, 4xx, 5xx, unreachable); retries inside one call count once.",
    ["operation", "outcome"],
)
S3_DURATION = Histogram(
    "s3gate_s3_request_duration_seconds",
    "Time of one S3 call until its response head (retries included).",
    ["operation"],
    buckets=S3_BUCKETS,
)

# -- uploads (s3gate.http.uploads) ------------------------------------------------
UPLOADS_IN_FLIGHT = Gauge("s3gate_uploads_in_flight", "Objects being uploaded now.", multiprocess_mode="livesum")
UPLOADS = Counter("s3gate_uploads_total", "Objects uploaded (completed) or given up and aborted.", ["outcome"])

# -- the memory budget (s3gate.storage.budget) --------------------------------------
BUDGET_TOTAL = Gauge(
    "s3gate_memory_budget_bytes", "upload_memory_budget, summed over the workers.", multiprocess_mode="livesum"
)
BUDGET_USED = Gauge(
    "s3gate_memory_budget_used_bytes",
    "Bytes of the memory budget reserved by uploads and downloads now.",
    multiprocess_mode="livesum",
)
BUDGET_WAITING = Gauge(
    "s3gate_memory_budget_waiting",
    "Uploads and downloads waiting for the memory budget now.",
    multiprocess_mode="livesum",
)

# -- logins (s3gate.auth.throttle) --------------------------------------------------
LOGIN_FAILURES = Counter(
    "s3gate_login_failures_total", "Failed password logins (wrong password, unknown or disabled user)."
)
LOGIN_LOCKOUTS = Counter(
    "s3gate_login_lockouts_total", "Failed logins that locked a user name or a client address out."
)

# Known label values exported from the start, so a rate() over them exists before the first event.
for _outcome in ("completed", "aborted"):
    UPLOADS.labels(_outcome)

# What the method label may say; anything else a client sends is "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


@functools.lru_cache(maxsize=4096)
def _series(metric, *labels: str):
    # .labels() validates and locks on every call, a few microseconds each, several times a
    # request; a series, once made, stays the same object. Routes are templates, methods and
    # statuses few, so this stays small.
    return metric.labels(*labels)


def observe_request(route: str, method: str, status: int, seconds: float, received: int, sent: int) -> None:
    method = method_label(method)
    _series(HTTP_REQUESTS, route, method, str(status)).inc()
    _series(HTTP_DURATION, route, method).observe(seconds)
    if received:
        _series(HTTP_RECEIVED, route, method).inc(received)
    if sent:
        _series(HTTP_SENT, route, method).inc(sent)


def s3_outcome(status: int | None) -> str:
    """An HTTP status from S3 as a label: ok, 4xx, 5xx; None (no answer) is unreachable."""
    if status is None:
        return "unreachable"
    if status < 400:
        return "ok"
    return "4xx" if status < 500 else "5xx"


def observe_s3(operation: str, seconds: float, status: int | None) -> None:
    """The storage room's hook (Storage.open(..., observe=...)): one finished S3 call."""
    S3_REQUESTS.labels(operation, s3_outcome(status)).inc()
    S3_DURATION.labels(operation).observe(seconds)


def observe_budget(used: int, waiting: int) -> None:
    """The memory budget's hook (MemoryBudget(..., observe=...)): called on every change."""
    BUDGET_USED.set(used)
    BUDGET_WAITING.set(waiting)


@contextlib.contextmanager
def tracked_upload() -> Iterator[None]:
    """Around one object's upload: in flight meanwhile; completed unless it ends in an exception."""
    UPLOADS_IN_FLIGHT.inc()
    try:
        yield
    except BaseException:
        upload_ended("aborted")
        raise
    else:
        upload_ended("completed")
    finally:
        UPLOADS_IN_FLIGHT.dec()


def upload_ended(outcome: str) -> None:
    """One object's upload ended: "completed", or "aborted" (given up, cancelled or expired).

    A resumable session (many requests, perhaps many workers) counts here when
    it completes, is cancelled or expires; it is never "in flight".
    """
    UPLOADS.labels(outcome).inc()


def login_failed(*, locked: bool) -> None:
    LOGIN_FAILURES.inc()
    if locked:
        LOGIN_LOCKOUTS.inc()


def render() -> bytes:
    """The text exposition format, every worker's values added up. Reads files: call it off the event loop."""
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()  # fresh per scrape, as prometheus-client's multiprocess docs require
    MultiProcessCollector(registry)
    return generate_latest(registry)
