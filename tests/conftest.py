"""Shared fixtures: tiny hand-written worlds, small generated worlds, a real SQLite MLflow store,
a local Spark session."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest
import yaml

from expansion_scorer.cli import share_cores_politely
from tests import pgserver
from tests.helpers import (
    TINY,
    new_store,
    postgres_missing,
    score_program,
    spark_missing,
    unavailable,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

share_cores_politely()  # before any test module loads LightGBM
if "PYTEST_XDIST_WORKER" in os.environ:
    # `make test` runs three processes on two cores: one OpenMP thread each (LightGBM's) keeps
    # the cores on the tests' work instead of on threads waiting for each other over tiny data;
    # the benchmarks' smoke runs inherit it.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def tiny_tables() -> dict[str, pd.DataFrame]:
    return {name: frame.copy() for name, frame in TINY.items()}


def made_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], object]
) -> Path:
    """A directory `make` fills once for the whole run, for tests that only read it. Under
    pytest-xdist each worker would make its own: they share one, the first to need it makes
    it and the others wait for it."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        out = tmp_path_factory.mktemp(name)
        make(out)
        return out
    root = tmp_path_factory.getbasetemp().parent  # the run's, above each worker's own
    out, done = root / name, root / f"{name}.done"
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            make(out)
            done.touch()
    return out


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated world shared by the tests that only read it."""
    from expansion_scorer.data.synthetic import generate_world

    return made_once(
        tmp_path_factory,
        "world",
        lambda out: generate_world(out, n_accounts=250, seed=11, months=24),
    )


@pytest.fixture(scope="session")
def small_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smaller world, for the tests whose property holds at any size (100 accounts: about
    1,300 labelled snapshots over 19 months, 272 expansions): the Spark engine's parity (Spark's
    time grows with the daily usage rows its range joins read), point in time, the gate, a
    weekly run scored by the session's champion, a notebook that must run top to bottom. The
    tests that need variety (sentences rendered in bulk) or the champion's own training world
    (its logged drift reference), and the random-split check (it fails on this one), keep
    `world_dir`."""
    from expansion_scorer.data.synthetic import generate_world

    return made_once(
        tmp_path_factory,
        "small-world",
        lambda out: generate_world(out, n_accounts=100, seed=11, months=24),
    )


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, empty SQLite MLflow store, made once a run: MLflow builds a new store's schema
    through some fifty migrations (seconds every time); a copy of this one opens at once."""
    from mlflow.tracking import MlflowClient

    def make(root: Path) -> None:
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(root)  # MLflow's default experiment keeps its artifacts here
            MlflowClient(f"sqlite:///{root / 'mlflow.db'}").search_experiments()

    return made_once(tmp_path_factory, "empty-store", make) / "mlflow.db"


@pytest.fixture
def unopened_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """MLflow pointed at a SQLite store under tmp_path that does not exist yet, and tmp_path as
    the cwd: for the tests that prove a command tracks nothing."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    return tmp_path


@pytest.fixture
def mlflow_store(unopened_store: Path, empty_store: Path) -> Path:
    """A real, empty SQLite-backed MLflow store under tmp_path, and tmp_path as the cwd."""
    new_store(empty_store, unopened_store / "store")
    return unopened_store


