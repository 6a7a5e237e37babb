"""The privgate exception tree.

    PrivgateError                 any failure privgate reports on purpose
    ├── ConfigError               a config, policy or override is invalid
    ├── DataError                 an input table cannot be used
    │   └── ValidationFailedError the raw table failed its expectation suite
    ├── StageError                a stage failed unexpectedly (message withheld)
    │   └── ServiceUnavailableError   a server (MLflow, Prefect) could not be reached
    ├── AccountingError           a training loop does not match its privacy accounting
    ├── BudgetExceededError       a run would overspend a dataset's lifetime budget
    └── RegistryError             the model registry refused or lacks something

Messages name files, columns, settings and measured values, never cell values: they
reach logs, Prefect state messages and terminals.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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


class ServiceUnavailableError(StageError):
    """Raised when a server could not be reached or answered 'try later'; a retry may pass."""


class AccountingError(PrivgateError):
    """Raised when a training loop does not match what its privacy accountant assumes."""


class BudgetExceededError(PrivgateError):
    """Raised when a run would push a dataset's lifetime epsilon or delta past its budget."""


class PolicyRefusedError(PrivgateError):
    """Raised when the privacy policy forbids what a run asks for (e.g. training without DP)."""


class RegistryError(PrivgateError):
    """Raised when the model registry has no such model, version or alias."""


@contextmanager
def withheld(stage: str) -> Iterator[None]:
    """Re-raise unexpected exceptions of `stage` without their message.

    Third-party messages quote data (pandas: "could not convert string to float:
    '<a cell>'"), and a stage's exception ends up in logs and in the Prefect database.
    privgate's own errors pass unchanged: their messages never hold values.
    `PRIVGATE_DEBUG=1` prints the original traceback to this process's own stderr, and
    still raises the withheld error: the exception itself would reach Prefect's
    database and any remote API.
    """
    try:
        yield
    except PrivgateError:
        raise
    except Exception as exc:
        if os.environ.get("PRIVGATE_DEBUG") == "1":
            traceback.print_exception(exc, file=sys.__stderr__)
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        error = ServiceUnavailableError if is_transient(exc) else StageError
        raise error(
            f"stage {stage!r} failed with {type(exc).__name__}{where}; its message is "
            "withheld because it may quote data values (PRIVGATE_DEBUG=1 shows it)"
        ) from None


# Names, not imports: requests, urllib3 and httpx need not be loaded to be recognized.
_TRANSIENT = {
    "requests.exceptions.ConnectionError",
    "requests.exceptions.Timeout",
    "urllib3.exceptions.MaxRetryError",
    "urllib3.exceptions.NewConnectionError",
    "httpx.TransportError",
}
_TRY_LATER_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}


def is_transient(exc: BaseException) -> bool:
    """Return whether `exc`, or an exception it was raised from, says "try again later".

    MLflow's client retries HTTP calls itself, then raises an MlflowException whose
    context is the connection error; a server answering 503 sets TEMPORARILY_UNAVAILABLE.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | TimeoutError):
            return True
        names = {f"{k.__module__}.{k.__qualname__}" for k in type(current).__mro__}
        if names & _TRANSIENT or getattr(current, "error_code", None) in _TRY_LATER_CODES:
            return True
        current = current.__cause__ or current.__context__
    return False
