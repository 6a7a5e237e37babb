"""The independent residual verifier: it sees what the redactor cannot.

Each test plants identifiers past the redactor (a phone whose area code no numbering
plan knows, checked with `pii.strict_phone_validation: true`; a name written in
lowercase, which neither NER nor a capitalized-word rule reads) and checks that the
`residual_pii` gate fails on the verifier's counts, naming columns, never values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from audits.residual_pii import IdentifierIndex, fold, shapes_in, verify_residuals
from privgate import stages
from privgate.config import load_config, load_policy

ROOT = Path(__file__).resolve().parents[2]
# (232) is no North-American area code: libphonenumber rejects the number.
PHONE = "(232) 213-1582"
# In no name list, written in lowercase with no cue word before it: the redactor reads
# no name there.
NAME = "Zebulonia Okonkwo-Baptiste"


def _table(rows: int = 40) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "full_name": [f"{NAME} {i:02d}" if i else NAME for i in range(rows)],
            "phone": [PHONE if i == 0 else f"(617) 555-01{i:02d}" for i in range(rows)],
            "age": [30 + i % 3 for i in range(rows)],
            "notes": [
                # The same phone in another format, the name in lowercase.
                "called back on 232.213.1582, zebulonia okonkwo-baptiste prefers mornings"
                if i == 0
                else "renewal sent, nothing else to note"
                for i in range(rows)
            ],
            "income": ["<=50K", ">50K"] * (rows // 2),
        }
    )


def _config(*overrides: str):
    return load_config(
        ROOT / "configs" / "demo.yaml",
        [
            "anonymization.quasi_identifiers={age: {kind: interval, widths: [10]}}",
            "anonymization.columns={full_name: drop, phone: mask, notes: redact}",
            *overrides,
        ],
    )


def test_when_the_redactor_misses_a_phone_and_a_name_then_the_residual_gate_fails_on_counts():
    # Given a redactor that validates phones strictly and cannot read a lowercase name
    config = _config("pii.strict_phone_validation=true")
    policy = load_policy()
    frame = _table()
    scan = stages.scan_frame(frame, config)
    anonymized = stages.anonymize_frame(frame, scan, config)
    assert "232.213.1582" in anonymized.frame["notes"].iloc[0]  # the redactor missed both

    # When the table is verified and judged
    verification = stages.verify(anonymized, config, policy)
    gates = stages.judge_data(verification, policy)

    # Then the Presidio re-scan saw nothing, the independent verifier both, by column pair
    result = next(r for r in gates.results if r.name == "residual_pii")
    assert sum(verification.residual_findings.values()) == 0
    assert verification.independent is not None
    assert verification.independent.leaks == {"full_name -> notes": 1, "phone -> notes": 1}
    assert not result.passed
    assert "full_name -> notes 1" in result.details
    assert "phone -> notes 1" in result.details
    # and no value reaches the report
    blob = json.dumps(gates.to_dict()) + json.dumps(verification.to_dict())
    for canary in ("232", "1582", "zebulonia", "Zebulonia", "okonkwo"):
        assert canary not in blob


def test_when_phone_validation_is_not_strict_then_the_redactor_removes_the_unassigned_number():
    config = _config()
    frame = _table()
    scan = stages.scan_frame(frame, config)

    anonymized = stages.anonymize_frame(frame, scan, config)

    note = anonymized.frame["notes"].iloc[0]
    assert "<PHONE_NUMBER>" in note
    assert "1582" not in note


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("call 538-990-8191 today", "PHONE_NUMBER"),
        ("reach at +1 455 222 1632", "PHONE_NUMBER"),
        ("dotted +1.212.555.0147", "PHONE_NUMBER"),
        ("card 4111.1111.1111.1111", "CREDIT_CARD"),
        ("<tel:5558675309>", "PHONE_NUMBER"),
        ("write ana.diaz at example.org", "EMAIL_ADDRESS"),
        ("write ana @ example.org", "EMAIL_ADDRESS"),
        ("ssn 078 05 1120", "US_SSN"),
        ("ssn 123-45-6789 on file", "US_SSN"),
        ("card 4111 1111 1111 1111", "CREDIT_CARD"),
        ("mail ana.diaz@example.org now", "EMAIL_ADDRESS"),
        ("iban de89 3704 0044 0532 0130 00", "IBAN_CODE"),
        ("from 203.0.113.7 at night", "IP_ADDRESS"),
        # An invisible character the redactor's list does not hold (U+2063) splits it.
        ("call 538-990\u2063-8191 today", "PHONE_NUMBER"),
        # Separators a hostile writer picks, dashes NFKC keeps, markup between digits.
        ("dial 555|867|5309", "PHONE_NUMBER"),
        ("dial 555_867_5309", "PHONE_NUMBER"),
        ("dial 555:867:5309", "PHONE_NUMBER"),
        ("dial 555~867~5309", "PHONE_NUMBER"),
        ("dial 555,867,5309", "PHONE_NUMBER"),
        ("dial 538\u2013990\u20138191", "PHONE_NUMBER"),
        ("dial 538\u2212990\u22128191", "PHONE_NUMBER"),
        ("dial 538<b>990</b>8191", "PHONE_NUMBER"),
        ("ssn 078_05_1120", "US_SSN"),
        ("ssn 078051120", "US_SSN"),
        # Numbering plans abroad, and bare runs.
        ("uk 020 7946 0958", "PHONE_NUMBER"),
        ("fr 01 99 00 12 34", "PHONE_NUMBER"),
        ("in 98765 43210", "PHONE_NUMBER"),
        ("de +4930901820", "PHONE_NUMBER"),
        ("us 5389908191", "PHONE_NUMBER"),
        ("card 4111111111111111", "CREDIT_CARD"),
        ("amex 3782 822463 10005", "CREDIT_CARD"),
        # An address spelled so that no `@` shows.
        ("write ana at example dot org", "EMAIL_ADDRESS"),
        ("write ana (at) example (dot) org", "EMAIL_ADDRESS"),
        ("write ana[at]example.org", "EMAIL_ADDRESS"),
    ],
)
def test_when_a_cell_holds_an_identifier_shape_then_the_shape_pass_names_its_entity(
    text: str, entity: str
) -> None:
    assert entity in shapes_in(fold(text))


@pytest.mark.parametrize(
    "text",
    [
        "LDL 123.4 mg/dL, plan PLN-1234-A, batch BX-2021-0001, paid $1,234.56",
        "seen on 2021-03-04 and 12/03/2021, ICD E11.9, 5 visits",
        "tok_0123456789abcdef0123",
        "<PHONE_NUMBER> and <EMAIL_ADDRESS>",
        # Numbers that are lists, decimals, codes or times, not identifiers.
        "years 1999 2000 2001, sizes 32 34 36 38 40 42 and 32 34 36 38 40",
        "release 10.2.3.4567, isbn 978-3-16-148410-0, isbn 9783161484100",
        "at 40.7128, -74.0060 and pi 3.14159265358979",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "paid $1,234,567.89 of 1234567.89, limit 12,345,678",
        "at 12/03/2021 14:05, 2021-03-04 12:30:00, times 10:30 11:45 12:15",
        "epoch 1733460000; meet at noon; seen at home dot",
        # The red team's clinical false positives: dose and page ranges (a bare 3-4 run
        # is no longer a phone: a known one is still found by the leak check), lists of
        # equal-length numbers, a date with a time, prose with `at` and `dot`.
        "Metformin 500-2000 mg/day, pages 123-4567, order #123-4567",
        "Rooms 101 102 103 104, tracking 7712 3456 7890",
        "Seen 2023-01-15 0845",
        "Tenderness at the dot marked on skin; look at the chart",
    ],
)
def test_when_a_cell_holds_codes_amounts_dates_or_placeholders_then_no_shape_is_found(
    text: str,
) -> None:
    assert (
        shapes_in(fold(text.replace("<PHONE_NUMBER>", " ").replace("<EMAIL_ADDRESS>", " ")))
        == set()
    )


def test_when_identifier_values_reappear_disguised_then_the_leak_check_finds_them() -> None:
    index = IdentifierIndex(
        {
            "email": pd.Series(["Ana.Diaz@example.org"]),
            "ssn": pd.Series(["078-05-1120"]),
        }
    )
    out = pd.DataFrame(
        {
            "note": [
                "wrote to ＡＮＡ.DIAZ@EXAMPLE.ORG",  # full-width letters, other case
                "ssn 078\u200b051120 on file",  # zero-width space, no dashes
                "ana.diazz@example.org is someone else",  # not on a word boundary
                "nothing here",
            ]
        }
    )

    report = verify_residuals(out, index=index)

    assert report.leaks == {"email -> note": 1, "ssn -> note": 1}
    assert report.keys == 2


@pytest.mark.parametrize(
    "cell",
    [
        "j\u043ehn smith called",  # a Cyrillic o
        "jo\u00adhn smith called",  # a soft hyphen
        "ref MRN5558675309x",  # digits glued to letters
        "dial 555<i>867</i>5309",  # markup between digits
        "dial 555\u2011867\u20115309",  # non-breaking hyphens
        "dial 555 | 867 | 5309",
        '<a href="tel:5558675309">call me</a>',  # markup holding digits is read
        "ref <SSN_5558675309>",  # not the redactor's placeholder: it has digits
        "J\u0332o\u0332h\u0332n\u0332 S\u0332m\u0332i\u0332t\u0332h\u0332",  # combining marks
        "j\u00f3hn sm\u00edth",  # accents the value does not have
    ],
)
def test_when_a_known_identifier_is_disguised_by_look_alikes_or_markup_then_it_leaks(
    cell: str,
) -> None:
    index = IdentifierIndex(
        {"name": pd.Series(["John Smith"]), "phone": pd.Series(["(555) 867-5309"])}
    )

    report = verify_residuals(pd.DataFrame({"note": [cell]}), index=index)

    assert report.leak_total == 1


def test_when_a_name_is_written_surname_first_then_it_still_leaks() -> None:
    index = IdentifierIndex({"full_name": pd.Series(["Ana María Díaz", "Jevgenia Tolentino"])})
    out = pd.DataFrame(
        {
            "note": [
                "form signed by Díaz, Ana María",
                "tolentino jevgenia called",
                "Tolentino, Jevgenia\nreviewed",
                "díaz ana called",  # a different person's order of words: no key
            ]
        }
    )

    report = verify_residuals(out, index=index)

    assert report.leaks == {"full_name -> note": 3}


def test_when_an_index_is_pickled_then_no_key_travels_and_the_copy_refuses_to_verify() -> None:
    import pickle

    index = IdentifierIndex({"phone": pd.Series(["617-555-0100"])})

    blob = pickle.dumps(index)
    copy = pickle.loads(blob)

    assert b"617" not in blob
    assert b"0100" not in blob
    assert copy.sources == ("phone",)
    with pytest.raises(ValueError, match="without its keys"):
        verify_residuals(pd.DataFrame({"note": ["call 617-555-0100"]}), index=copy)


@pytest.mark.parametrize(
    ("padding", "beside_a_long_cell"),
    [(0, False), (400, False), (0, True)],
    ids=["short cells: lookups", "long cells: automaton", "short cells of a free-text column"],
)
def test_when_cells_are_short_or_long_then_both_searches_find_the_same_keys(
    padding: int, beside_a_long_cell: bool
) -> None:
    index = IdentifierIndex(
        {"full_name": pd.Series(["Ana Díaz"]), "phone": pd.Series(["(232) 213-1582"])}
    )
    filler = "routine follow-up, nothing to note. " * (padding // 36)
    notes = [
        filler + "spoke with _ANA  DÍAZ_ today",
        filler + "number +1 232 213 1582 on file",
        filler + "anadíaz and 2322131583 are not hers",
    ]
    # A long cell makes the column free text: its short cells go through the automaton.
    long_cell = ["routine follow-up, nothing to note. " * 12] if beside_a_long_cell else []
    out = pd.DataFrame({"note": notes + long_cell})

    report = verify_residuals(out, index=index)

    assert report.leaks == {"full_name -> note": 1, "phone -> note": 1}


def test_when_a_numeric_column_holds_an_identifier_as_a_number_then_it_leaks_but_fractions_do_not():
    index = IdentifierIndex({"phone": pd.Series(["617-555-0100"])})
    out = pd.DataFrame({"contact": [6175550100, 12], "amount": [0.16175550100, 3.5]})

    report = verify_residuals(out, index=index)

    assert report.leaks == {"phone -> contact": 1}


def test_when_privgate_anonymize_meets_what_the_redactor_missed_then_it_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from privgate.cli import main

    # Given a table and a config whose redactor validates phones strictly
    monkeypatch.setenv("PRIVGATE_HOME", str(tmp_path))
    raw, out = tmp_path / "raw.csv", tmp_path / "out.csv"
    _table().to_csv(raw, index=False)
    config_file = tmp_path / "config.yaml"
    config = _config("pii.strict_phone_validation=true", "data.string_columns=[phone]")
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")), encoding="utf-8")

    # When it is anonymized through the CLI
    code = main(["anonymize", str(raw), str(out), "--config", str(config_file), "--json"])

    # Then the gate blocks it on the independent verifier's counts, and nothing is written
    printed = capsys.readouterr()
    summary = json.loads(printed.out)
    assert code == 2
    assert not out.exists()
    assert summary["written"] is False
    assert summary["residual_by_verifier"]["cross_column_pairs"] == {
        "full_name -> notes": 1,
        "phone -> notes": 1,
    }
    for canary in ("1582", "zebulonia", "Zebulonia", "okonkwo"):
        assert canary not in printed.out + printed.err


def test_when_the_verifier_is_read_then_it_imports_nothing_of_the_redactor() -> None:
    import ast

    source = (ROOT / "audits" / "residual_pii.py").read_text(encoding="utf-8")
    imported = {
        alias.name if isinstance(node, ast.Import) else node.module or ""
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }

    # The whole `privgate.pii` subpackage is the redactor's side (engine, recognizers, name
    # lexicon, anonymization); `from privgate import pii` would name it as "privgate".
    redactor = ("presidio", "spacy", "privgate.pii", "faker")
    assert "privgate" not in imported
    assert not {name for name in imported if name.startswith(redactor)}
