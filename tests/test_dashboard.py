"""optuna-dashboard on a real sweep's storage, started as the README says, read back through its HTTP API."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from svhn_sweep.review.results import open_study
from svhn_sweep.sweep.study import StudyRef
from tests.conftest import Sweep, cli_env, free_port

DASHBOARD = Path(sys.executable).parent / "optuna-dashboard"  # the console script of this environment


@pytest.fixture
def dashboard(sweep: Sweep) -> Iterator[str]:
    """``optuna-dashboard STORAGE --host 127.0.0.1 --port N`` on the shared sweep's storage; its base URL."""
    port = free_port()
    server = subprocess.Popen(
        [str(DASHBOARD), StudyRef.from_sweep_dir(sweep.dir).storage, "--host", "127.0.0.1", "--port", str(port)],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get(url, "/api/meta")
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                assert time.monotonic() < deadline, "optuna-dashboard did not answer within 60 s"
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def get(url: str, path: str) -> Any:
    with urllib.request.urlopen(url + path, timeout=30) as response:
        return json.load(response)


@pytest.mark.slow
def test_the_dashboard_shows_the_trials_their_curves_and_the_objective_name(sweep: Sweep, dashboard: str) -> None:
    study = open_study(sweep.dir)
    (listed,) = [s for s in get(dashboard, "/api/studies")["study_summaries"] if s["study_name"] == study.study_name]
    assert listed["directions"] == ["maximize"]
    detail = get(dashboard, f"/api/studies/{listed['study_id']}")
    assert detail["objective_names"] == ["val_accuracy"]  # not "Objective 0"
    assert detail["has_intermediate_values"] is True
    shown = {trial["number"]: trial for trial in detail["trials"]}
    assert sorted(shown) == [t.number for t in study.trials] == [0, 1, 2, 3]
    for trial in study.trials:
        row = shown[trial.number]
        assert row["state"] == trial.state.name.capitalize()
        assert row["values"] == trial.values  # the val accuracy the sweep recorded
        curve = {point["step"]: point["value"] for point in row["intermediate_values"]}
        assert curve == trial.intermediate_values and sorted(curve) == [1, 2]  # val accuracy per epoch
        assert {p["name"] for p in row["params"]} == set(trial.params)
    assert [t["number"] for t in detail["best_trials"]] == [study.best_trial.number]
