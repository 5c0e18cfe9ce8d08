"""Real services for the team set-up tests: a throw-away PostgreSQL cluster, a Spark standalone
cluster, and one small generated world (raw directory and features) shared by the test modules.

Nothing here is mocked: PostgreSQL 15 (``initdb``/``pg_ctl`` as the ``postgres`` user when run
as root), Spark's own ``Master``/``Worker`` daemons and the project's real stages.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sf_ml.server import free_port

ROOT = Path(__file__).resolve().parent.parent

# The small world every team test uses: 400 companies, 2016-2022.
WORLD = dict(n_companies=400, start="2016-01-01", end="2022-12-31", seed=5)
PANEL_START, PANEL_END = "2019-01-01", "2022-06-01"
TRAIN_START, TRAIN_END = "2019-01-01", "2020-06-01"  # labels known to 2021-06: out-of-time after
SCORE_DATE = "2022-06-01"
FAST = ["model.params.maxIter=10"]
# Test data are tiny: evaluating plans interpreted costs less than compiling code for each query.
INTERPRETED = {"spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"}
SPARK_TEST_CONF = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    **INTERPRETED,
}
# Short-lived JVMs on tiny data: C1-only JIT and the serial collector cut their CPU by ~10-15 %
# (Java 17 floating point is strict: results are the same).
QUICK_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


@contextlib.contextmanager
def mlflow_client_state(tracking_uri: str, experiment_name: str, workdir: str | Path):
    """Point this process's MLflow client at a store for a while, then put everything back.

    Sets ``MLFLOW_TRACKING_URI`` and ``MLFLOW_EXPERIMENT_NAME``, moves to ``workdir`` and restores
    afterwards the tracking URI, the active experiment and ``MLFLOW_EXPERIMENT_ID`` (which
    ``mlflow.set_experiment`` writes into ``os.environ`` for subprocesses to inherit).
    """
    import mlflow
    import mlflow.tracking.fluent as fluent

    saved_env = {name: os.environ.get(name) for name in
                 ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    saved_uri, saved_experiment, saved_cwd = mlflow.get_tracking_uri(), fluent._active_experiment_id, os.getcwd()
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    os.environ["MLFLOW_EXPERIMENT_NAME"] = experiment_name
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    os.environ.pop("MLFLOW_RUN_ID", None)
    os.chdir(workdir)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        os.chdir(saved_cwd)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        mlflow.set_tracking_uri(saved_uri)
        fluent._active_experiment_id = saved_experiment


def spark_conf(driver_memory: str = "1g") -> str:
    """``SF_ML_SPARK_CONF`` of a test subprocess: the test settings, the quick JVM, ``driver_memory``."""
    conf = {**SPARK_TEST_CONF, "spark.driver.memory": driver_memory, "spark.executor.memory": "1g",
            "spark.driver.extraJavaOptions": QUICK_JVM, "spark.executor.extraJavaOptions": QUICK_JVM}
    return ";".join(f"{k}={v}" for k, v in conf.items())


def subprocess_env(tracking_uri: str | None = None, master: str = "local[2]", driver_memory: str = "1g",
                   **extra: str) -> dict[str, str]:
    """Environment of a ``python -m sf_ml.cli`` subprocess: small Spark, this interpreter first on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SF_ML_SPARK_MASTER": master,
        "SF_ML_SPARK_CONF": spark_conf(driver_memory),
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        **extra,
    }
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        env.pop(name, None)
    if tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


# --------------------------------------------------------------------------------------------
# The shared small world: generated once per test session, features built once (local Spark).
# --------------------------------------------------------------------------------------------

_SHARED: dict[str, object] = {}


def shared_dir(tmp_path_factory) -> Path:
    """A directory shared by every team test of the session."""
    if "dir" not in _SHARED:
        _SHARED["dir"] = tmp_path_factory.mktemp("team_shared")
    return _SHARED["dir"]  # type: ignore[return-value]


def small_world(tmp_path_factory) -> Path:
    """The generated raw directory of :data:`WORLD` (CSV), generated once."""
    if "raw" not in _SHARED:
        from sf_ml.generate import generate_world

        raw = shared_dir(tmp_path_factory) / "raw"
        generate_world(raw, **WORLD)
        _SHARED["raw"] = raw
    return _SHARED["raw"]  # type: ignore[return-value]


