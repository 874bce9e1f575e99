"""A storage that cannot be used gets one message naming it (password masked), before anything is written;
a password in a PostgreSQL URL is used and never written or printed (issue: the end of a sweep survives).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import optuna
import pytest

from svhn_sweep import report
from svhn_sweep.sweep.study import StudyRef
from tests.conftest import run_cli
from tests.postgres import PASSWORD, with_password
from tests.test_failures import assert_one_clear_message

QUICK = ["hydra.sweeper.n_trials=1", "trainer.epochs=1", "sweep.pruner=none", "final.enabled=false"]


def nothing_written(cwd: Path) -> bool:
    return not (cwd / "outputs" / "sweeps").exists()


def test_a_file_that_is_not_sqlite_is_named_and_left_alone(small_data, tmp_path: Path, run_main) -> None:
    database = tmp_path / "outputs" / "optuna.db"
    database.parent.mkdir()
    database.write_bytes(garbage := os.urandom(20_000))
    result = run_main(["--multirun", *small_data, *QUICK])
    assert_one_clear_message(result, f"sqlite:///{database}", "is not a database", "hydra.sweeper.storage")
    assert database.read_bytes() == garbage and nothing_written(tmp_path)


def test_the_report_names_a_storage_that_cannot_be_used_in_one_line(tmp_path: Path, capsys) -> None:
    database = tmp_path / "garbage.db"
    database.write_bytes(os.urandom(20_000))
    StudyRef(f"sqlite:///{database}", "any").save(tmp_path / "sweep")
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(tmp_path / "sweep")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert f"sqlite:///{database} is not a database Optuna can use" in err


def test_a_schema_of_another_optuna_version_is_named_with_the_upgrade_command(
    small_data, tmp_path: Path, run_main
) -> None:
    database = tmp_path / "old.db"
    optuna.storages.RDBStorage(f"sqlite:///{database}")  # today's schema, then stamped as an older Optuna's
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'v3.0.0.a'")
    result = run_main(["--multirun", *small_data, *QUICK, f"hydra.sweeper.storage=sqlite:///{database}"])
    assert_one_clear_message(
        result, "set up by another version of Optuna", f"optuna storage upgrade --storage sqlite:///{database}"
    )
    assert nothing_written(tmp_path)


def test_a_server_that_refuses_the_connection_is_named_without_the_password(
    small_data, tmp_path: Path, run_main, monkeypatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", "")  # the sweep hands the URL's password on in PGPASSWORD: restored after
    url = "postgresql://svhn:hunter2-secret@127.0.0.1:9/optuna"  # port 9 (discard): nothing listens on loopback
    result = run_main(["--multirun", *small_data, *QUICK, f"hydra.sweeper.storage={url}"])
    assert_one_clear_message(result, "postgresql://svhn@127.0.0.1:9/optuna", "refused", "PGPASSWORD")
    assert "hunter2-secret" not in result.stdout + result.stderr and nothing_written(tmp_path)


@pytest.mark.slow
def test_a_wrong_password_is_named_without_printing_it(small_data, postgres_url: str, tmp_path: Path) -> None:
    url = with_password(postgres_url).replace(PASSWORD, "not-the-password")
    result = run_cli(["--multirun", *small_data, *QUICK, f"hydra.sweeper.storage={url}"], cwd=tmp_path)
    assert_one_clear_message(result, "password authentication failed", "postgresql://svhn_pw@127.0.0.1")
    assert "not-the-password" not in result.stdout + result.stderr and nothing_written(tmp_path)


@pytest.mark.slow
def test_a_password_in_the_url_is_used_and_never_written_or_printed(
    small_data, postgres_url: str, tmp_path: Path
) -> None:
    args = ["--multirun", *small_data, "trainer.epochs=1", "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=pw"]
    result = run_cli([*args, f"hydra.sweeper.storage={with_password(postgres_url)}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test accuracy" in result.stdout  # trials and the final step reached the password-protected database
    assert PASSWORD not in result.stdout + result.stderr
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert len(files) > 10 and not [path for path in files if PASSWORD.encode() in path.read_bytes()]
