"""log_format = "json": the access log's fields as one JSON object per line, and every other logger's lines too.

The access log lines come from the production runner (make_runner) on a
real socket, as in tests/http/test_server.py; they are formatted with the
formatter ``configure_logging`` installs. The root logger's set-up runs in a
child process (pytest owns this one's).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import pytest
from aiohttp import web

from s3gate import keys
from s3gate.app import create_app, make_runner
from s3gate.auth.rules import Rule
from s3gate.logformat import JsonFormatter, formatter
from tests.conftest import make_settings
from tests.http.test_server import exchange  # one raw HTTP/1.1 exchange, to the last byte

PASSWORD = "correct horse battery"


@pytest.fixture
async def served(tmp_path, moto_endpoint):
    settings = make_settings(
        s3_endpoint=moto_endpoint,
        s3_access_key="testing",
        s3_secret_key="testing",
        data_dir=str(tmp_path / "data"),
        auth=True,
        log_format="json",
    )
    app = create_app(settings)
    runner = make_runner(app, settings)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1], app
    await runner.cleanup()


def access_lines(caplog, fmt: logging.Formatter) -> list[str]:
    return [fmt.format(r) for r in caplog.records if r.name == "s3gate.access"]


async def test_one_json_object_per_request_with_its_fields_and_no_secrets(served, caplog, bucket):
    port, app = served
    service = app[keys.AUTH]
    await service.add_user("dora", None)
    await service.grant("dora", Rule.parse(f"{bucket}:all"))
    token, _ = await service.create_token("dora")
    caplog.set_level(logging.INFO, logger="s3gate.access")
    body = b"0123456789" * 10
    answer = await exchange(
        port,
        f"PUT /files/{bucket}/a%22b%E2%80%A8c%5C.txt?sig=QUERYSECRET&expires=1 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\nX-Request-Id: rid-json-1\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body,
    )
    assert answer.startswith(b"HTTP/1.1 201")
    lines = access_lines(caplog, formatter("json"))
    assert len(lines) == 1
    line = lines[0]
    assert line.isascii() and "\n" not in line and "\u2028" not in line
    entry = json.loads(line)
    assert entry == {
        "time": entry["time"],
        "level": "INFO",
        "logger": "s3gate.access",
        "request_id": "rid-json-1",
        "client": "127.0.0.1",
        "method": "PUT",
        "route": "/files/{bucket}/{path}",
        "path": f'/files/{bucket}/a"b\u2028c\\.txt',  # decoded, exactly, by the reader's json.loads
        "status": 201,
        "bytes_in": 100,
        "bytes_out": len(answer),
        "duration": entry["duration"],
        "user": "dora",
    }
    assert entry["time"].endswith("+00:00") and 0 < entry["duration"] < 10
    for secret in (token, "QUERYSECRET", "Bearer"):
        assert secret not in line


async def test_a_request_the_parser_refused_is_a_json_line_too(served, caplog):
    port, _ = served
    caplog.set_level(logging.INFO, logger="s3gate.access")
    await exchange(port, b"GET /files/ HTTP/1.1\nHost: x\nAuthorization: Basic c2VjcmV0OnNlY3JldA==\n\n")
    lines = access_lines(caplog, JsonFormatter())
    assert lines
    entry = json.loads(lines[-1])
    assert (entry["status"], entry["route"], entry["request_id"], entry["user"]) == (400, "unmatched", "-", None)
    assert "c2VjcmV0" not in lines[-1]


async def test_text_stays_the_default_line(served, caplog):
    port, _ = served
    caplog.set_level(logging.INFO, logger="s3gate.access")
    await exchange(
        port, b"GET /healthz?token=QUERYSECRET HTTP/1.1\r\nHost: x\r\nX-Request-Id: rid-t\r\nConnection: close\r\n\r\n"
    )
    (line,) = access_lines(caplog, formatter("text"))
    assert line.endswith('"GET /healthz" 200 ' + line.split(" 200 ")[1])
    assert "rid=rid-t" in line and "QUERYSECRET" not in line and not line.startswith("{")


ROOT_LOGGER = textwrap.dedent(
    """
    import logging
    from s3gate.app import configure_logging
    from s3gate.settings import load

    configure_logging(load({"S3GATE_LOG_FORMAT": "json"}, use_file=False))
    logging.getLogger("s3gate.storage").warning("storage said %s", "two\\nlines \\u2028 ok")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("s3gate.http").exception("unhandled")
    logging.getLogger("s3gate.http").debug("not shown at info")
    """
)


def test_every_logger_writes_json_when_set():
    done = subprocess.run([sys.executable, "-c", ROOT_LOGGER], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()  # splitlines also splits at U+2028: none may be raw
    entries = [json.loads(line) for line in lines]
    assert [(e["level"], e["logger"], e["message"]) for e in entries] == [
        ("WARNING", "s3gate.storage", "storage said two\nlines \u2028 ok"),
        ("ERROR", "s3gate.http", "unhandled"),
    ]
    assert entries[1]["exception"].startswith("Traceback") and "ValueError: boom" in entries[1]["exception"]
