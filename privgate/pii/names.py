"""A first- and last-name lexicon from Faker's person providers, every locale it ships.

NER is one signal for names; this is another, independent of any model: Faker (a
well-kept package privgate already depends on) ships tens of thousands of first and
last names from over a hundred locales. Loaded once per process from the installed
package, never from the network.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class NameLexicon:
    """Folded (casefolded) first and last names."""

    first: frozenset[str]
    last: frozenset[str]


def _names(provider: type, attributes: tuple[str, ...]) -> set[str]:
    found: set[str] = set()
    for attribute in attributes:
        value = provider.__dict__.get(attribute)
        # Some locales define names as properties or generators: only plain data counts.
        if isinstance(value, tuple | list | dict | set | frozenset):
            found.update(str(name) for name in value)
    return found


@functools.cache
def name_lexicon() -> NameLexicon:
    """Return the union of every Faker locale's first and last names (Latin script)."""
    from faker.config import AVAILABLE_LOCALES

    first: set[str] = set()
    last: set[str] = set()
    for locale in AVAILABLE_LOCALES:
        try:
            module = importlib.import_module(f"faker.providers.person.{locale}")
        except ImportError:
            continue
        provider = module.Provider
        first |= _names(provider, ("first_names", "first_names_male", "first_names_female"))
        last |= _names(provider, ("last_names",))
    latin = {name.casefold() for name in first | last if name.isalpha() and len(name) > 1}
    return NameLexicon(
        first=frozenset(n.casefold() for n in first if n.casefold() in latin),
        last=frozenset(n.casefold() for n in last if n.casefold() in latin),
    )