@pytest.fixture(scope="session")
def trained_store(
    world_dir: Path, empty_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A store holding one champion trained on `world_dir`, trained once per run."""
    from expansion_scorer.config import load_training_config
    from expansion_scorer.jobs.train import train_job
    from expansion_scorer.settings import load_feature_set

    def train(root: Path) -> None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_URI", new_store(empty_store, root))
            mp.chdir(root)
            cfg = load_training_config().model_copy(update={"test_months": 4})
            train_job(world_dir, cfg, load_feature_set())

    yield made_once(tmp_path_factory, "trained", train)


@pytest.fixture
def champion(trained_store: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trained_store / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    return trained_store


PROGRAM_WEEKS = ["2024-04-01", "2024-05-06", "2024-07-01", "2024-08-05"]
"""Two quarters of the program fixture, two weekly runs each."""


@dataclass(frozen=True)
class Program:
    out: Path
    """The weekly output root, with its history."""
    config: Path
    world: Path
    """The world as it happened, with the program's touches."""
    truth: pd.DataFrame


@pytest.fixture(scope="session")
def program(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Program:
    """Two quarters of the real loop, shared by the tests that read them (a test that writes
    copies the output root first): score with half the candidates held out, CSMs touch what they
    were shown (80% of it), the world advances with those touches."""
    from expansion_scorer.data.synthetic import ProgramWorld
    from expansion_scorer.program.simulation import TRUTH_FILE

    def run(root: Path) -> None:
        raw = yaml.safe_load((Path(__file__).parents[1] / "serving" / "default.yaml").read_text())
        raw["holdout"] = {"fraction": 0.5, "salt": "test"}
        config = root / "serving.yaml"
        config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        world = ProgramWorld(
            root / "world", date(2024, 4, 1), n_accounts=250, seed=11, months=24, strength=3.0
        )  # a strong program, for a small world to show
        score_program(root, world, PROGRAM_WEEKS, config, trained_store, compliance=0.8, seed=3)

    root = made_once(tmp_path_factory, "program", run)
    world = root / "world"
    truth = pd.read_parquet(world / TRUTH_FILE)  # what run_program returned, as it wrote it
    return Program(root / "weekly", root / "serving.yaml", world, truth)


@pytest.fixture(scope="session")
def postgres() -> Iterator[pgserver.Server]:
    """A real PostgreSQL server for the session (`tests/pgserver.py`), stopped at the end.

    Skipped where Debian's `postgresql` package is not installed, except in CI (`.ci/run`
    installs it), where its absence is a failure.
    """

    missing = postgres_missing()
    if missing:
        unavailable(missing)
    server = pgserver.start()
    yield server
    server.stop()


@pytest.fixture
def pg_database(postgres: pgserver.Server, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session's server, owned by the test role: its name."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    postgres.psql(
        f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name} OWNER {pgserver.USER};",
        database="postgres",
    )
    return name


SPARK_FILES = {"tests/features/test_spark.py", "tests/serving/test_spark.py"}
"""The files whose tests drive the Spark engine: `spark` below starts one session for them all."""
LONG_UNITS = ("spark", "tests/test_bench.py::", "tests/training/test_notebook.py")
"""The units of work that each take a minute or more of one process but hold one or two tests:
they start first, so that the many short files fill the end of the run instead of one process
finishing a long unit alone while the others wait."""


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under `--dist loadfile` (`make test`), the Spark files go to one process as one unit of
    work, so one session (a JVM, its start and its warm-up) serves them all; each benchmark's
    smoke run is a unit of its own (they share nothing, and one process would run them all); the
    long units go out first; and a process is given its next unit only when it is on its last
    test, so none holds a unit queued while another has nothing to do."""
    if config.getoption("dist", None) != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class LongestFirst(LoadFileScheduling):
        def __init__(self, config: pytest.Config, log: Any) -> None:
            super().__init__(config, log)
            self.long_first = False

        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            if scope == "tests/test_bench.py":
                return nodeid
            return "spark" if scope in SPARK_FILES else scope

        def _assign_work_unit(self, node: Any) -> None:
            if not self.long_first:  # once, before the first unit goes out
                queue = self.workqueue.items()
                units = sorted(queue, key=lambda unit: not unit[0].startswith(LONG_UNITS))
                self.workqueue.clear()
                self.workqueue.update(units)  # a stable sort: the rest keep xdist's order
                self.long_first = True
            super()._assign_work_unit(node)

        def _reschedule(self, node: Any) -> None:
            # xdist sends more once a process has two tests or fewer left; a process holds its
            # last test until more comes (it needs the next to know which fixtures end), so one
            # left is the least that keeps it running
            busy = self._pending_of(self.assigned_work[node]) > 1
            if busy and self.workqueue and not node.shutting_down:
                return
            super()._reschedule(node)

    return LongestFirst(config, log)


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One local session on two cores for every Spark test the process runs; CI must have Java
    and pyspark."""
    missing = spark_missing()
    if missing:
        unavailable(f"the Spark engine cannot be tested: {missing}")
    from pyspark.sql import SparkSession

    python = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the UDF's workers need this venv
    session = (
        SparkSession.builder.master("local[2]")
        .appName("expansion-scorer-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "1")  # small worlds: one task a stage
        # no re-planning between stages: on tiny frames it is all cost (a tenth of the CPU)
        .config("spark.sql.adaptive.enabled", "false")
        # a JVM that lives minutes: C1's quick compiles only and one GC thread; a third less CPU
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    # Stopping a session leaves its JVM running (1.5 GB resident): end the one this started.
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is not None:
        gateway.shutdown()
        proc = getattr(gateway, "proc", None)
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        SparkContext._gateway = None
        SparkContext._jvm = None
    if python is None:
        del os.environ["PYSPARK_PYTHON"]
    else:
        os.environ["PYSPARK_PYTHON"] = python
