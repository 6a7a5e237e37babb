"""The privacy ledger: lifetime budgets per dataset, charged for every attempt."""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import sys
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from privgate.dp.ledger import (
    LEDGER_FILENAME,
    BudgetExceededError,
    LedgerEntry,
    PrivacyLedger,
)

DATA_A = hashlib.sha256(b"anonymized table A").hexdigest()
DATA_B = hashlib.sha256(b"anonymized table B").hexdigest()
LIFETIME_EPSILON = 5.0
LIFETIME_DELTA = 1e-5
RUN_DELTA = 1e-6
_REFUSED = 3  # exit code of a child whose reservation was refused
_PROCESSES = 8


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PrivacyLedger:
    """Return a ledger at its default place in a fresh PRIVGATE_HOME."""
    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))
    return PrivacyLedger()


def _reserve(
    ledger: PrivacyLedger,
    epsilon: float = 1.0,
    *,
    dataset: str = DATA_A,
    unit: str = "record",
    run_key: str = "run-1",
    delta: float = RUN_DELTA,
    lifetime_epsilon: float = LIFETIME_EPSILON,
) -> LedgerEntry:
    return ledger.reserve(
        dataset_sha256=dataset,
        privacy_unit=unit,
        epsilon=epsilon,
        delta=delta,
        lifetime_epsilon=lifetime_epsilon,
        lifetime_delta=LIFETIME_DELTA,
        run_key=run_key,
    )


def _spent(ledger: PrivacyLedger, dataset: str = DATA_A, unit: str = "record") -> float:
    return ledger.balance(dataset_sha256=dataset, privacy_unit=unit).spent_epsilon


# --------------------------------------------------------------------------- reserve


def test_when_reserving_under_budget_then_it_succeeds_and_the_balance_counts_it(
    ledger: PrivacyLedger, tmp_path: Path
) -> None:
    entry = _reserve(ledger, 2.0)

    balance = ledger.balance(dataset_sha256=DATA_A, privacy_unit="record")
    assert entry.status == "reserved"
    assert (entry.epsilon, entry.delta, entry.run_key) == (2.0, RUN_DELTA, "run-1")
    assert (balance.spent_epsilon, balance.spent_delta, balance.entries) == (2.0, RUN_DELTA, 1)
    assert (tmp_path / LEDGER_FILENAME).is_file()


def test_when_reservations_reach_the_limit_exactly_then_they_are_allowed(
    ledger: PrivacyLedger,
) -> None:
    _reserve(ledger, 3.0)

    _reserve(ledger, 2.0)

    assert _spent(ledger) == LIFETIME_EPSILON


def test_when_a_reservation_would_exceed_lifetime_epsilon_then_it_is_refused_with_the_numbers(
    ledger: PrivacyLedger,
) -> None:
    _reserve(ledger, 4.0)

    with pytest.raises(BudgetExceededError) as refused:
        _reserve(ledger, 2.0, run_key="run-2")

    message = str(refused.value)
    assert "spent epsilon 4.0" in message
    assert "epsilon 2.0" in message
    assert "limit 5.0" in message
    assert "`lifetime_epsilon` in the privacy policy" in message
    assert DATA_A[:12] in message
    assert DATA_A not in message
    assert _spent(ledger) == 4.0  # the refused run was not charged


def test_when_a_reservation_would_exceed_lifetime_delta_then_it_is_refused(
    ledger: PrivacyLedger,
) -> None:
    _reserve(ledger, 1.0, delta=6e-6)

    with pytest.raises(BudgetExceededError, match="`lifetime_delta` in the privacy policy"):
        _reserve(ledger, 1.0, delta=6e-6, run_key="run-2")

    assert ledger.balance(dataset_sha256=DATA_A, privacy_unit="record").entries == 1


def test_when_the_same_run_key_is_retried_then_each_attempt_is_charged(
    ledger: PrivacyLedger,
) -> None:
    first = _reserve(ledger, 2.0, run_key="nightly")

    retry = _reserve(ledger, 2.0, run_key="nightly")

    assert first.entry_id != retry.entry_id
    assert _spent(ledger) == 4.0
    with pytest.raises(BudgetExceededError):
        _reserve(ledger, 2.0, run_key="nightly")


@pytest.mark.parametrize("epsilon", [math.nan, math.inf, -math.inf, 0.0, -1.0])
def test_when_epsilon_is_not_finite_and_positive_then_reserve_raises(
    ledger: PrivacyLedger, epsilon: float
) -> None:
    with pytest.raises(ValueError, match="epsilon"):
        _reserve(ledger, epsilon)

    assert ledger.entries() == []


