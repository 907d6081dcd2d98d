"""The audit log records who did what from where; no log anywhere holds a password, token or cookie."""

import json
import logging
import time

import pytest

from s3gate import metrics
from s3gate.auth.rules import Rule
from s3gate.http.authn import COOKIE

from .conftest import PASSWORD, basic, bearer

WRONG = "Wrong-Secret-Password-1"


def audit_lines(tmp_path) -> list[dict]:
    text = (tmp_path / "data" / "audit.log").read_text()
    return [json.loads(line) for line in text.splitlines()]


async def test_audit_trail_and_no_secret_in_any_log(make_client, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # everything, every logger (aiohttp.access included)
    client, service = await make_client()
    await service.add_user("alice", PASSWORD)
    await service.grant("alice", Rule.parse("files/docs:read,list,write"))
    secrets_seen = [PASSWORD, WRONG]

    # A failed Basic login, then a browser login.
    resp = await client.get("/files/files/docs/a", headers={**basic("alice", WRONG), "X-Request-Id": "rid-fail"})
    assert resp.status == 401
    resp = await client.post("/login", data={"username": "alice", "password": PASSWORD}, allow_redirects=False)
    assert resp.status == 303
    session_id = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value
    secrets_seen.append(session_id)

    # Upload, download, a refused delete, all with the cookie.
    assert (await client.put("/files/files/docs/a.txt", data=b"x", headers={"X-Request-Id": "rid-up"})).status == 200
    assert (await client.get("/files/files/docs/a.txt", headers={"X-Request-Id": "rid-down"})).status == 200
    assert (await client.delete("/files/files/docs/a.txt", headers={"X-Request-Id": "rid-del"})).status == 403

    # A token: created, used, revoked, refused.
    created = await (await client.post("/api/tokens", json={"scope": ["files/docs:read"]})).json()
    secrets_seen.append(created["token"])
    assert (await client.get("/files/files/docs/b.txt", headers=bearer(created["token"]))).status == 200
    await client.delete(f"/api/tokens/{created['id']}")
    assert (await client.get("/files/files/docs/b.txt", headers=bearer(created["token"]))).status == 401
    # A password typed into the user-name field is not logged either.
    resp = await client.get("/files/files/docs/a", headers=basic("my-secret-password-in-user-field", "x"))
    assert resp.status == 401
    secrets_seen.append("my-secret-password-in-user-field")

    assert (await client.post("/logout", allow_redirects=False)).status == 303
    await client.close()  # stops the audit listener: everything flushed

    lines = audit_lines(tmp_path)
    everything = caplog.text + "\n".join(str(r.args) for r in caplog.records) + (tmp_path / "data" / "audit.log").read_text()
    for secret in secrets_seen:
        assert secret not in everything, secret
    assert "sig=" not in everything

    def find(event, **match):
        hits = [e for e in lines if e["event"] == event and all(e.get(k) == v for k, v in match.items())]
        assert hits, (event, match, lines)
        return hits[0]

    failed = find("login_failed", user="alice")
    assert failed["outcome"] == "failed" and failed["remote"] == "127.0.0.1" and failed["request_id"] == "rid-fail"
    find("login", user="alice", outcome="ok")
    up = find("upload", request_id="rid-up")
    assert up == {**up, "user": "alice", "via": "session", "bucket": "files", "key": "docs/a.txt",
                  "outcome": "ok", "status": 200, "remote": "127.0.0.1"}
    find("download", request_id="rid-down", outcome="ok")
    find("delete", request_id="rid-del", outcome="denied", status=403)
    find("token_created", user="alice", token=created["id"])
    find("download", via="token", token=created["id"], key="docs/b.txt")
    find("token_revoked", token=created["id"])
    find("token_refused", outcome="failed")
    find("logout", user="alice")
    unknown = [e for e in lines if e["event"] == "login_failed" and "user" not in e]
    assert unknown, "an unknown user name is recorded without the name"
    assert all("ts" in e for e in lines)


async def test_audit_to_the_main_log(make_client, caplog):
    caplog.set_level(logging.INFO, logger="s3gate.audit")
    client, service = await make_client(audit_log="-")
    await service.add_user("alice", PASSWORD)
    await client.get("/files/files/a", headers=basic("alice", WRONG))
    entries = [json.loads(r.getMessage()) for r in caplog.records if r.name == "s3gate.audit"]
    assert any(e["event"] == "login_failed" and e["user"] == "alice" for e in entries)
    assert WRONG not in caplog.text


def test_unknown_fields_are_dropped_not_logged(caplog):
    from s3gate.auth import audit

    caplog.set_level(logging.INFO, logger="s3gate.audit")
    audit.record("x", user="bob", password="hunter2hunter2")
    entry = json.loads(caplog.records[-1].getMessage())
    assert entry["dropped_fields"] == ["password"] and "hunter2" not in caplog.text


async def test_only_the_locking_failure_is_a_lockout(make_client, caplog):
    caplog.set_level(logging.INFO, logger="s3gate.audit")
    client, service = await make_client(audit_log="-", login_delay=0, login_max_failures=2)
    await service.add_user("alice", PASSWORD)
    lockouts = metrics.REGISTRY.get_sample_value("s3gate_login_lockouts_total")
    assert (await client.get("/files/files/a", headers=basic("alice", WRONG))).status == 401
    events = [json.loads(r.getMessage())["event"] for r in caplog.records if r.name == "s3gate.audit"]
    assert events == ["login_failed"]  # the first of two: no lockout yet
    assert metrics.REGISTRY.get_sample_value("s3gate_login_lockouts_total") == lockouts
    assert (await client.get("/files/files/a", headers=basic("alice", WRONG))).status == 401
    events = [json.loads(r.getMessage())["event"] for r in caplog.records if r.name == "s3gate.audit"]
    assert events[1:] == ["login_failed", "login_locked"]
    assert metrics.REGISTRY.get_sample_value("s3gate_login_lockouts_total") == lockouts + 1


async def test_lockouts_and_throttled_attempts_are_audited(make_client, caplog):
    caplog.set_level(logging.INFO, logger="s3gate.audit")
    client, service = await make_client(audit_log="-", login_max_failures=1)
    await service.add_user("alice", PASSWORD)
    assert (await client.get("/files/files/a", headers=basic("alice", WRONG))).status == 401
    headers = {**basic("alice", PASSWORD), "X-Request-Id": "rid-429"}
    assert (await client.get("/files/files/a", headers=headers)).status == 429
    entries = [json.loads(r.getMessage()) for r in caplog.records if r.name == "s3gate.audit"]
    assert [e["event"] for e in entries][:3] == ["login_failed", "login_locked", "login_throttled"]
    fields = ("user", "remote", "request_id", "outcome")  # who, from where, which request, how it ended
    assert [tuple(e.get(f) for f in fields) for e in entries[:3]] == [
        ("alice", "127.0.0.1", "rid-test", "failed"),
        ("alice", "127.0.0.1", "rid-test", "locked"),
        ("alice", "127.0.0.1", "rid-429", "locked"),
    ]
    assert entries[0]["reason"] == "bad credentials"
    await service.set_disabled("alice", True)
    await service.unlock(name="alice")
    headers = {**basic("alice", PASSWORD), "X-Request-Id": "rid-disabled"}
    assert (await client.get("/files/files/a", headers=headers)).status == 401
    entries = [json.loads(r.getMessage()) for r in caplog.records if r.name == "s3gate.audit"]
    [disabled] = [e for e in entries if e.get("request_id") == "rid-disabled" and e["event"] == "login_failed"]
    assert disabled["reason"] == "disabled"  # the right password of a disabled user


def test_the_audit_file_follows_logrotate_and_loses_no_line_at_stop(tmp_path):
    """logrotate moves the file away: the next lines go to a new, private file at the same path;
    stopping writes every line queued before it, in order, one JSON object per line."""
    import os

    from s3gate.auth import audit

    sink = audit.AuditSink("audit.log", str(tmp_path))
    sink.start()
    try:
        audit.record("login", user="alice", outcome="ok", request_id="before-rotation")
        path = tmp_path / "audit.log"
        for _ in range(200):  # the writer thread's first batch
            if path.exists() and "before-rotation" in path.read_text():
                break
            import time

            time.sleep(0.01)
        os.rename(path, tmp_path / "audit.log.1")
        for n in range(5000):
            audit.record("download", user="alice", outcome="ok", status=200, request_id=f"r{n}")
    finally:
        sink.stop()
    import threading

    assert not [t for t in threading.enumerate() if t.name == "s3gate-audit"]  # stop() waited for the writer
    old = [json.loads(line) for line in (tmp_path / "audit.log.1").read_text().splitlines()]
    new = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [e["request_id"] for e in old] == ["before-rotation"]
    assert [e["request_id"] for e in new] == [f"r{n}" for n in range(5000)]
    assert (tmp_path / "audit.log").stat().st_mode & 0o777 == 0o600


def test_a_line_no_encoding_can_write_is_escaped_not_lost(tmp_path):
    """A key decoded from a URL may hold a lone surrogate; its line is written escaped, and so
    is every line after it."""
    from s3gate.auth import audit

    sink = audit.AuditSink("audit.log", str(tmp_path))
    sink.start()
    try:
        audit.record("download", user="alice", key="bad-\ud800-name", outcome="ok")
        audit.record("download", user="alice", key="after", outcome="ok")
    finally:
        sink.stop()
    lines = (tmp_path / "audit.log").read_text().splitlines()
    assert len(lines) == 2 and "bad-" in lines[0] and json.loads(lines[1])["key"] == "after", lines


def test_the_audit_file_follows_logrotate_create(tmp_path):
    """logrotate's `create`: the file is moved away and a new empty one made at the path before
    the next line; the lines after go to the new file, not on into the rotated one."""
    import os

    from s3gate.auth import audit

    path = tmp_path / "audit.log"
    sink = audit.AuditSink("audit.log", str(tmp_path))
    sink.start()
    try:
        audit.record("login", user="alice", outcome="ok", request_id="before-rotation")
        assert on_disk(path, "before-rotation")
        os.rename(path, tmp_path / "audit.log.1")
        path.touch(mode=0o600)
        audit.record("download", user="alice", outcome="ok", request_id="after-rotation")
    finally:
        sink.stop()
    assert [json.loads(line)["request_id"] for line in (tmp_path / "audit.log.1").read_text().splitlines()] == [
        "before-rotation"
    ]
    assert [json.loads(line)["request_id"] for line in path.read_text().splitlines()] == ["after-rotation"]


def test_a_stopped_sink_leaves_the_audit_logger_as_it_found_it(tmp_path, caplog):
    """After stop (an app's cleanup) the s3gate.audit logger has its level, propagation and
    handlers of before start: nothing of the sink stays to queue lines no writer reads."""
    from s3gate.auth import audit

    caplog.set_level(logging.WARNING, logger="s3gate.audit")  # what start() found: audit lines not wanted
    before = (list(audit.log.handlers), audit.log.level, audit.log.propagate)
    sink = audit.AuditSink("audit.log", str(tmp_path))
    sink.start()
    audit.record("login", user="alice", outcome="ok", request_id="while-started")
    sink.stop()
    assert (list(audit.log.handlers), audit.log.level, audit.log.propagate) == before
    audit.record("login", user="alice", outcome="ok", request_id="after-stop")
    assert [r for r in caplog.records if r.name == "s3gate.audit"] == []
    assert [json.loads(line)["request_id"] for line in (tmp_path / "audit.log").read_text().splitlines()] == [
        "while-started"
    ]


def test_an_audit_line_holds_the_given_fields_as_json(caplog):
    """ts in UTC; only the fields given, empty ones left out; numbers stay numbers; anything else
    as text cut at 1024 characters; non-ASCII written as is (grep finds it)."""
    import datetime as dt

    from s3gate.auth import audit

    caplog.set_level(logging.INFO, logger="s3gate.audit")
    rule = Rule.parse("files/docs:read")
    key = "reports/café-" + "k" * 2000
    audit.record("upload", user="alice", via="", token=None, bucket="files", key=key, status=200, detail=rule)
    line = caplog.records[-1].getMessage()
    assert "reports/café-" in line
    entry = json.loads(line)
    ts = dt.datetime.fromisoformat(entry.pop("ts"))
    assert ts.utcoffset() == dt.timedelta(0) and abs(dt.datetime.now(dt.UTC) - ts) < dt.timedelta(minutes=1)
    assert entry == {"event": "upload", "user": "alice", "bucket": "files", "key": key[:1024], "status": 200,
                     "detail": str(rule)}


def test_audit_lines_for_a_file_stay_out_of_the_main_log(tmp_path, caplog):
    from s3gate.auth import audit

    caplog.set_level(logging.INFO)  # the main log takes INFO from every logger
    sink = audit.AuditSink("audit.log", str(tmp_path))
    sink.start()
    try:
        audit.record("login", user="alice", outcome="ok", request_id="to-the-file")
    finally:
        sink.stop()
    assert "to-the-file" in (tmp_path / "audit.log").read_text()
    assert "to-the-file" not in caplog.text


def test_a_process_that_never_stops_the_sink_still_exits(tmp_path):
    """A worker killed past its cleanup: the waiting writer thread does not keep the process alive."""
    import subprocess
    import sys

    code = (
        "import sys; from s3gate.auth import audit; sink = audit.AuditSink('audit.log', sys.argv[1]); sink.start(); "
        "audit.record('login', user='alice', outcome='ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def on_disk(path, request_id: str) -> bool:
    """Whether the line of ``request_id`` reaches the file within 5 s, the sink still running (tail -f)."""
    import time

    for _ in range(500):
        for line in path.read_text().splitlines() if path.is_file() else ():
            try:
                if json.loads(line).get("request_id") == request_id:
                    return True
            except ValueError:  # a line being written
                pass
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("path_comes_back", ["absent", "as-a-file"])
def test_a_failed_write_is_reported_and_the_writer_goes_on(tmp_path, caplog, path_comes_back):
    """The file cannot be written for a while (here a directory took its place): each lost batch is
    one error line naming the file and how many lines it lost; the lines after reach the file again,
    whether the path is then absent or comes back as a file (another worker's writer, or logrotate's
    `create`: before, the writer kept its closed file and lost every later line)."""
    import errno
    import os

    from s3gate.auth import audit

    caplog.set_level(logging.ERROR, logger="s3gate")
    path = tmp_path / "audit.log"
    sink = audit.AuditSink("audit.log", str(tmp_path))
    sink.start()
    try:
        audit.record("login", user="alice", outcome="ok", request_id="before")
        assert on_disk(path, "before")
        os.rename(path, tmp_path / "audit.log.1")
        os.mkdir(path)
        audit.record("login", user="alice", outcome="ok", request_id="lost")
        for _ in range(500):
            if any(r.name == "s3gate" for r in caplog.records):
                break
            time.sleep(0.01)
        os.rmdir(path)
        if path_comes_back == "as-a-file":
            path.touch(mode=0o600)
        audit.record("login", user="alice", outcome="ok", request_id="after")
        assert on_disk(path, "after")
    finally:
        sink.stop()
    [error] = [r.getMessage() for r in caplog.records if r.name == "s3gate"]
    assert error.startswith(f"audit log {path}: ") and error.endswith("(1 lines lost)")
    assert os.strerror(errno.EISDIR) in error  # and why


def test_a_burst_longer_than_a_batch_loses_no_line(tmp_path):
    """More lines queue than one write carries (MAX_BATCH): all of them reach the file, in order."""
    import sys

    from s3gate.auth import audit

    count = audit._AuditFile.MAX_BATCH * 3 + 7
    sink = audit.AuditSink("audit.log", str(tmp_path))
    sink.start()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(5.0)  # the writer thread waits while the burst queues
    try:
        for n in range(count):
            audit.record("download", user="alice", outcome="ok", request_id=f"r{n}")
    finally:
        sys.setswitchinterval(interval)
        sink.stop()
    lines = (tmp_path / "audit.log").read_text().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == [f"r{n}" for n in range(count)]