def small_features(spark, tmp_path_factory) -> Path:
    """The features panel of the small world (standard config, local Spark), built once, no run."""
    if "features" not in _SHARED:
        import mlflow

        from sf_ml.config import load_config
        from sf_ml.features import build_features

        features = shared_dir(tmp_path_factory) / "features"
        assert mlflow.active_run() is None
        build_features(small_world(tmp_path_factory), features, load_config("standard", FAST),
                       PANEL_START, PANEL_END, spark=spark)
        _SHARED["features"] = features
    return _SHARED["features"]  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb``, or ``pg_config --bindir``."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresCluster:
    """A private PostgreSQL cluster in a temporary directory, on a free port of 127.0.0.1.

    ``initdb`` refuses to run as root: as root, the cluster belongs to the ``postgres`` user
    (commands run through ``runuser``). Durability is off (fsync, synchronous commit): it is a
    throw-away test database.

    Args:
        database: Database created at start.
        port: Port (a free one by default).
    """

    def __init__(self, database: str = "mlflow", port: int | None = None):
        self.bin_dir = postgres_bin_dir()
        if self.bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries (initdb) not found: run scripts/ci_services.sh "
                               "or apt-get install postgresql")
        self.database = database
        self.port = port or free_port()
        self.user = "postgres"
        self.as_root = os.geteuid() == 0
        self.base: Path | None = None
        self.started = False

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    def start(self) -> PostgresCluster:
        """initdb, start on the port (TCP 127.0.0.1 and a socket in the cluster directory), createdb."""
        # Not under pytest's tmp dirs: they are private to root and postgres must reach its files.
        self.base = Path(tempfile.mkdtemp(prefix="sf_ml_pg_"))
        if self.as_root:
            entry = pwd.getpwnam("postgres")
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data_dir), "-A", "trust", "-U", self.user, "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        options = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50")
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.base / "postgres.log"), "-o", options,
                  "-w", "-t", "60", "start")
        self.started = True
        self.create_database(self.database)
        return self

    def create_database(self, name: str) -> str:
        """Create a database; return its SQLAlchemy URI."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name)
        return self.uri(name)

    def uri(self, database: str | None = None) -> str:
        """SQLAlchemy URI (psycopg2 driver) of a database of the cluster."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database or self.database}"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return (self.base / "postgres.log").read_text(errors="replace")[-chars:]
        except (OSError, TypeError):
            return ""

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete the cluster."""
        if self.started:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop", check=False)
            self.started = False
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# Spark standalone
# --------------------------------------------------------------------------------------------


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


class SparkStandalone:
    """A Spark standalone cluster on 127.0.0.1: one master and one worker, as daemons.

    pyspark's pip package has ``bin/spark-class`` but no ``sbin/start-master.sh``, so the
    daemons are started with ``spark-class org.apache.spark.deploy.master.Master`` and
    ``...worker.Worker``, each in its own process group (the worker's executors included).

    Args:
        work_dir: Logs and the worker's work directory.
        cores: Worker cores.
        memory: Worker memory for executors (``2g``).
    """

    def __init__(self, work_dir: str | Path, cores: int = 2, memory: str = "2g"):
        self.work_dir = Path(work_dir)
        self.cores, self.memory = cores, memory
        self.port, self.ui_port, self.worker_ui_port = free_port(), free_port(), free_port()
        self.processes: list[subprocess.Popen] = []
        self._logs: list = []

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _daemon(self, name: str, *args: str) -> subprocess.Popen:
        env = {
            **os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_DAEMON_MEMORY": "512m", "PYSPARK_PYTHON": sys.executable,
            "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
            "SPARK_WORKER_DIR": str(self.work_dir / "work"),
        }
        log = open(self.work_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        process = subprocess.Popen(
            [str(spark_home() / "bin" / "spark-class"), *args], stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=self.work_dir,
        )
        self.processes.append(process)
        return process

    def status(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=2) as response:
            return json.loads(response.read())

    def start(self, timeout: float = 180.0) -> SparkStandalone:
        """Start master and worker; wait until the worker is registered and alive."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._daemon("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                     "--port", str(self.port), "--webui-port", str(self.ui_port))
        self._daemon("worker", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                     "--cores", str(self.cores), "--memory", self.memory,
                     "--webui-port", str(self.worker_ui_port), "--work-dir", str(self.work_dir / "work"),
                     self.master_url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"spark daemon exited ({process.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(OSError, ValueError):
                if self.status().get("aliveworkers", 0) >= 1:
                    return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"spark standalone cluster not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        parts = []
        for name in ("master", "worker"):
            with contextlib.suppress(OSError):
                parts.append(f"--- {name}\n" + (self.work_dir / f"{name}.log").read_text(errors="replace")[-chars:])
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM the worker (it stops its executors) then the master; SIGKILL what remains."""
        for process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    pass
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
        self.processes.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> SparkStandalone:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
