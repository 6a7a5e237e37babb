"""Unit tests for `privgate.data.validation`: the raw-table gate and the public domains."""

from __future__ import annotations

import gc
import json
import logging
import socket
import weakref
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from privgate.config import load_config
from privgate.data.validation import (
    BETWEEN,
    COLUMNS_MATCH_SET,
    IN_SET,
    ColumnDomain,
    ValidationReport,
    _exception_type,
    load_suite,
    public_domains,
    validate_table,
)
from privgate.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "expectations" / "adult_raw.json"
CANARY = "CANARY-ZZ-9931"
SAFE_OUTCOME_KEYS = {
    "expectation",
    "column",
    "success",
    "element_count",
    "unexpected_count",
    "unexpected_percent",
    "raised",
    "missing_columns",
    "extra_columns",  # a count: the names are the table's own text
}


def _with_identifiers(adult: pd.DataFrame) -> pd.DataFrame:
    """Add fabricated identifier columns shaped like the enriched demo table's."""
    n = len(adult)
    fabricated = {
        "full_name": [f"Person {i}" for i in range(n)],
        "email": [f"person{i}@example.org" for i in range(n)],
        "phone": [f"555-{i % 10_000:04d}" for i in range(n)],
        "ssn": [f"900-{i % 100:02d}-{i % 10_000:04d}" for i in range(n)],
        "street_address": [f"{i} Main Street" for i in range(n)],
        "zip_code": [f"{(i * 7919) % 100_000:05d}" for i in range(n)],
        "date_of_birth": ["1970-01-01"] * n,
        "notes": ["Called about the renewal, nothing else to report."] * n,
    }
    return adult.reset_index(drop=True).assign(
        **{k: pd.Series(v, dtype="str") for k, v in fabricated.items()}
    )


@pytest.fixture(scope="module")
def good_sample() -> pd.DataFrame:
    adult = pd.read_csv(ROOT / "data" / "adult" / "adult.train.csv.gz", nrows=500)
    return _with_identifiers(adult)


@pytest.fixture
def sample(good_sample: pd.DataFrame) -> pd.DataFrame:
    return good_sample.copy()


def _outcome(report: ValidationReport, expectation: str, column: str | None) -> Any:
    matches = [o for o in report.outcomes if o.expectation == expectation and o.column == column]
    assert len(matches) == 1, f"expected one {expectation}({column}) outcome"
    return matches[0]


def _write_suite(path: Path, expectations: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"name": "test_suite", "expectations": expectations}))
    return path


# --------------------------------------------------------------------------- the gate


def test_when_the_table_matches_the_suite_then_validation_passes(
    good_sample: pd.DataFrame,
) -> None:
    # given
    expectation_count = len(json.loads(SUITE.read_text())["expectations"])

    # when
    report = validate_table(good_sample, suite_path=SUITE)

    # then
    assert report.success, report.failed_summary()
    assert report.suite == "adult_raw"
    assert report.evaluated == expectation_count
    assert report.failed == 0
    assert report.failed_summary() == ""


