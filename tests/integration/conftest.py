"""Real processes for the integration tests: a Spark standalone cluster (a master and two
workers on 127.0.0.1), an MLflow tracking server, and spark-submit runs of the packaged jobs.

Every process is started in its own process group and the group is killed at teardown,
also when a test fails or the session is interrupted (Ctrl-C, SIGTERM, or at exit). The test data is small
(``USERS`` users), so reading whole test tables back is bounded.
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from persona.generate import generate
from tests.integration.lake_summary import summarize

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent                 # the jobs' virtualenv (runs pytest)
DIST = ROOT / "dist"                              # make package
AIRFLOW_BIN = ROOT / ".venv-airflow" / "bin"      # make airflow
JARS = sorted((Path(sys.prefix) / "share" / "persona" / "jars").glob("*.jar"))
SPARK_HOME = Path(__import__("pyspark").__file__).parent
LOG4J = ROOT / "lib" / "persona" / "log4j2.properties"
CLUSTER_CONF = DIST / "conf" / "cluster.example.yaml"
USERS = 400
SUBMIT_TIMEOUT = 900
# Wall times of the spark-submit runs and other measurements, shown at the end of the session.
TIMINGS: dict[str, float] = {}
MEASURED: dict[str, str] = {}

# Small settings for the jobs: 2 Horovod ranks = 2 executors x 1 core, 5 segments.
JOB_SETTINGS = ["train.num_proc=2", "train.epochs=8", "train.batch_size=64", "train.hidden=[32,16]",
                "train.latent_dim=6", "segment.k=5", "spark.log_level=ERROR"]
SPARK_CONF = {"spark.executor.memory": "1g", "spark.executor.cores": "1",
              "spark.executor.instances": "2", "spark.cores.max": "2",
              "spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false",
              "spark.executorEnv.TF_CPP_MIN_LOG_LEVEL": "3",
              "spark.executorEnv.PYTHONWARNINGS": "ignore"}


class Processes:
    """Long-running processes of the test session, each in its own process group."""

    def __init__(self):
        self.running: list[subprocess.Popen] = []
        atexit.register(self.stop_all)

    def start(self, cmd: list[str], log: Path, env: dict) -> subprocess.Popen:
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        kill_group(proc)
        self.running = [p for p in self.running if p is not proc]

    def stop_all(self) -> None:
        for proc in reversed(self.running):
            kill_group(proc)
        self.running.clear()


def kill_group(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the process group of ``proc``, SIGKILL what is left after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.time() + grace  # children of the group may outlive its leader
        while time.time() < deadline and group_alive(proc.pid):
            time.sleep(0.5)
        if not group_alive(proc.pid):
            return


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_for(check, what: str, proc: subprocess.Popen, log: Path, timeout: float = 300):
    """Poll ``check()`` until it returns a true value; fail with the log if ``proc`` dies."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what}: process exited with {proc.returncode}\n{tail(log)}")
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"{what}: not ready after {timeout} s\n{tail(log)}")


def get_json(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def job_env() -> dict:
    """Environment of spark-submit and the cluster: loopback only, the jobs' Python."""
    env = dict(os.environ)
    env.update(SPARK_HOME=str(SPARK_HOME), SPARK_LOCAL_IP="127.0.0.1",
               PYSPARK_PYTHON=str(BIN / "python"), PYSPARK_DRIVER_PYTHON=str(BIN / "python"),
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONWARNINGS="ignore", TZ="UTC")
    return env


def require_package() -> None:
    if not (DIST / "persona.zip").exists() or not CLUSTER_CONF.exists():
        pytest.fail("dist/ is missing: run `make package` (make test-integration does)")
    if len(JARS) < 3:
        pytest.fail(f"Delta jars missing in {sys.prefix}/share/persona/jars: run `make env`")


def spark_submit_args(master: str) -> list[str]:
    """spark-submit options as a user gives them on a cluster (README "On a cluster")."""
    args = [str(BIN / "spark-submit"), "--master", master,
            "--jars", ",".join(map(str, JARS)), "--py-files", str(DIST / "persona.zip"),
            "--driver-memory", "2g",
            "--driver-java-options", f"-Dlog4j.configurationFile=file:{LOG4J}",
            "--conf", f"spark.pyspark.python={BIN / 'python'}"]
    for key, value in SPARK_CONF.items():
        args += ["--conf", f"{key}={value}"]
    return args


def lake_settings(work: Path, data: Path, mlflow_uri: str, experiment: str,
                  registry: str = "persona") -> list[str]:
    """``--set`` values pointing conf/cluster.example.yaml at local test folders; models are
    registered as ``<registry>-encoder`` and ``<registry>-kmeans``."""
    settings = [f"lake.root={work / 'lake'}", f"privacy.vault_root={work / 'lake-vault'}",
                f"train.petastorm_cache={work / 'petastorm'}",
                f"mlflow.tracking_uri={mlflow_uri}", f"mlflow.experiment={experiment}",
                "mlflow.artifact_location=", f"registry.encoder={registry}-encoder",
                f"registry.segments={registry}-kmeans"]
    for source in ("events", "users", "content"):
        settings += [f"sources.{source}.path={data / source}", f"sources.{source}.format=csv"]
    return settings + JOB_SETTINGS


def run_logged(cmd: list[str], env: dict, log: Path, timeout: float) -> int | None:
    """Run ``cmd`` in its own process group with its output appended to ``log``; the group is
    killed when it ends or outlives ``timeout``. Returns the exit code, None on a timeout."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=log.parent, start_new_session=True)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        finally:
            kill_group(proc, grace=5)


def submit(master: str, job: str, settings: list[str], log: Path) -> float:
    """spark-submit ``dist/jobs/<job>.py`` on ``conf/cluster.example.yaml``; returns wall time."""
    cmd = [*spark_submit_args(master), str(DIST / "jobs" / f"{job}.py"),
           "--conf", str(CLUSTER_CONF)]
    for item in settings:
        cmd += ["--set", item]
    log.write_text(" ".join(cmd) + "\n\n")
    start = time.time()
    code = run_logged(cmd, job_env(), log, SUBMIT_TIMEOUT)
    seconds = time.time() - start
    if code != 0:
        pytest.fail(f"spark-submit {job} on {master} "
                    f"{'timed out' if code is None else f'exited with {code}'} "
                    f"after {seconds:.0f} s\n{tail(log, 60)}")
    return seconds


def lake_summary(*lakes: Path) -> list[dict]:
    """Every table of each lake, read back without Spark (lake_summary.py)."""
    return [summarize(lake) for lake in lakes]


def pytest_configure(config):
    """A SIGTERM (a CI time limit) unwinds like Ctrl-C, so the fixtures stop what they started."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("integration")


@pytest.fixture(scope="session")
def processes(work):
    """The session's processes; at the end none may be left that runs on its folders."""
    procs = Processes()
    yield procs
    procs.stop_all()
    leftover = subprocess.run(["pgrep", "-a", "-f", str(work)], capture_output=True, text=True)
    assert not leftover.stdout.strip(), f"processes left running:\n{leftover.stdout}"


@pytest.fixture(scope="session")
def data(work) -> Path:
    """Generated raw data with planted segments, shared by every integration test."""
    folder = work / "data"
    generate(str(folder), users=USERS, seed=11, bad_fraction=0.002)
    return folder


@pytest.fixture(scope="session")
def mlflow_server(processes, work):
    """``mlflow server`` on a free loopback port: SQLite backend, served artifact root."""
    port = free_port()
    log = work / "mlflow-server.log"
    cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{work / 'mlflow-server.db'}",
           "--artifacts-destination", str(work / "mlflow-artifacts")]
    proc = processes.start(cmd, log, job_env())
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: urllib.request.urlopen(f"{url}/health", timeout=5).status == 200,
             "mlflow server", proc, log)
    yield url
    processes.stop(proc)


