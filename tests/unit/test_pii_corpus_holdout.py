"""The held-out PII corpus: deterministic, labelled to the substring, and unlike the tuned one."""

from __future__ import annotations

import re

import pytest

from privgate.pii.names import name_lexicon
from tests.pii_corpus_holdout import _first_names, holdout_notes

ROWS = 1_500


@pytest.fixture(scope="module")
def corpus():
    return holdout_notes(ROWS, seed=4)


def test_when_the_seed_repeats_then_the_corpus_repeats_and_another_seed_differs(corpus) -> None:
    again = holdout_notes(ROWS, seed=4)
    other = holdout_notes(ROWS, seed=5)

    assert again.frame.equals(corpus.frame)
    assert again.planted == corpus.planted
    assert not other.frame["note"].equals(corpus.frame["note"])


def test_when_a_value_is_planted_then_it_is_a_substring_of_its_own_note(corpus) -> None:
    notes = corpus.frame["note"]

    assert corpus.planted
    for planted in corpus.planted:
        assert planted.value in notes.iloc[planted.row]
        assert planted.canonical == planted.value


def test_when_a_note_names_its_row_then_the_values_come_from_the_row_columns(corpus) -> None:
    digits = re.compile(r"\D")
    for planted in corpus.planted:
        row = corpus.frame.iloc[planted.row]
        if planted.entity == "EMAIL_ADDRESS":
            assert planted.value == row["email"]
        elif planted.entity == "US_SSN":
            assert digits.sub("", planted.value) == digits.sub("", row["ssn"])
        elif planted.entity == "PERSON":
            surname = row["full_name"].split(" ", 1)[1]
            assert surname.casefold() in planted.value.casefold()


def test_when_names_are_drawn_then_most_first_names_are_outside_the_redactor_lexicon() -> None:
    # The redactor's second name signal is Faker's lexicon: the held-out names must not be
    # drawn from it, or their recall would measure the lexicon against itself.
    firsts = _first_names()
    lexicon = name_lexicon().first

    shared = sum(name.casefold() in lexicon for name in firsts) / len(firsts)

    assert len(firsts) > 20_000
    assert shared < 0.5


def test_when_names_are_written_then_every_hard_form_occurs(corpus) -> None:
    names = [p.value for p in corpus.planted if p.entity == "PERSON"]

    assert any("\n" in n for n in names)
    assert any("," in n for n in names)
    assert any(n.islower() for n in names)
    assert any(" " not in n and "\n" not in n for n in names)  # a surname after a title


def test_when_pii_fraction_is_set_then_that_share_of_notes_holds_planted_values() -> None:
    corpus = holdout_notes(1_000, seed=1, pii_fraction=0.3)

    assert len({p.row for p in corpus.planted}) == 300


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"count": 0}, "count"),
        ({"count": 10, "seed": -1}, "seed"),
        ({"count": 10, "pii_fraction": 2.0}, "pii_fraction"),
    ],
)
def test_when_an_argument_is_out_of_range_then_the_corpus_is_refused(kwargs, named) -> None:
    with pytest.raises(ValueError, match=named):
        holdout_notes(**kwargs)
