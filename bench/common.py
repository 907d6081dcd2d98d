"""What every bench script shares: processes, ports, the store, the gateway, CPU and memory readings.

- ``PROCS``: every process a bench starts, each in a session of its own, stopped
  by process group (``PROCS.stop_all()`` at exit, also on Ctrl-C).
- ``start_store``: the embedded SeaweedFS (``s3gate.embedded.SeaweedFS``, the
  class ``s3gate serve`` uses, whose stop() also removes the sockets weed leaves
  in /tmp) with fresh random credentials; ``vacuum`` for it.
- ``Gateway``: gunicorn exactly as ``s3gate serve`` starts it
  (``s3gate.launcher.gunicorn_argv``, the metrics directory it prepares), auth
  off or on with an API token made by s3gate's own CLI (``make_token``).
- CPU: ``cpu_seconds`` of a set of pids (from /proc), ``proc_tree``,
  ``machine_busy`` (the whole machine, tasks and irq/softirq apart),
  ``own_cpu``; ``wait_idle`` before a measurement.
- Memory: ``status_kb``, ``RssPoller`` (peak RSS of one process).
- ``versions()``: the machine and versions line of a report.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

# Only the store at import: run.py still measures direct and nginx when the gateway's code does not import.
from s3gate.embedded import Credentials, SeaweedFS, weed_binary
from s3gate.embedded import free_port as _free_port

REPO = Path(__file__).resolve().parent.parent
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
BUCKET = "bench"
BIN = Path(sys.executable).parent  # the venv's bin (weed, s3gate live there)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


# ---------------------------------------------------------------- processes
class Procs:
    """Every process we start, each in its own session, killed by group at exit."""

    def __init__(self) -> None:
        self.live: list[tuple[str, subprocess.Popen]] = []
        self.lock = threading.Lock()

    def popen(self, name: str, argv: list[str], **kw: Any) -> subprocess.Popen:
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(argv, **kw)
        with self.lock:
            self.live.append((name, p))
        return p

    def forget(self, p: subprocess.Popen) -> None:
        with self.lock:
            self.live = [(n, q) for n, q in self.live if q is not p]

    def stop(self, p: subprocess.Popen, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
        else:
            # the leader is gone; its group may not be
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
        self.forget(p)

    def stop_all(self) -> None:
        with self.lock:
            live = list(reversed(self.live))
        for _name, p in live:
            self.stop(p, timeout=8)


PROCS = Procs()


def free_port() -> int:
    """A free loopback port."""
    return _free_port()


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    """Until something listens on 127.0.0.1:port; fails early if proc exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise BenchError(f"{what} did not listen on {port} within {timeout:.0f}s")


