"""A persistent privacy ledger: every DP training attempt on a dataset is charged.

A model's epsilon says what one run spent. The people in a dataset are exposed by every
run that ever touched it: first attempts, retries, resumed runs, sweeps. The ledger keeps
one lifetime budget per (dataset content hash, privacy unit) and charges each attempt:

1. `reserve` before training debits the planned (epsilon, delta), checked atomically
   against the lifetime limit. A run that crashes keeps its debit: nobody can tell how
   far it got, so it is assumed to have spent everything (fail closed).
2. `settle` after training replaces the reservation by the accountant's actual spend.
3. `release` cancels a reservation, only when training provably never started.

Totals use basic sequential composition: k runs that are (epsilon_i, delta_i)-DP are
together (sum epsilon_i, sum delta_i)-DP, even when each run was chosen after seeing
the previous ones. Tighter bounds exist (advanced composition, one RDP/PRV accountant
over all runs), so summing can only over-count: the budget runs out early, never late.

Storage is `$PRIVGATE_HOME/ledger.sqlite3`. Writers are serialized across processes by
`file_lock("ledger")` and an immediate SQLite transaction, so two runs cannot both take
the last of a budget. Like the lock, this covers one host: SQLite must not live on a
network file system shared by several machines.
"""

from __future__ import annotations

import contextlib
import math
import re
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, cast

from privgate.errors import BudgetExceededError, PrivgateError
from privgate.home import file_lock, privgate_home

LEDGER_FILENAME = "ledger.sqlite3"
LIFETIME_EPSILON_SETTING = "lifetime_epsilon"
LIFETIME_DELTA_SETTING = "lifetime_delta"

Status = Literal["reserved", "spent", "released"]

