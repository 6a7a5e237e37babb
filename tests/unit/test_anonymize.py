"""Column treatments, keyed pseudonyms and the anonymization plan."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from privgate.config import AnonymizationConfig, PiiConfig
from privgate.errors import ConfigError
from privgate.pii.anonymize import (
    anonymize_table,
    is_token_or_mask,
    load_pseudonym_key,
    mask,
    plan_treatments,
    pseudonymize,
)
from privgate.pii.engine import ColumnFinding, PiiEngine, ScanReport
from privgate.pii.kanon import measure_k
from tests.conftest import ENTITIES

KEY = b"k" * 32


def test_when_the_key_is_the_same_then_the_same_person_gets_the_same_token() -> None:
    ssns = pd.Series(["123-45-6789", "123 45 6789", "987-65-4321"])

    first = pseudonymize(ssns, key=KEY, entity="US_SSN")
    again = pseudonymize(ssns, key=KEY, entity="US_SSN")

    assert first.tolist() == again.tolist()
    assert first.iloc[0] == first.iloc[1]  # formatting does not split a person
    assert first.iloc[0] != first.iloc[2]


def test_when_the_key_differs_then_tokens_differ_and_plain_hashes_do_not_match() -> None:
    value = pd.Series(["123-45-6789"])

    token = pseudonymize(value, key=KEY, entity="US_SSN").iloc[0]
    other = pseudonymize(value, key=b"x" * 32, entity="US_SSN").iloc[0]

    assert token != other
    # Without the key, enumerating SSNs and hashing them finds nothing.
    assert hashlib.sha256(b"123456789").hexdigest()[:20] not in token
    assert is_token_or_mask(pd.Series([token, other]))


def test_when_masking_then_letters_and_digits_go_and_separators_stay() -> None:
    masked = mask(pd.Series(["(617) 555-0123", None]))

    assert masked.iloc[0] == "(***) ***-****"
    assert pd.isna(masked.iloc[1])
    assert is_token_or_mask(masked)
    assert not is_token_or_mask(pd.Series(["tok_123", "617-555-0123"]))


def test_when_no_key_is_configured_then_a_0600_key_file_is_created_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))
    monkeypatch.delenv("PRIVGATE_TEST_KEY", raising=False)

    first = load_pseudonym_key("PRIVGATE_TEST_KEY")
    second = load_pseudonym_key("PRIVGATE_TEST_KEY")

    key_file = tmp_path / "keys" / "pseudonym.key"
    assert first == second
    assert len(first) == 32
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_when_the_key_variable_is_set_then_it_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVGATE_TEST_KEY", "a-long-enough-secret-value")

    assert load_pseudonym_key("PRIVGATE_TEST_KEY") == b"a-long-enough-secret-value"


def test_when_the_key_variable_is_too_short_then_it_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRIVGATE_TEST_KEY", "short")

    with pytest.raises(ConfigError, match="PRIVGATE_TEST_KEY"):
        load_pseudonym_key("PRIVGATE_TEST_KEY")


def _scan(**kinds: tuple[str, str | None]) -> ScanReport:
    return ScanReport(
        rows=10,
        seconds=0.0,
        columns=tuple(ColumnFinding(n, k, {}, 10, e) for n, (k, e) in kinds.items()),  # type: ignore[arg-type]
    )


def test_when_planning_then_declared_beats_quasi_identifier_beats_target_beats_scan() -> None:
    scan = _scan(
        ssn=("direct_identifier", "US_SSN"),
        email=("direct_identifier", "EMAIL_ADDRESS"),
        mystery=("direct_identifier", "IBAN_CODE"),
        age=("quasi_identifier", None),
        income=("clean", None),
        notes=("free_text", "PERSON"),
        dob=("quasi_identifier", "DATE_TIME"),
        amount=("clean", None),
    )
    config = AnonymizationConfig(
        columns={"ssn": "drop"}, quasi_identifiers={"age": {"kind": "interval", "widths": [10]}}
    )

    plan = plan_treatments(
        [c.name for c in scan.columns],
        scan=scan,
        anonymization=config,
        pii=PiiConfig(),
        target="income",
    )

    actions = {t.column: (t.action, t.source) for t in plan}
    assert actions == {
        "ssn": ("drop", "declared"),
        "email": ("pseudonymize", "scan"),
        "mystery": ("drop", "scan"),
        "age": ("generalize", "quasi_identifier"),
        "income": ("keep", "target"),
        "notes": ("redact", "scan"),
        "dob": ("drop", "scan"),
        "amount": ("keep", "scan"),
    }


def test_when_a_table_is_anonymized_then_identifiers_are_gone_and_k_holds(
    pii_engine: PiiEngine,
) -> None:
    frame = pd.DataFrame(
        {
            "name": [f"Person {i}" for i in range(40)],
            "email": [f"p{i}@example.com" for i in range(40)],
            "age": [20 + i for i in range(40)],
            "notes": ["Contact p7@example.com about the claim, no rush at all."] * 40,
            "income": ["<=50K", ">50K"] * 20,
        }
    )
    scan = _scan(
        name=("direct_identifier", "PERSON"),
        email=("direct_identifier", "EMAIL_ADDRESS"),
        age=("quasi_identifier", None),
        notes=("free_text", "EMAIL_ADDRESS"),
        income=("clean", None),
    )
    config = AnonymizationConfig(
        k=5, quasi_identifiers={"age": {"kind": "interval", "widths": [5, 10]}}
    )
    plan = plan_treatments(
        list(frame.columns), scan=scan, anonymization=config, pii=PiiConfig(), target="income"
    )

    out, report = anonymize_table(
        frame, plan=plan, anonymization=config, engine=pii_engine, redact_entities=ENTITIES, key=KEY
    )

    assert "name" not in out.columns
    assert out["email"].str.startswith("tok_").all()
    assert (out["notes"] == "Contact <EMAIL_ADDRESS> about the claim, no rush at all.").all()
    assert measure_k(out, ["age"]) >= 5
    assert report.kanon.k_achieved >= 5
    assert report.rows_out == len(out)


def test_when_the_key_file_is_readable_by_others_then_it_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))
    monkeypatch.delenv("PRIVGATE_TEST_KEY", raising=False)
    load_pseudonym_key("PRIVGATE_TEST_KEY")
    (tmp_path / "keys" / "pseudonym.key").chmod(0o644)

    with pytest.raises(ConfigError, match="chmod 600"):
        load_pseudonym_key("PRIVGATE_TEST_KEY")


def test_when_two_first_runs_race_then_both_get_the_same_complete_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))
    monkeypatch.delenv("PRIVGATE_TEST_KEY", raising=False)

    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = list(pool.map(lambda _: load_pseudonym_key("PRIVGATE_TEST_KEY"), range(16)))

    assert len(set(keys)) == 1
    assert len(keys[0]) == 32
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["pseudonym.key"]


@pytest.mark.parametrize("key", [b"k" * 16, bytes(range(64)), b"long key " * 20])
def test_when_a_value_is_pseudonymized_then_the_mac_is_hmac_sha256(key: bytes) -> None:
    import hmac

    from privgate.pii.anonymize import HmacSha256

    mac = HmacSha256(key)
    for message in (b"", b"123-45-6789", "ｊａｎｅ@example.org".encode()):
        assert mac.hexdigest(message) == hmac.digest(key, message, "sha256").hex()


@pytest.mark.parametrize("entity", ["US_SSN", "EMAIL_ADDRESS", None])
def test_when_values_are_normalized_together_then_each_equals_its_own_normalization(
    entity: str | None,
) -> None:
    from privgate.pii.anonymize import _normalize, _normalize_all

    values = pd.Series(
        [
            " 123-45-6789 ",
            "１２３ ４５ ６７８９",
            "123\u200b45\u200b6789",
            "Jane.Doe+rx@Example.org",
            "ｊａｎｅ＠example.org",
            "STRASSE",
            "Straße",
            "---",
            "a_b",
            "Ⅻ-٣٤",
        ]
    )

    together = _normalize_all(values, entity).tolist()

    assert together == [_normalize(v, entity) for v in values]