@pytest.mark.parametrize("lifetime_epsilon", [math.nan, math.inf, 0.0, -5.0])
def test_when_the_lifetime_epsilon_is_invalid_then_reserve_raises(
    ledger: PrivacyLedger, lifetime_epsilon: float
) -> None:
    with pytest.raises(ValueError, match="lifetime_epsilon"):
        _reserve(ledger, 1.0, lifetime_epsilon=lifetime_epsilon)


@pytest.mark.parametrize("delta", [math.nan, math.inf, 0.0, -1e-6, 1.0])
def test_when_delta_is_not_in_the_open_unit_interval_then_reserve_raises(
    ledger: PrivacyLedger, delta: float
) -> None:
    with pytest.raises(ValueError, match="delta"):
        _reserve(ledger, 1.0, delta=delta)


def test_when_the_dataset_hash_is_malformed_then_reserve_raises_without_echoing_it(
    ledger: PrivacyLedger,
) -> None:
    with pytest.raises(ValueError, match="64 characters") as refused:
        _reserve(ledger, 1.0, dataset="data/adult.csv")

    assert "adult" not in str(refused.value)


# --------------------------------------------------------------------------- release


def test_when_a_reservation_is_released_then_it_stops_counting(ledger: PrivacyLedger) -> None:
    kept = _reserve(ledger, 2.0, run_key="run-1")
    dropped = _reserve(ledger, 3.0, run_key="run-2")

    released = ledger.release(dropped.entry_id, "failed validation before the first step")

    balance = ledger.balance(dataset_sha256=DATA_A, privacy_unit="record")
    assert released.status == "released"
    assert "failed validation" in released.note
    assert (balance.spent_epsilon, balance.entries) == (2.0, 1)
    assert [e.entry_id for e in ledger.entries(dataset_sha256=DATA_A)] == [
        kept.entry_id,
        dropped.entry_id,
    ]


def test_when_a_spent_entry_is_released_then_it_raises_and_still_counts(
    ledger: PrivacyLedger,
) -> None:
    entry = _reserve(ledger, 2.0)
    ledger.settle(entry.entry_id, epsilon=1.5, delta=RUN_DELTA)

    with pytest.raises(ValueError, match="spent"):
        ledger.release(entry.entry_id, "changed my mind")

    assert _spent(ledger) == 1.5


def test_when_releasing_without_a_note_then_it_raises(ledger: PrivacyLedger) -> None:
    entry = _reserve(ledger, 2.0)

    with pytest.raises(ValueError, match="note"):
        ledger.release(entry.entry_id, "  ")

    assert _spent(ledger) == 2.0


# --------------------------------------------------------------------------- settle


def test_when_settled_at_or_below_the_reservation_then_the_balance_becomes_the_actual(
    ledger: PrivacyLedger,
) -> None:
    entry = _reserve(ledger, 3.0)

    settled = ledger.settle(entry.entry_id, epsilon=2.25, delta=RUN_DELTA)

    assert settled.status == "spent"
    assert settled.epsilon == 2.25
    assert _spent(ledger) == 2.25


def test_when_settled_above_the_reservation_within_the_limit_then_it_is_recorded(
    ledger: PrivacyLedger,
) -> None:
    entry = _reserve(ledger, 2.0)

    settled = ledger.settle(entry.entry_id, epsilon=2.5, delta=RUN_DELTA)

    assert settled.epsilon == 2.5
    assert _spent(ledger) == 2.5


def test_when_settled_above_the_reservation_past_the_limit_then_it_raises_and_still_records(
    ledger: PrivacyLedger,
) -> None:
    _reserve(ledger, 3.0, run_key="run-1")
    entry = _reserve(ledger, 2.0, run_key="run-2")

    with pytest.raises(BudgetExceededError) as overrun:
        ledger.settle(entry.entry_id, epsilon=2.5, delta=RUN_DELTA)

    message = str(overrun.value)
    assert "spent epsilon 3.0" in message
    assert "epsilon 2.5" in message
    assert "limit 5.0" in message
    assert "`lifetime_epsilon` in the privacy policy" in message
    (recorded,) = [e for e in ledger.entries() if e.entry_id == entry.entry_id]
    assert (recorded.status, recorded.epsilon) == ("spent", 2.5)
    assert _spent(ledger) == 5.5


@pytest.mark.parametrize("epsilon", [math.nan, math.inf, 0.0, -1.0])
def test_when_settled_with_an_invalid_epsilon_then_it_raises_and_the_reservation_stays(
    ledger: PrivacyLedger, epsilon: float
) -> None:
    entry = _reserve(ledger, 2.0)

    with pytest.raises(ValueError, match="epsilon"):
        ledger.settle(entry.entry_id, epsilon=epsilon, delta=RUN_DELTA)

    assert _spent(ledger) == 2.0