@pytest.fixture(scope="session")
def spark_cluster(processes, work):
    """A Spark standalone master and two 1-core workers on 127.0.0.1, from the installed
    pyspark; yields the master URL. Stopped at the end of the session."""
    require_package()
    port, ui = free_port(), free_port()
    env = job_env()
    master_log = work / "spark-master.log"
    master = processes.start([
        str(SPARK_HOME / "bin" / "spark-class"), "org.apache.spark.deploy.master.Master",
        "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)], master_log, env)
    url = f"spark://127.0.0.1:{port}"
    workers = []
    for i in (1, 2):
        folder = work / f"spark-worker-{i}"
        folder.mkdir()
        workers.append(processes.start([
            str(SPARK_HOME / "bin" / "spark-class"), "org.apache.spark.deploy.worker.Worker",
            url, "--host", "127.0.0.1", "--cores", "1", "--memory", "2g",
            "--webui-port", "0", "--work-dir", str(folder)], work / f"spark-worker-{i}.log", env))
    wait_for(lambda: get_json(f"http://127.0.0.1:{ui}/json/")["aliveworkers"] == 2,
             "spark standalone cluster (2 workers)", master, master_log)
    yield url
    for proc in [*workers, master]:
        processes.stop(proc)


@pytest.fixture(scope="session")
def local_run(work, data, mlflow_server):
    """The whole pipeline with spark-submit in local mode (2 cores), logged to the server."""
    require_package()
    folder = work / "local"
    folder.mkdir()
    settings = lake_settings(folder, data, mlflow_server, "persona-local")
    TIMINGS["spark-submit jobs/run.py --master local[2]"] = submit(
        "local[2]", "run", settings, folder / "spark-submit.log")
    return {"lake": folder / "lake", "settings": settings, "work": folder}


@pytest.fixture(scope="session")
def local_summary(local_run) -> dict:
    """The local run's tables as they came out of the pipeline (before any later job)."""
    return lake_summary(local_run["lake"])[0]


@pytest.fixture(scope="session")
def cluster_run(work, data, mlflow_server, spark_cluster):
    """The same pipeline and data submitted to the standalone cluster."""
    folder = work / "cluster"
    folder.mkdir()
    log = folder / "spark-submit.log"
    settings = lake_settings(folder, data, mlflow_server, "persona-cluster", "persona-cluster")
    TIMINGS[f"spark-submit jobs/run.py --master {spark_cluster}"] = submit(
        spark_cluster, "run", settings, log)
    return {"lake": folder / "lake", "log": log, "work": work, "settings": settings,
            "folder": folder}


@pytest.fixture(scope="session")
def cluster_summary(cluster_run) -> dict:
    """The cluster run's tables as they came out of the pipeline (before any later job)."""
    return lake_summary(cluster_run["lake"])[0]


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section(f"wall times ({USERS} generated users)")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{seconds:8.1f} s  {what}")
    for what, value in MEASURED.items():
        terminalreporter.write_line(f"{what}: {value}")
