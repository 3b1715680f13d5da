"""`mlflow models serve` of the registered model answers on loopback with the batch scores."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from expansion_scorer.config import load_serving_config
from expansion_scorer.data.loading import open_world
from expansion_scorer.features.catalogue import for_model
from expansion_scorer.model.loading import load_model
from expansion_scorer.serving.scoring import score_frame
from expansion_scorer.settings import load_feature_set

AS_OF = date(2024, 9, 1)
MODEL = "models:/expansion-propensity/1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, server: subprocess.Popen[bytes], seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise AssertionError(f"the server exited with {server.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError(f"no answer from {url} in {seconds:.0f}s")


def test_served_model_scores_a_feature_frame_like_the_batch_run(
    small_world_dir: Path, champion: Path, tmp_path: Path
) -> None:
    model, version = load_model(MODEL)
    world = open_world(small_world_dir, cutoff=AS_OF)
    features = for_model(load_feature_set(), model.affinity, model.plan_order)  # as the job does
    scored = score_frame(world, AS_OF, model, features, load_serving_config(), version)
    frame = scored.features[model.feature_names].head(40)
    batch = scored.scores.set_index("account_id").loc[scored.features["account_id"].head(40)]
    port = _free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - the server writes it until killed
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", MODEL,
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        env={  # the server execs uvicorn from the same environment
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait(f"http://127.0.0.1:{port}/ping", server, 180, tmp_path / "serve.log")
        body = json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split"))})
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body.encode("utf-8"),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        log.close()

    served = np.array([row["score"] for row in answer["predictions"]], dtype="float64")
    np.testing.assert_allclose(served, batch["score"].to_numpy(dtype="float64"), rtol=0, atol=1e-9)
    assert len(served) == 40


@pytest.fixture(autouse=True)
def _skip_without_loopback() -> None:
    try:
        with socket.create_connection(("127.0.0.1", 9), timeout=0.2):
            pass
    except ConnectionRefusedError:
        return  # loopback works; nothing listens on the discard port
    except OSError as exc:  # pragma: no cover - sandboxes without a network stack
        pytest.skip(f"no loopback networking: {exc}")
