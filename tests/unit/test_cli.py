"""CLI behaviour that needs no pipeline run: exit codes and messages of usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from privgate.cli import EXIT_ERROR, main


def test_when_arguments_are_wrong_then_the_exit_code_is_1_not_the_gate_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run", "--no-such-flag"])

    assert caught.value.code == EXIT_ERROR
    assert "--no-such-flag" in capsys.readouterr().err


def test_when_demo_rows_is_too_small_then_usage_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["demo-data", "--rows", "1"])

    assert caught.value.code == EXIT_ERROR
    assert ">= 2" in capsys.readouterr().err


def test_when_the_config_is_invalid_then_run_exits_1_with_one_json_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))

    code = main(["run", "--json", "--set", "training.dp.accountant=moments"])

    out = capsys.readouterr()
    assert code == EXIT_ERROR
    assert json.loads(out.out)["promoted"] is False
    assert "training.dp.accountant" in out.err


def test_when_the_registry_is_empty_then_models_list_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")

    code = main(["models", "list", "--json"])

    assert code == 0
    assert json.loads(capsys.readouterr().out) == []


def test_when_a_model_does_not_exist_then_models_show_exits_1_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")

    code = main(["models", "show", "no-such-model"])

    assert code == EXIT_ERROR
    assert "no-such-model" in capsys.readouterr().err


def test_when_a_table_is_scanned_then_json_lists_each_column_with_kind_and_entities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))
    table = tmp_path / "members.csv"
    rows = ["email,phone,amount"] + [
        f"member{i}.canary@example.org,(617) 555-{1000 + i:04d},{12.5 * i:.2f}" for i in range(30)
    ]
    table.write_text("\n".join(rows) + "\n")

    code = main(["scan", str(table), "--json"])

    out = capsys.readouterr()
    report = json.loads(out.out)
    assert code == 0
    assert report["rows"] == 30
    assert report["seconds"] >= 0
    kinds = {c["name"]: (c["kind"], c["entities"]) for c in report["columns"]}
    assert kinds["email"] == ("direct_identifier", {"EMAIL_ADDRESS": 1.0})
    assert kinds["phone"][0] == "direct_identifier"
    assert kinds["phone"][1]["PHONE_NUMBER"] == 1.0
    assert kinds["amount"] == ("clean", {})
    assert "canary" not in out.out + out.err  # fractions only, never the values


def test_when_the_scanned_file_is_missing_then_scan_exits_1_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))

    code = main(["scan", str(tmp_path / "nowhere.csv"), "--json"])

    out = capsys.readouterr()
    assert code == EXIT_ERROR
    assert "nowhere.csv" in json.loads(out.out)["error"]


def test_when_a_table_is_anonymized_then_the_output_holds_no_identifier_and_is_k_anonymous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    from privgate.data.demo_data import write_demo_data

    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))
    raw, _ = write_demo_data(tmp_path / "demo", rows=600)
    out = tmp_path / "anonymized.csv"

    code = main(["anonymize", str(raw), str(out), "--json"])

    printed = capsys.readouterr()
    summary = json.loads(printed.out)
    assert code == 0, printed.err[-2000:]
    assert summary["written"] is True
    assert summary["k_measured"] >= 5
    assert sum(summary["residual_findings"].values()) == 0
    source, result = pd.read_csv(raw, dtype=str), pd.read_csv(out, dtype=str)
    assert len(result) == summary["rows_out"]
    assert {"full_name", "street_address", "date_of_birth"}.isdisjoint(result.columns)
    written = out.read_text()
    for column in ("email", "ssn", "phone"):
        assert not any(value in written for value in source[column].head(50))
    assert not any(value in printed.out for value in source["email"].head(50))


def test_when_the_output_exists_then_anonymize_refuses_and_leaves_it_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))
    existing = tmp_path / "out.csv"
    existing.write_text("keep me\n")

    code = main(["anonymize", str(tmp_path / "in.csv"), str(existing), "--json"])

    assert code == EXIT_ERROR
    assert "already exists" in json.loads(capsys.readouterr().out)["error"]
    assert existing.read_text() == "keep me\n"


@pytest.mark.parametrize("epsilons", ["1,abc", "1,,2"])
def test_when_sweep_epsilons_are_not_numbers_then_usage_fails_naming_the_option(
    epsilons: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["sweep", "--epsilons", epsilons])

    assert exited.value.code == EXIT_ERROR
    assert "--epsilons" in capsys.readouterr().err


def test_when_the_sweep_grid_repeats_a_value_then_it_exits_1_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))

    code = main(["sweep", "--epsilons", "1,1", "--ks", "5", "--json"])

    out = capsys.readouterr()
    assert code == EXIT_ERROR
    assert "sweep grid" in json.loads(out.out)["error"]
    assert "repeated" in json.loads(out.out)["error"]
    assert not (tmp_path / "ledger.sqlite3").exists()


@pytest.mark.parametrize("command", [["run"], ["sweep", "--epsilons", "1"]])
def test_when_the_policy_asks_for_approval_without_a_server_then_the_run_is_refused_first(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PRIVGATE_POLICY", "")  # restored after the test (the CLI sets it)
    policy = Path(__file__).resolve().parents[2] / "configs" / "policy-approval.yaml"

    code = main([*command, "--policy", str(policy)])

    assert code == EXIT_ERROR
    assert "approval.required" in capsys.readouterr().err
    assert not (tmp_path / "ledger.sqlite3").exists()  # nothing was charged