_LOCK_NAME = "ledger"
# Version 2 added `non_private` (additive: a version-1 file is upgraded in place).
_SCHEMA_VERSION = 2
_READABLE_VERSIONS = (0, 1, 2)
_HASH_PREFIX = 12
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Writers already queue on the file lock; SQLite itself only waits for a WAL checkpoint
# or a reader, and waiting beats failing a run that has done nothing wrong.
_BUSY_TIMEOUT_S = 60.0

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS entries (
        entry_id TEXT PRIMARY KEY,
        dataset_sha256 TEXT NOT NULL,
        privacy_unit TEXT NOT NULL,
        epsilon REAL NOT NULL CHECK (epsilon > 0),
        delta REAL NOT NULL CHECK (delta > 0),
        reserved_epsilon REAL NOT NULL,
        reserved_delta REAL NOT NULL,
        lifetime_epsilon REAL NOT NULL,
        lifetime_delta REAL NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('reserved', 'spent', 'released')),
        run_key TEXT NOT NULL,
        created_utc TEXT NOT NULL,
        updated_utc TEXT NOT NULL,
        note TEXT NOT NULL
    ) STRICT
    """,
    "CREATE INDEX IF NOT EXISTS entries_by_budget ON entries (dataset_sha256, privacy_unit)",
    # Training without DP spends no epsilon anyone can sum, so it is not a debit; but a
    # model fitted to the people without noise is a fact about the dataset, recorded
    # whether the policy allowed it or refused it.
    """
    CREATE TABLE IF NOT EXISTS non_private (
        record_id TEXT PRIMARY KEY,
        dataset_sha256 TEXT NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('allowed', 'refused')),
        purpose TEXT NOT NULL,
        run_key TEXT NOT NULL,
        created_utc TEXT NOT NULL
    ) STRICT
    """,
)


@dataclass(frozen=True)
class LedgerEntry:
    """One training attempt's charge against a dataset's lifetime budget."""

    entry_id: str
    dataset_sha256: str
    privacy_unit: str
    epsilon: float
    delta: float
    status: Status
    run_key: str
    created_utc: str
    note: str


@dataclass(frozen=True)
class NonPrivateRecord:
    """One non-private training on a dataset, allowed or refused by the policy."""

    dataset_sha256: str
    decision: Literal["allowed", "refused"]
    purpose: str
    run_key: str
    created_utc: str


@dataclass(frozen=True)
class Balance:
    """What a dataset has spent: reserved and spent entries; released ones do not count."""

    dataset_sha256: str
    privacy_unit: str
    spent_epsilon: float
    spent_delta: float
    entries: int  # entries that count (reserved or spent)


class PrivacyLedger:
    """A lifetime (epsilon, delta) budget per dataset and privacy unit, kept in SQLite.

    Every attempt is a new entry, also a retry with the same `run_key`: a retry trains
    on the same people again and spends their privacy again. The `run_key` only ties
    attempts together for reading the ledger; it never deduplicates a charge.
    """

    def __init__(self, path: Path | None = None) -> None:
        """Open the ledger, creating the file and its table on first use.

        Args:
            path: The SQLite file; defaults to `$PRIVGATE_HOME/ledger.sqlite3`.

        Raises:
            PrivgateError: when the file was written by a newer ledger schema.
        """
        self.path = path if path is not None else privgate_home() / LEDGER_FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(_LOCK_NAME), contextlib.closing(self._connect()) as conn:
            # WAL lets `balance` and `entries` read while a reservation is written.
            conn.execute("PRAGMA journal_mode=WAL")
        with self._transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in _READABLE_VERSIONS:
                raise PrivgateError(
                    f"privacy ledger {self.path} has schema version {version}, this privgate "
                    f"reads version {_SCHEMA_VERSION}; upgrade privgate rather than "
                    "editing the ledger"
                )
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def reserve(
        self,
        *,
        dataset_sha256: str,
        privacy_unit: str,
        epsilon: float,
        delta: float,
        lifetime_epsilon: float,
        lifetime_delta: float,
        run_key: str,
        note: str = "",
    ) -> LedgerEntry:
        """Debit a planned training run before it touches the data.

        The check and the debit are one transaction: concurrent runs on the same dataset
        see each other's reservations. The debit stays unless `settle` or `release`
        changes it, so a crashed run remains charged in full. Limits are compared with
        basic composition (plain sums, see the module docstring) and no float tolerance.

        Args:
            dataset_sha256: Content hash (64 hex characters) of the anonymized training data.
            privacy_unit: What one DP "neighbour" differs by, e.g. "record".
            epsilon: Epsilon this run may spend (the accountant's target).
            delta: Delta this run may spend.
            lifetime_epsilon: Largest total epsilon ever to be spent on this dataset.
            lifetime_delta: Largest total delta ever to be spent on this dataset.
            run_key: Identifies the run; a retry reuses it and is charged again.
            note: Free text kept with the entry (no data values).

        Returns:
            The new entry, status "reserved".

        Raises:
            ValueError: when epsilon or delta (or a limit) is NaN, infinite, zero or
                negative, a delta is not below 1, or a key is malformed.
            BudgetExceededError: when the reservation would take the dataset's spent
                epsilon or delta past its lifetime limit; nothing is recorded then.
        """
        _check_key(dataset_sha256, privacy_unit)
        if not run_key.strip():
            raise ValueError("run_key must not be empty")
        epsilon = _positive_finite("epsilon", epsilon)
        delta = _delta("delta", delta)
        lifetime_epsilon = _positive_finite("lifetime_epsilon", lifetime_epsilon)
        lifetime_delta = _delta("lifetime_delta", lifetime_delta)
        entry_id = uuid.uuid4().hex
        now = _utc_now()
        with self._transaction() as conn:
            counted = _counted(conn, dataset_sha256=dataset_sha256, privacy_unit=privacy_unit)
            _check_budget(
                counted,
                epsilon=epsilon,
                delta=delta,
                lifetime_epsilon=lifetime_epsilon,
                lifetime_delta=lifetime_delta,
                dataset_sha256=dataset_sha256,
                privacy_unit=privacy_unit,
                action="reserving",
            )
            conn.execute(
                "INSERT INTO entries (entry_id, dataset_sha256, privacy_unit, epsilon, delta, "
                "reserved_epsilon, reserved_delta, lifetime_epsilon, lifetime_delta, status, "
                "run_key, created_utc, updated_utc, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'reserved', ?, ?, ?, ?)",
                (
                    entry_id,
                    dataset_sha256,
                    privacy_unit,
                    epsilon,
                    delta,
                    epsilon,
                    delta,
                    lifetime_epsilon,
                    lifetime_delta,
                    run_key,
                    now,
                    now,
                    note,
                ),
            )
            return _entry(_fetch(conn, entry_id, self.path))

    def settle(self, entry_id: str, *, epsilon: float, delta: float) -> LedgerEntry:
        """Replace a reservation by what the accountant reports was actually spent.

        Spending at most the reservation needs no check: it was already debited. Spending
        more (or settling an entry that had been released, so training did run after all)
        is checked again against the lifetime limits stored at reservation. The actual
        spend is recorded either way, because it happened; only then is the overrun
        raised. Invalid values leave the full reservation in place.

        Args:
            entry_id: The reservation's id.
            epsilon: The accountant's epsilon for the training that ran.
            delta: The delta it holds at.

        Returns:
            The entry, status "spent".

        Raises:
            ValueError: when the entry is unknown or already settled, or epsilon or delta
                is NaN, infinite, zero, negative (or delta not below 1).
            BudgetExceededError: when the recorded spend takes the dataset past a
                lifetime limit; the spend is recorded nonetheless.
        """
        epsilon = _positive_finite("epsilon", epsilon)
        delta = _delta("delta", delta)
        overrun: BudgetExceededError | None = None
        with self._transaction() as conn:
            row = _fetch(conn, entry_id, self.path)
            if row["status"] == "spent":
                raise ValueError(
                    f"ledger entry {entry_id} in {self.path} is already settled; a second "
                    "training run needs its own reservation"
                )
            was_reserved = row["status"] == "reserved"
            charged_epsilon = row["epsilon"] if was_reserved else 0.0
            charged_delta = row["delta"] if was_reserved else 0.0
            if epsilon > charged_epsilon or delta > charged_delta:
                others = _counted(
                    conn,
                    dataset_sha256=row["dataset_sha256"],
                    privacy_unit=row["privacy_unit"],
                    exclude=entry_id,
                )
                try:
                    _check_budget(
                        others,
                        epsilon=epsilon,
                        delta=delta,
                        lifetime_epsilon=row["lifetime_epsilon"],
                        lifetime_delta=row["lifetime_delta"],
                        dataset_sha256=row["dataset_sha256"],
                        privacy_unit=row["privacy_unit"],
                        action=f"settling entry {entry_id} (recorded anyway) with",
                    )
                except BudgetExceededError as exc:
                    overrun = exc
            note = row["note"] if was_reserved else _append(row["note"], "settled after release")
            conn.execute(
                "UPDATE entries SET epsilon = ?, delta = ?, status = 'spent', updated_utc = ?, "
                "note = ? WHERE entry_id = ?",
                (epsilon, delta, _utc_now(), note, entry_id),
            )
            settled = _entry(_fetch(conn, entry_id, self.path))
        # Raised after the commit: the overrun is a fact the ledger must keep.
        if overrun is not None:
            raise overrun
        return settled

    def release(self, entry_id: str, note: str) -> LedgerEntry:
        """Cancel a reservation whose training provably never started.

        Only for a run stopped before its first step (e.g. failed validation). A run
        that may have taken a step must be settled or left reserved instead.

        Args:
            entry_id: The reservation's id.
            note: Why training never started; kept with the entry.

        Returns:
            The entry, status "released"; it no longer counts.

        Raises:
            ValueError: when the note is empty, the entry is unknown, or it is spent.
        """
        if not note.strip():
            raise ValueError("release needs a note saying why training never started")
        with self._transaction() as conn:
            row = _fetch(conn, entry_id, self.path)
            if row["status"] != "reserved":
                raise ValueError(
                    f"ledger entry {entry_id} in {self.path} is {row['status']}, not "
                    "reserved; only a reservation whose training never started can be "
                    "released"
                )
            conn.execute(
                "UPDATE entries SET status = 'released', updated_utc = ?, note = ? "
                "WHERE entry_id = ?",
                (_utc_now(), _append(row["note"], f"released: {note}"), entry_id),
            )
            return _entry(_fetch(conn, entry_id, self.path))

    def balance(self, *, dataset_sha256: str, privacy_unit: str) -> Balance:
        """Return what a dataset has spent so far (reserved and spent entries)."""
        _check_key(dataset_sha256, privacy_unit)
        with contextlib.closing(self._connect()) as conn:
            counted = _counted(conn, dataset_sha256=dataset_sha256, privacy_unit=privacy_unit)
        return Balance(
            dataset_sha256=dataset_sha256,
            privacy_unit=privacy_unit,
            spent_epsilon=math.fsum(eps for eps, _ in counted),
            spent_delta=math.fsum(dlt for _, dlt in counted),
            entries=len(counted),
        )

    def entries(self, *, dataset_sha256: str | None = None) -> list[LedgerEntry]:
        """Return every entry, released ones included, oldest first."""
        query = "SELECT * FROM entries"
        params: tuple[str, ...] = ()
        if dataset_sha256 is not None:
            query += " WHERE dataset_sha256 = ?"
            params = (dataset_sha256,)
        with contextlib.closing(self._connect()) as conn:
            rows = conn.execute(query + " ORDER BY rowid", params).fetchall()
        return [_entry(row) for row in rows]

    def record_non_private(
        self, *, dataset_sha256: str, allowed: bool, purpose: str, run_key: str
    ) -> NonPrivateRecord:
        """Record a non-private training on a dataset, before it runs (or is refused).

        Args:
            dataset_sha256: Content hash of the raw training data, as for `reserve`.
            allowed: The policy's decision (`allow_non_private`).
            purpose: Why it was asked for, e.g. "baseline" (no data values).
            run_key: The run asking.
        """
        _check_key(dataset_sha256, "record")
        if not purpose.strip() or not run_key.strip():
            raise ValueError("a non-private record needs a purpose and a run_key")
        record = NonPrivateRecord(
            dataset_sha256, "allowed" if allowed else "refused", purpose, run_key, _utc_now()
        )
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO non_private (record_id, dataset_sha256, decision, purpose, "
                "run_key, created_utc) VALUES (?, ?, ?, ?, ?, ?)",
                (uuid.uuid4().hex, *asdict(record).values()),
            )
        return record

    def non_private(self, *, dataset_sha256: str | None = None) -> list[NonPrivateRecord]:
        """Return the non-private trainings recorded (of one dataset, or all), oldest first."""
        query = "SELECT dataset_sha256, decision, purpose, run_key, created_utc FROM non_private"
        args: tuple[str, ...] = ()
        if dataset_sha256 is not None:
            query, args = query + " WHERE dataset_sha256 = ?", (dataset_sha256,)
        with contextlib.closing(self._connect()) as conn:
            rows = conn.execute(query + " ORDER BY created_utc, rowid", args).fetchall()
        return [NonPrivateRecord(*tuple(row)) for row in rows]

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun explicitly, never implicitly.
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        conn.row_factory = sqlite3.Row
        # A debit lost to a power cut would let the same budget be spent twice.
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the ledger lock and a write transaction; commit unless an error escapes."""
        with file_lock(_LOCK_NAME), contextlib.closing(self._connect()) as conn:
            # IMMEDIATE takes the write lock before the budget is read, so no other
            # writer can slip in between the check and the debit.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


def _check_budget(
    counted: Sequence[tuple[float, float]],
    *,
    epsilon: float,
    delta: float,
    lifetime_epsilon: float,
    lifetime_delta: float,
    dataset_sha256: str,
    privacy_unit: str,
    action: str,
) -> None:
    """Raise BudgetExceededError when `counted` plus this charge passes a limit."""
    for name, spent, requested, limit, setting in (
        ("epsilon", [e for e, _ in counted], epsilon, lifetime_epsilon, LIFETIME_EPSILON_SETTING),
        ("delta", [d for _, d in counted], delta, lifetime_delta, LIFETIME_DELTA_SETTING),
    ):
        target = f"training.dp.target_{name}"
        # fsum: the total must not depend on the order entries happen to be read in.
        total = math.fsum([*spent, requested])
        if total > limit:
            raise BudgetExceededError(
                f"privacy budget exhausted for dataset {dataset_sha256[:_HASH_PREFIX]} "
                f"(privacy unit {privacy_unit!r}): {action} {name} {requested!r} on top of "
                f"spent {name} {math.fsum(spent)!r} makes {total!r}, over the lifetime limit "
                f"{limit!r} set by `{setting}` in the privacy policy. Every attempt on this data "
                f"is charged, retries and sweeps included; train on new data, lower "
                f"`{target}`, or have the policy's `{setting}` reviewed."
            )


def _counted(
    conn: sqlite3.Connection,
    *,
    dataset_sha256: str,
    privacy_unit: str,
    exclude: str | None = None,
) -> list[tuple[float, float]]:
    """Return (epsilon, delta) of the entries that count against this budget."""
    rows = conn.execute(
        "SELECT entry_id, epsilon, delta FROM entries WHERE dataset_sha256 = ? "
        "AND privacy_unit = ? AND status IN ('reserved', 'spent') ORDER BY rowid",
        (dataset_sha256, privacy_unit),
    ).fetchall()
    return [(row["epsilon"], row["delta"]) for row in rows if row["entry_id"] != exclude]


def _fetch(conn: sqlite3.Connection, entry_id: str, path: Path) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM entries WHERE entry_id = ?", (entry_id,)).fetchone()
    if row is None:
        raise ValueError(f"no ledger entry {entry_id!r} in {path}")
    return cast(sqlite3.Row, row)


def _entry(row: sqlite3.Row) -> LedgerEntry:
    return LedgerEntry(
        entry_id=row["entry_id"],
        dataset_sha256=row["dataset_sha256"],
        privacy_unit=row["privacy_unit"],
        epsilon=row["epsilon"],
        delta=row["delta"],
        status=cast(Status, row["status"]),
        run_key=row["run_key"],
        created_utc=row["created_utc"],
        note=row["note"],
    )


def _check_key(dataset_sha256: str, privacy_unit: str) -> None:
    # A malformed hash (a path, a truncated prefix) would open a fresh, full budget.
    if not _SHA256_HEX.fullmatch(dataset_sha256):
        raise ValueError(
            "dataset_sha256 must be a lowercase hex SHA-256 (64 characters), got "
            f"{len(dataset_sha256)} characters"
        )
    if not privacy_unit.strip():
        raise ValueError("privacy_unit must not be empty (e.g. 'record')")


def _positive_finite(name: str, value: float) -> float:
    # bool is an int: `True` must not pass for an epsilon of 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return value


def _delta(name: str, value: float) -> float:
    value = _positive_finite(name, value)
    if value >= 1.0:
        raise ValueError(f"{name} must be < 1 (a delta of 1 promises nothing), got {value!r}")
    return value


def _append(note: str, addition: str) -> str:
    return f"{note}; {addition}" if note else addition


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
