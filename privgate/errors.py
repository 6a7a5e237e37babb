"""The privgate exception tree.

    PrivgateError                 any failure privgate reports on purpose
    ├── ConfigError               a config, policy or override is invalid
    ├── DataError                 an input table cannot be used
    │   └── ValidationFailedError the raw table failed its expectation suite
    ├── StageError                a stage failed unexpectedly (message withheld)
    └── RegistryError             the model registry refused or lacks something

Messages name files, columns, settings and measured values, never cell values: they
reach logs, Prefect state messages and terminals.
"""

from __future__ import annotations


class PrivgateError(Exception):
    """Raised when privgate stops on purpose with a message fit for a user."""


class ConfigError(PrivgateError):
    """Raised when a config file, policy file or `--set` override is invalid."""


class DataError(PrivgateError):
    """Raised when an input table is missing, unreadable, empty or malformed."""


class ValidationFailedError(DataError):
    """Raised when the raw table fails its Great Expectations suite."""


class StageError(PrivgateError):
    """Raised when a stage fails unexpectedly; the original message is withheld."""


class RegistryError(PrivgateError):
    """Raised when the model registry has no such model, version or alias."""
