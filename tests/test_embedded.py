"""The embedded store's helpers that need no SeaweedFS: the free-port check."""

import socket
import time

import psutil

from s3gate.embedded import _low_port, _port_free


def _time_wait_on(port: int) -> bool:
    return any(
        c.laddr and c.laddr.port == port and c.status == psutil.CONN_TIME_WAIT for c in psutil.net_connections("tcp4")
    )


def test_a_port_in_time_wait_is_free():
    """After a stop, the server's side of its last connections sits in TIME-WAIT (~60 s);
    a server binds with SO_REUSEADDR and gets the port, so the check must agree
    (./run.sh restarts at once on the same port)."""
    with socket.socket() as listener:
        # As SeaweedFS (Go) and gunicorn listen; the TIME-WAIT end inherits it.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = listener.accept()
        conn.close()  # the server closes first: its end goes to TIME-WAIT
        client.recv(1)  # the FIN arrived
        client.close()
    deadline = time.monotonic() + 10
    while not _time_wait_on(port):
        assert time.monotonic() < deadline, "no TIME-WAIT connection appeared"
        time.sleep(0.01)
    assert _port_free(port)


def test_a_listening_port_is_busy():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert not _port_free(listener.getsockname()[1])


def test_store_ports_come_from_below_the_ephemeral_range():
    """Any outgoing connection (or bind to port 0) may be handed a port of the kernel's
    ephemeral range between our check and weed's bind, and weed mini then exits: the
    store's ports and their gRPC twins are drawn from below it."""
    first = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    assert first >= 24000, "this machine's ephemeral range leaves no room below it"
    ports = {_low_port() for _ in range(200)}
    assert max(ports) + 10000 < first
    assert min(ports) >= 1024
    assert len(ports) > 150  # drawn at random, not one fixed port