def test_when_a_category_is_out_of_set_then_validation_fails_without_echoing_it(
    sample: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    # given
    sample.loc[[3, 10, 11], "sex"] = CANARY
    caplog.set_level(logging.DEBUG)

    # when
    report = validate_table(sample, suite_path=SUITE)

    # then
    assert not report.success
    outcome = _outcome(report, IN_SET, "sex")
    assert not outcome.success
    assert (outcome.element_count, outcome.unexpected_count) == (500, 3)
    assert outcome.unexpected_percent == pytest.approx(0.6)
    assert f"{IN_SET}(sex): 3 unexpected (0.6%)" in report.failed_summary()
    assert CANARY not in json.dumps(report.to_dict())
    assert CANARY not in report.failed_summary()
    assert CANARY not in repr(report)
    assert CANARY not in caplog.text


def test_when_a_number_is_out_of_range_then_validation_fails_on_that_column(
    sample: pd.DataFrame,
) -> None:
    # given
    sample.loc[0, "age"] = 123

    # when
    report = validate_table(sample, suite_path=SUITE)

    # then
    assert not report.success
    assert report.failed == 1
    assert _outcome(report, BETWEEN, "age").unexpected_count == 1
    assert "123" not in report.failed_summary()


def test_when_an_adult_column_has_nulls_then_validation_fails(sample: pd.DataFrame) -> None:
    # given
    sample.loc[[1, 2], "occupation"] = None

    # when
    report = validate_table(sample, suite_path=SUITE)

    # then
    outcome = _outcome(report, "expect_column_values_to_not_be_null", "occupation")
    assert not report.success
    assert outcome.unexpected_count == 2


def test_when_a_zip_code_is_not_five_digits_then_validation_fails(sample: pd.DataFrame) -> None:
    # given: the leading zero lost, as a numeric read would lose it
    sample.loc[4, "zip_code"] = "2134"

    # when
    report = validate_table(sample, suite_path=SUITE)

    # then
    assert not report.success
    assert _outcome(report, "expect_column_values_to_match_regex", "zip_code").unexpected_count == 1


def test_when_a_column_is_missing_then_validation_fails_and_names_it(
    sample: pd.DataFrame,
) -> None:
    # given
    table = sample.drop(columns=["race"]).rename(columns={"notes": CANARY})

    # when
    report = validate_table(table, suite_path=SUITE)

    # then: the column-set check names what is missing; checks on the column raised
    assert not report.success
    column_set = _outcome(report, COLUMNS_MATCH_SET, None)
    assert set(column_set.missing_columns) == {"race", "notes"}
    in_set = _outcome(report, IN_SET, "race")
    assert not in_set.success
    assert in_set.raised == "MetricResolutionError"
    summary = report.failed_summary()
    assert COLUMNS_MATCH_SET in summary
    assert "race" in summary
    # the table's own extra header is not repeated back
    assert CANARY not in summary
    assert CANARY not in json.dumps(report.to_dict())


def test_when_an_expectation_raises_then_only_its_exception_type_is_reported(
    sample: pd.DataFrame,
) -> None:
    # given: a text cell in a numeric column makes the range check raise
    sample["age"] = sample["age"].astype("str")
    sample.loc[0, "age"] = CANARY

    # when
    report = validate_table(sample, suite_path=SUITE)

    # then
    outcome = _outcome(report, BETWEEN, "age")
    assert not report.success
    assert not outcome.success
    assert outcome.raised == "MetricResolutionError"
    assert f"{BETWEEN}(age): raised MetricResolutionError" in report.failed_summary()
    assert CANARY not in json.dumps(report.to_dict())


@pytest.mark.parametrize(
    ("traceback_text", "expected"),
    [
        (
            'Traceback (most recent call last):\n  File "m.py", line 1, in f\n    g()\n'
            "pkg.errors.MetricResolutionError: column said\nSmith: " + CANARY,
            "MetricResolutionError",
        ),
        (CANARY + ": not a traceback", "Exception"),
        ("", "Exception"),
    ],
)
def test_when_a_traceback_is_reduced_then_only_an_exception_class_name_survives(
    traceback_text: str, expected: str
) -> None:
    # when
    name = _exception_type(traceback_text)

    # then
    assert name == expected


def test_when_a_report_is_serialized_then_it_holds_only_whitelisted_fields(
    sample: pd.DataFrame,
) -> None:
    # given
    sample.loc[0, "workclass"] = CANARY

    # when
    payload = validate_table(sample, suite_path=SUITE).to_dict()

    # then
    assert set(payload) == {"suite", "success", "evaluated", "failed", "outcomes"}
    for outcome in payload["outcomes"]:
        assert set(outcome) == SAFE_OUTCOME_KEYS
    json.dumps(payload)  # plain builtins only


def test_when_validation_ends_then_no_reference_to_the_table_is_kept(
    good_sample: pd.DataFrame,
) -> None:
    # given
    table = good_sample.copy()
    ref = weakref.ref(table)

    # when
    validate_table(table, suite_path=SUITE)
    del table
    gc.collect()

    # then
    assert ref() is None


def test_when_validating_then_nothing_reaches_the_network(
    good_sample: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: any outgoing connection is recorded and refused
    attempts: list[object] = []

    def refuse(_sock: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)

    # when
    report = validate_table(good_sample, suite_path=SUITE)

    # then
    assert report.success
    assert attempts == []


# --------------------------------------------------------------------------- the suite


def test_when_the_suite_file_is_missing_then_a_config_error_names_it(tmp_path: Path) -> None:
    # given
    path = tmp_path / "absent.json"

    # when
    with pytest.raises(ConfigError) as caught:
        load_suite(path)

    # then
    assert str(path) in str(caught.value)
    assert "not found" in str(caught.value)


def test_when_the_suite_is_not_json_then_a_config_error_gives_the_line(tmp_path: Path) -> None:
    # given
    path = tmp_path / "broken.json"
    path.write_text('{\n  "name": "s",\n  "expectations": [,]\n}\n')

    # when
    with pytest.raises(ConfigError) as caught:
        load_suite(path)

    # then
    assert str(path) in str(caught.value)
    assert "line 3" in str(caught.value)


def test_when_an_expectation_type_is_unknown_then_a_config_error_names_it(
    tmp_path: Path,
) -> None:
    # given: GX itself would log and drop it, leaving a suite that checks less
    path = _write_suite(
        tmp_path / "typo.json",
        [{"type": "expect_column_values_to_be_in_sett", "kwargs": {"column": "sex"}}],
    )

    # when
    with pytest.raises(ConfigError) as caught:
        load_suite(path)

    # then
    assert str(path) in str(caught.value)
    assert "expect_column_values_to_be_in_sett" in str(caught.value)


def test_when_expectation_arguments_are_invalid_then_a_config_error_names_the_expectation(
    tmp_path: Path,
) -> None:
    # given: value_set is required
    path = _write_suite(tmp_path / "bad.json", [{"type": IN_SET, "kwargs": {"column": "sex"}}])

    # when
    with pytest.raises(ConfigError) as caught:
        load_suite(path)

    # then
    assert "expectation #1" in str(caught.value)
    assert IN_SET in str(caught.value)


def test_when_the_suite_has_no_expectations_then_it_is_refused(tmp_path: Path) -> None:
    # given: an empty suite would pass any table
    path = _write_suite(tmp_path / "empty.json", [])

    # when / then
    with pytest.raises(ConfigError, match="non-empty list"):
        load_suite(path)


def test_when_the_bundled_suite_is_loaded_then_every_expectation_survives() -> None:
    # given
    declared = len(json.loads(SUITE.read_text())["expectations"])

    # when
    suite = load_suite(SUITE)

    # then
    assert suite.name == "adult_raw"
    assert len(suite.expectations) == declared


# --------------------------------------------------------------------------- public domains


def test_when_domains_are_read_then_every_demo_feature_has_exactly_one() -> None:
    # given
    features = load_config(ROOT / "configs" / "demo.yaml").training.features
    entries = json.loads(SUITE.read_text())["expectations"]

    # when
    domains = public_domains(SUITE)

    # then
    for feature in features:
        declaring = [
            e
            for e in entries
            if e["type"] in (IN_SET, BETWEEN) and e["kwargs"]["column"] == feature
        ]
        assert len(declaring) == 1, feature
        domain = domains[feature]
        if domain.kind == "categorical":
            assert domain.values
            assert (domain.min_value, domain.max_value) == (None, None)
        else:
            assert domain.values is None
            assert domain.min_value is not None
            assert domain.max_value is not None
            assert domain.min_value < domain.max_value


def test_when_domains_are_read_then_they_carry_the_declared_sets_and_ranges() -> None:
    # when
    domains = public_domains(SUITE)

    # then
    assert domains["sex"] == ColumnDomain("categorical", ("Female", "Male"), None, None)
    assert domains["income"].values == ("<=50K", "<=50K.", ">50K", ">50K.")
    assert "?" in (domains["workclass"].values or ())
    assert domains["age"] == ColumnDomain("numeric", None, 17.0, 90.0)
    assert domains["capital_gain"] == ColumnDomain("numeric", None, 0.0, 99_999.0)
    assert domains["hours_per_week"] == ColumnDomain("numeric", None, 1.0, 99.0)
    assert "zip_code" not in domains


def test_when_a_column_declares_two_domains_then_a_config_error_names_it(
    tmp_path: Path,
) -> None:
    # given
    path = _write_suite(
        tmp_path / "twice.json",
        [
            {"type": IN_SET, "kwargs": {"column": "sex", "value_set": ["Female", "Male"]}},
            {"type": BETWEEN, "kwargs": {"column": "sex", "min_value": 0, "max_value": 1}},
        ],
    )

    # when / then
    with pytest.raises(ConfigError, match=r"\(sex\).*already has a domain"):
        public_domains(path)


def test_when_a_range_is_open_then_it_is_not_a_public_domain(tmp_path: Path) -> None:
    # given
    path = _write_suite(
        tmp_path / "open.json",
        [{"type": BETWEEN, "kwargs": {"column": "age", "min_value": 17, "max_value": None}}],
    )

    # when / then
    with pytest.raises(ConfigError, match="min_value and max_value"):
        public_domains(path)


def test_when_a_column_the_suite_does_not_name_appears_then_it_fails_counted_not_named(
    sample: pd.DataFrame,
) -> None:
    sample[f"{CANARY}@example.org"] = 1

    report = validate_table(sample, suite_path=SUITE)

    assert not report.success
    summary = report.failed_summary()
    assert "expect_table_columns_to_match_set: 1 column(s) the suite does not name" in summary
    assert CANARY not in json.dumps(report.to_dict())
