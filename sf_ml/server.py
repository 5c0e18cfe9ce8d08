"""The team's MLflow tracking server: one command, sane defaults, and helpers to run it from Python.

``sf-ml server`` starts ``mlflow server`` with:

- a backend store: SQLite ``sqlite:///mlflow.db`` by default, or any SQLAlchemy URI such as
  ``postgresql+psycopg2://user@host:5432/mlflow`` (the team set-up);
- proxied artifact storage (``--serve-artifacts --artifacts-destination``, default
  ``./mlartifacts``): clients upload and download artifacts through the server, so they need
  no access to the storage itself; new experiments get ``mlflow-artifacts:/`` locations;
- ``--host 127.0.0.1`` (local only) unless told otherwise, port 5000;
- one worker process and ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (MLflow's background job
  runner, unused by this project, costs ~2.5 GB), unless asked otherwise.

Clients point at it with ``MLFLOW_TRACKING_URI=http://host:port`` (see :mod:`sf_ml.tracking`).

From Python (tests, notebooks, benchmarks), :func:`start_server` runs the same command as a
subprocess, waits for ``/health`` and returns a :class:`TrackingServer` handle; :func:`stop`
(or ``handle.stop()``) terminates it and its worker processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
DEFAULT_BACKEND_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACTS_DESTINATION = "./mlartifacts"
DEFAULT_WORKERS = 1
JOB_EXECUTION_VARIABLE = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


class ServerError(RuntimeError):
    """The tracking server did not start (its log tail is in the message)."""


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def artifacts_location(destination: str | Path) -> str:
    """An artifacts destination as ``mlflow server`` wants it: URIs unchanged, paths absolute."""
    text = str(destination)
    if "://" in text or text.startswith("file:"):
        return text
    return str(Path(text).expanduser().resolve())


def _prepared_destination(destination: str | Path) -> str:
    """:func:`artifacts_location` of ``destination``, the directory created when it is local."""
    location = artifacts_location(destination)
    if "://" not in location and not location.startswith("file:"):
        Path(location).mkdir(parents=True, exist_ok=True)
    return location


def server_command(
    backend_uri: str = DEFAULT_BACKEND_URI,
    artifacts_destination: str | Path = DEFAULT_ARTIFACTS_DESTINATION,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = DEFAULT_WORKERS,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The ``mlflow server`` command line (run with this interpreter's MLflow).

    Args:
        backend_uri: Backend (and registry) store URI: ``sqlite:///...``, ``postgresql+psycopg2://...``.
        artifacts_destination: Where the server stores proxied artifacts (path or URI such as ``s3://``).
        host: Interface to bind (``0.0.0.0`` to serve other machines; add ``--allowed-hosts``).
        port: TCP port.
        workers: Server worker processes.
        extra_args: More ``mlflow server`` options, passed as is (``--allowed-hosts ...``).

    Returns:
        The argument list.
    """
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_uri,
        "--serve-artifacts", "--artifacts-destination", artifacts_location(artifacts_destination),
        "--host", host, "--port", str(port), "--workers", str(workers),
        *extra_args,
    ]