def clean_env() -> dict[str, str]:
    """This process's environment without any S3GATE_* or AWS_* variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("S3GATE_", "AWS_"))}


def find_bin(name: str) -> Path:
    p = BIN / name
    if p.exists():
        return p
    w = shutil.which(name)
    if not w:
        raise BenchError(f"{name} not found (looked in {BIN} and PATH)")
    return Path(w)


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise SystemExit(f"bad size {text!r}")
    return int(float(m.group(1)) * {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": 1024 * GiB}[m.group(2)])


def random_file(path: Path, size: int, seed: int | None = None, digest: Any = None) -> Path:
    """SIZE random bytes (os.urandom, or a seeded generator) in PATH; DIGEST (a hashlib object) sees them too."""
    rng = random.Random(seed) if seed is not None else None
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(left, 16 * MiB)
            chunk = rng.randbytes(n) if rng else os.urandom(n)
            if digest is not None:
                digest.update(chunk)
            fh.write(chunk)
            left -= n
    return path


# ---------------------------------------------------------------- the store
def start_store(root: Path, buckets: tuple[str, ...] = (BUCKET,)) -> SeaweedFS:
    """The embedded SeaweedFS under root (loopback, fresh random credentials) holding these buckets."""
    store = SeaweedFS(
        root, credentials=Credentials("bench" + secrets.token_hex(4), secrets.token_urlsafe(24)), buckets=buckets
    )
    return store.start()


def vacuum(store: SeaweedFS, timeout: float = 30) -> None:
    """Reclaim the space of deleted objects (weed shell from the data dir: its security.toml has the gRPC keys).

    The shell must take the master's admin lock first, which weed mini's own
    maintenance may hold: seen once to wait for minutes. A few seconds is usual;
    after TIMEOUT the space is left for the next vacuum.
    """
    master = (store._ports or (0,))[0]
    if not master or store.process is None:
        return
    try:
        subprocess.run(
            [weed_binary(), "shell", f"-master=127.0.0.1:{master}"],
            input=b"lock\nvolume.vacuum -garbageThreshold 0.01\nunlock\nexit\n",
            cwd=store.data_dir, capture_output=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        log(f"  vacuum did not finish within {timeout:.0f}s (the store's admin lock busy?); going on")
    except OSError as exc:
        log(f"  vacuum failed: {exc}")


# ---------------------------------------------------------------- the gateway
def make_token(env: dict[str, str], user: str = "bench", bucket: str = BUCKET) -> str:
    """A user without a password, every right in BUCKET, and an API token of theirs: s3gate's own CLI, ENV's settings."""

    def cli(*args: str) -> str:
        done = subprocess.run(
            [str(find_bin("s3gate")), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise BenchError(f"s3gate {args[0]} {args[1]}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
        return done.stdout

    cli("users", "add", user, "--no-password")
    cli("users", "grant", user, bucket, "all")
    token = cli("tokens", "create", user, "--label", "bench").strip().splitlines()[-1].strip()
    if not token.startswith("s3g_"):
        raise BenchError("s3gate tokens create printed no token")
    return token


class Gateway:
    """s3gate as `s3gate serve` runs it: gunicorn with s3gate.launcher.gunicorn_argv, settings in the environment.

    ``auth``: False sets ``S3GATE_AUTH=0``; True keeps the default (on) and, at
    the first start, makes a user with every right in BUCKET and an API token;
    ``headers`` then carries ``Authorization: Bearer TOKEN``. ``env`` adds or
    overrides settings (``S3GATE_TLS_CERT``...). The data directory, users
    database and token survive a restart.
    """

    def __init__(
        self,
        work: Path,
        store: SeaweedFS,
        *,
        workers: int = 1,
        auth: bool = False,
        env: dict[str, str] | None = None,
        name: str = "gunicorn",
        cacert: Path | None = None,
    ):
        self.work, self.store, self.workers, self.auth = work, store, workers, auth
        self.name, self.cacert = name, cacert
        self.extra = dict(env or {})
        self.port = free_port()
        self.data_dir = work / f"{name}-data"
        self.log_path = work / f"{name}.log"
        self.master: subprocess.Popen | None = None
        self.token = ""
        self.env = self._env()
        from s3gate import settings as settings_mod

        self.settings = settings_mod.load(environ=self.env, use_file=False)

    def _env(self) -> dict[str, str]:
        cfg = self.work / "s3gate.toml"
        if not cfg.exists():
            cfg.write_text("# empty: the benchmark sets everything in the environment\n")
        env = clean_env()
        env.update(
            S3GATE_CONFIG=str(cfg),
            S3GATE_HOST="127.0.0.1",
            S3GATE_PORT=str(self.port),
            S3GATE_WORKERS=str(self.workers),
            S3GATE_DATA_DIR=str(self.data_dir),
            S3GATE_S3_ENDPOINT=self.store.endpoint,
            S3GATE_S3_ACCESS_KEY=self.store.credentials.access_key,
            S3GATE_S3_SECRET_KEY=self.store.credentials.secret_key,
        )
        if not self.auth:
            env["S3GATE_AUTH"] = "0"
        env.update(self.extra)
        return env

    @property
    def base(self) -> str:
        return f"{'https' if self.settings.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def curl_headers(self) -> list[str]:
        """curl arguments that authenticate as the bench user (none with auth off)."""
        return [arg for k, v in self.headers.items() for arg in ("-H", f"{k}: {v}")]

    @property
    def worker_class(self) -> str:
        """gunicorn's --worker-class as the launcher gives it (it follows the settings)."""
        from s3gate.launcher import gunicorn_argv

        argv = gunicorn_argv(self.settings)
        return argv[argv.index("--worker-class") + 1]

    def shown_settings(self) -> dict[str, str]:
        """The S3GATE_* settings and extra variables given, without keys, paths, address and worker count."""
        return {
            k: v
            for k, v in self.env.items()
            if (k.startswith("S3GATE_") or k in self.extra)
            and "KEY" not in k
            and "DIR" not in k
            and k not in ("S3GATE_CONFIG", "S3GATE_HOST", "S3GATE_PORT", "S3GATE_WORKERS")
        }

    def start(self, timeout: float = 60) -> Gateway:
        from s3gate.launcher import fresh_metrics_dir, gunicorn_argv

        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        env = dict(self.env)
        # As `s3gate serve`: set before gunicorn forks its workers (prometheus-client picks its mode at import).
        env["PROMETHEUS_MULTIPROC_DIR"] = str(fresh_metrics_dir(self.data_dir))
        if self.auth and not self.token:
            self.token = make_token(env)
        with open(self.log_path, "ab") as logf:  # the child keeps its own copy of the descriptor
            self.master = PROCS.popen(
                self.name, gunicorn_argv(self.settings), env=env, cwd=REPO, stdout=logf, stderr=subprocess.STDOUT
            )
        wait_port(self.port, timeout, self.master, self.name)
        deadline = time.monotonic() + timeout
        while len(self.worker_pids()) < self.workers:
            if time.monotonic() > deadline or self.master.poll() is not None:
                raise BenchError(f"{self.name} has no worker; see {self.log_path}")
            time.sleep(0.1)
        # A worker must answer HTTP (not just the master hold the socket).
        context = ssl.create_default_context(cafile=str(self.cacert)) if self.cacert else None
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=5, context=context) as r:
                    r.read()
                break
            except urllib.error.HTTPError:
                break  # any HTTP answer will do
            except OSError:
                if time.monotonic() > deadline or self.master.poll() is not None:
                    raise BenchError(f"{self.name} does not answer; see {self.log_path}") from None
                time.sleep(0.2)
        return self

    def stop(self, timeout: float = 40) -> None:
        if self.master is not None:
            PROCS.stop(self.master, timeout=timeout)
            self.master = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def worker_pids(self) -> list[int]:
        return proc_children(self.master.pid) if self.master else []

    def pids(self) -> list[int]:
        """gunicorn's master and its workers."""
        return proc_tree(self.master.pid) if self.master else []

    @property
    def worker(self) -> int:
        kids = self.worker_pids()
        if len(kids) != 1:
            raise BenchError(f"expected one gunicorn worker, found {kids}")
        return kids[0]

    def errors(self) -> list[str]:
        """ERROR entries in the gateway's log so far (first line of each)."""
        with contextlib.suppress(OSError):
            return [line for line in self.log_path.read_text(errors="replace").splitlines() if " ERROR " in line]
        return []

    def first_traceback(self, max_lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            lines = self.log_path.read_text(errors="replace").splitlines()
            for i, line in enumerate(lines):
                if " ERROR " in line:
                    block = [line]
                    for nxt in lines[i + 1 : i + max_lines]:
                        if re.match(r"^(\d{4}-\d\d-\d\d |\[\d{4})", nxt):
                            break
                        block.append(nxt)
                    return "\n".join(block)
        return ""


# ---------------------------------------------------------------- /proc: CPU and memory
def proc_children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                out += [int(x) for x in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return out


def proc_tree(pid: int) -> list[int]:
    """pid and every descendant alive now."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += proc_children(p)
    return pids


def cpu_seconds(pids: list[int], reaped: bool = False) -> float:
    """CPU seconds (user + system) used so far by these processes; with reaped, their waited-for children's too."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
            if reaped:
                total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / CLK_TCK


def tree_cpu(pid: int | None) -> float:
    """CPU seconds of pid and its descendants alive now (gunicorn's and nginx's workers live on)."""
    return cpu_seconds(proc_tree(pid)) if pid else 0.0


def machine_busy() -> tuple[float, float]:
    """CPU seconds the whole machine (all cores) has been busy so far: (in tasks, in irq/softirq).

    On loopback the softirq share is mostly the TCP stack moving the bytes around.
    """
    vals = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (vals + [0] * 8)[:8]
    return (user + nice + system + steal) / CLK_TCK, (irq + softirq) / CLK_TCK


def own_cpu() -> float:
    """CPU seconds of this process and its reaped children (curl, generators)."""
    import resource

    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def children_cpu() -> float:
    """CPU seconds of this process's reaped children (every curl it ran and waited for)."""
    import resource

    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return c.ru_utime + c.ru_stime


def wait_idle(limit: float, what: str = "the next measurement") -> None:
    """Wait (up to LIMIT seconds) until the machine is nearly idle (< 0.15 cores a core), so other jobs skew less."""
    if limit <= 0:
        return
    deadline = time.monotonic() + limit
    told = False
    while True:
        b0 = sum(machine_busy())
        time.sleep(1.0)
        busy = sum(machine_busy()) - b0
        if busy < 0.15 * (os.cpu_count() or 1):
            return
        if time.monotonic() > deadline:
            log(f"  machine still busy ({busy:.2f} cores used by others); measuring {what} anyway")
            return
        if not told:
            log(f"  machine busy ({busy:.2f} cores); waiting up to {limit:.0f}s before {what}")
            told = True


def status_kb(pid: int, key: str) -> int:
    """A /proc/PID/status field in kB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {key} for {pid}")


def reset_peak(pid: int) -> bool:
    """VmHWM back to the current RSS (False where the kernel does not let us)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class RssPoller:
    """Peak RSS of one process: VmHWM reset via clear_refs, plus VmRSS polled every 20 ms."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self.hwm_reset = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssPoller:
        self.hwm_reset = reset_peak(self.pid)
        self.baseline_kb = status_kb(self.pid, "VmRSS")
        self.peak_kb = self.baseline_kb
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError, BenchError):
                self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS"))

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(OSError, BenchError):
            self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS"))
            if self.hwm_reset:
                self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmHWM"))


# ---------------------------------------------------------------- the report
def versions() -> str:
    """Python, cores, kernel, curl, nginx, SeaweedFS and the Python packages that serve, in one line."""
    out = [f"Python {platform.python_version()}", f"{os.cpu_count()} cores", f"Linux {platform.release()}"]
    with contextlib.suppress(Exception):
        out.append("curl " + subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split()[1])
    with contextlib.suppress(Exception):
        v = subprocess.run([shutil.which("nginx") or "nginx", "-v"], capture_output=True, text=True).stderr.strip()
        out.append(v.split(": ")[-1].replace("/", " "))
    with contextlib.suppress(Exception):
        v = subprocess.run([weed_binary(), "version"], capture_output=True, text=True).stdout
        out.append("SeaweedFS " + re.search(r"\b(\d+\.\d+)\b", v).group(1))
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("aiohttp", "aiobotocore", "gunicorn"):
        with contextlib.suppress(PackageNotFoundError):
            out.append(f"{pkg} {version(pkg)}")
    return ", ".join(out)