def test_when_an_entry_is_settled_twice_then_the_second_settle_raises(
    ledger: PrivacyLedger,
) -> None:
    entry = _reserve(ledger, 2.0)
    ledger.settle(entry.entry_id, epsilon=1.0, delta=RUN_DELTA)

    with pytest.raises(ValueError, match="already settled"):
        ledger.settle(entry.entry_id, epsilon=0.5, delta=RUN_DELTA)

    assert _spent(ledger) == 1.0


def test_when_a_released_entry_is_settled_then_it_counts_again(ledger: PrivacyLedger) -> None:
    entry = _reserve(ledger, 2.0)
    ledger.release(entry.entry_id, "validation failed")

    settled = ledger.settle(entry.entry_id, epsilon=1.5, delta=RUN_DELTA)

    assert settled.status == "spent"
    assert "settled after release" in settled.note
    assert _spent(ledger) == 1.5


def test_when_the_entry_is_unknown_then_settle_and_release_raise(ledger: PrivacyLedger) -> None:
    with pytest.raises(ValueError, match="no ledger entry"):
        ledger.settle("missing", epsilon=1.0, delta=RUN_DELTA)
    with pytest.raises(ValueError, match="no ledger entry"):
        ledger.release("missing", "never reserved")


# --------------------------------------------------------------------------- keys, persistence


def test_when_datasets_or_privacy_units_differ_then_their_balances_are_separate(
    ledger: PrivacyLedger,
) -> None:
    _reserve(ledger, 5.0, dataset=DATA_A, unit="record")

    _reserve(ledger, 4.0, dataset=DATA_B, unit="record")
    _reserve(ledger, 3.0, dataset=DATA_A, unit="user")

    assert _spent(ledger, DATA_A, "record") == 5.0
    assert _spent(ledger, DATA_B, "record") == 4.0
    assert _spent(ledger, DATA_A, "user") == 3.0
    assert len(ledger.entries(dataset_sha256=DATA_A)) == 2
    assert len(ledger.entries()) == 3


def test_when_a_new_instance_opens_the_same_file_then_it_sees_every_entry(
    ledger: PrivacyLedger,
) -> None:
    # The first run crashed after reserving: nothing settled or released it.
    crashed = _reserve(ledger, 4.0)

    reopened = PrivacyLedger(ledger.path)

    assert reopened.entries() == [crashed]
    assert _spent(reopened) == 4.0
    with pytest.raises(BudgetExceededError):
        _reserve(reopened, 2.0, run_key="run-2")


def _reserve_in_child(path: str, start: Barrier) -> None:
    """Reserve 1.0 once the other children are ready; exit 3 when refused."""
    ledger = PrivacyLedger(Path(path))
    start.wait()
    try:
        _reserve(ledger, 1.0, run_key="sweep")
    except BudgetExceededError:
        sys.exit(_REFUSED)


def test_when_processes_reserve_concurrently_then_the_budget_is_never_overspent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: the children inherit this PRIVGATE_HOME, so they share the lock folder.
    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))
    path = tmp_path / LEDGER_FILENAME
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(_PROCESSES, timeout=120)
    children = [
        context.Process(target=_reserve_in_child, args=(str(path), start))
        for _ in range(_PROCESSES)
    ]

    # When: all eight ask for 1.0 of a 5.0 lifetime budget at the same moment.
    for child in children:
        child.start()
    try:
        for child in children:
            child.join(timeout=180)
    finally:
        for child in children:
            if child.is_alive():
                child.kill()

    # Then
    codes = sorted(child.exitcode for child in children)
    assert codes == [0] * 5 + [_REFUSED] * 3
    balance = PrivacyLedger(path).balance(dataset_sha256=DATA_A, privacy_unit="record")
    assert (balance.spent_epsilon, balance.entries) == (5.0, 5)


def test_when_non_private_trainings_are_recorded_then_both_decisions_are_kept(
    ledger: PrivacyLedger,
) -> None:
    ledger.record_non_private(dataset_sha256=DATA_A, allowed=True, purpose="baseline", run_key="r1")
    ledger.record_non_private(dataset_sha256=DATA_A, allowed=False, purpose="dp off", run_key="r2")

    records = ledger.non_private(dataset_sha256=DATA_A)

    assert [(r.decision, r.purpose, r.run_key) for r in records] == [
        ("allowed", "baseline", "r1"),
        ("refused", "dp off", "r2"),
    ]
    assert _spent(ledger) == 0.0  # a record, not a debit
    assert ledger.non_private(dataset_sha256=DATA_B) == []


def test_when_a_version_1_ledger_is_opened_then_it_is_upgraded_in_place(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    PrivacyLedger(path)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE non_private")
        conn.execute("PRAGMA user_version = 1")

    upgraded = PrivacyLedger(path)

    upgraded.record_non_private(dataset_sha256=DATA_A, allowed=True, purpose="b", run_key="r")
    assert len(upgraded.non_private()) == 1