def server_environment(job_execution: bool = False, base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: ``base`` (default ``os.environ``) with job execution on or off."""
    env = dict(os.environ if base is None else base)
    env[JOB_EXECUTION_VARIABLE] = "true" if job_execution else "false"
    # The server must not itself talk to another tracking server or continue a client run.
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        env.pop(name, None)
    return env


def run_server(
    backend_uri: str = DEFAULT_BACKEND_URI,
    artifacts_destination: str | Path = DEFAULT_ARTIFACTS_DESTINATION,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    workers: int = DEFAULT_WORKERS,
    job_execution: bool = False,
    extra_args: Sequence[str] = (),
) -> None:
    """Replace the current process by the tracking server (foreground; signals go straight to it).

    The local artifacts destination is created first. Does not return.
    """
    destination = _prepared_destination(artifacts_destination)
    command = server_command(backend_uri, destination, host, port, workers, extra_args)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, server_environment(job_execution))


def _health(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class TrackingServer:
    """A running ``mlflow server`` subprocess started by :func:`start_server`.

    Args:
        process: The server process (leader of its own process group, with its workers).
        backend_uri: Backend store URI.
        artifacts_destination: Proxied artifacts destination (absolute path or URI).
        host: Bound interface.
        port: Port.
        log_path: File receiving the server's stdout and stderr.
        options: The other :func:`start_server` arguments, for :meth:`restart`.
    """

    process: subprocess.Popen
    backend_uri: str
    artifacts_destination: str
    host: str
    port: int
    log_path: Path
    options: dict = field(default_factory=dict, repr=False)
    _log: IO | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The tracking URI clients use: ``http://host:port``."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def running(self) -> bool:
        """The process is alive and ``/health`` answers."""
        return self.process.poll() is None and _health(self.url)

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server log."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        """Terminate the server and its workers (SIGTERM to the group, SIGKILL after ``timeout``)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        # Workers left behind by a killed leader.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, timeout: float = 180.0) -> TrackingServer:
        """Stop (if needed) and start a new server with the same store, artifacts and port."""
        self.stop()
        return start_server(self.backend_uri, self.artifacts_destination, self.port, host=self.host,
                            log_path=self.log_path, timeout=timeout, **self.options)

    def __enter__(self) -> TrackingServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(
    backend_uri: str = DEFAULT_BACKEND_URI,
    artifacts_dir: str | Path = DEFAULT_ARTIFACTS_DESTINATION,
    port: int | None = None,
    host: str = DEFAULT_HOST,
    workers: int = DEFAULT_WORKERS,
    job_execution: bool = False,
    extra_args: Sequence[str] = (),
    log_path: str | Path | None = None,
    timeout: float = 180.0,
    env: dict[str, str] | None = None,
) -> TrackingServer:
    """Start ``mlflow server`` as a subprocess and wait until ``/health`` answers.

    Args:
        backend_uri: Backend store URI (SQLite, PostgreSQL ...).
        artifacts_dir: Proxied artifacts destination (a directory, created; or a URI).
        port: Port; a free one when None.
        host: Interface to bind.
        workers: Server worker processes.
        job_execution: Keep MLflow's background job runner (off: ~0.5 GB instead of ~3 GB).
        extra_args: More ``mlflow server`` options.
        log_path: Server log file (default: a temporary file, kept after stop for post-mortems).
        timeout: Seconds to wait for ``/health``.
        env: Base environment (default ``os.environ``).

    Returns:
        The running server's handle; its ``url`` is the tracking URI.

    Raises:
        ServerError: The process exited or ``/health`` did not answer within ``timeout``
            (the server is stopped; the message holds its log tail).
    """
    destination = _prepared_destination(artifacts_dir)
    port = port or free_port(host if host not in ("0.0.0.0", "") else DEFAULT_HOST)
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix=f"mlflow-server-{port}-", suffix=".log")
        os.close(handle)
        log_path = name
    log_path = Path(log_path)
    log_file = open(log_path, "ab")  # noqa: SIM115 - closed by TrackingServer.stop
    command = server_command(backend_uri, destination, host, port, workers, extra_args)
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
        env=server_environment(job_execution, env), start_new_session=True,
    )
    server = TrackingServer(
        process, backend_uri, destination, host, port, log_path,
        options=dict(workers=workers, job_execution=job_execution, extra_args=tuple(extra_args), env=env),
        _log=log_file,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            raise ServerError(f"mlflow server exited with code {process.returncode}; log {log_path}:\n"
                              f"{server.log_tail()}")
        if _health(server.url, timeout=1.0):
            return server
        time.sleep(0.25)
    server.stop()
    raise ServerError(f"mlflow server not healthy at {server.url} after {timeout:.0f} s; log {log_path}:\n"
                      f"{server.log_tail()}")


def stop(server: TrackingServer, timeout: float = 30.0) -> None:
    """Stop a server started by :func:`start_server` (same as ``server.stop()``)."""
    server.stop(timeout)
