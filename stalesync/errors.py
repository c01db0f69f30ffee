"""Exceptions raised by stalesync.

Every error names what went wrong and where (table, row, worker), so a user can act on it
without reading a traceback from deep inside the runtime.
"""

from __future__ import annotations


class StalesyncError(Exception):
    """Base class of every error stalesync raises on purpose."""


class ConfigError(StalesyncError, ValueError):
    """An option or argument has an invalid value (unknown consistency model, bad staleness...).

    ``param`` names the estimator parameter or option at fault, so a command line can report
    the flag the user typed (``--topics``) instead of the internal name (``n_topics``)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class UnknownTableError(StalesyncError, KeyError):
    """A worker named a table that the job did not declare."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class RowIndexError(StalesyncError, IndexError):
    """A row index is outside ``[0, num_rows)`` of its table."""


class IncrementError(StalesyncError, ValueError):
    """An increment has the wrong dtype or shape, or holds NaN/inf values."""


class JobEndedError(StalesyncError, RuntimeError):
    """A worker context was used after its job finished."""


class JobAbortedError(StalesyncError, RuntimeError):
    """Raised inside the other workers when one worker failed and the job is being stopped."""


class DataFormatError(StalesyncError, ValueError):
    """An input file is malformed; the message names the file and line."""


class RecoveryError(StalesyncError, RuntimeError):
    """A job lost a worker or shard and could not be restored from a snapshot."""


def __getattr__(name: str):
    """``NotFittedError`` subclasses scikit-learn's own class (so ``except
    sklearn.exceptions.NotFittedError`` works), made on first use: importing scikit-learn
    costs about 1.5 s, which every Ray actor process of a job would otherwise pay at start
    (and again at each recovery) without ever using an estimator."""
    if name != "NotFittedError":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from sklearn.exceptions import NotFittedError as sklearn_not_fitted

    cls = type("NotFittedError", (StalesyncError, sklearn_not_fitted), {
        "__doc__": "An estimator was used before ``fit`` (or ``load``).",
        "__module__": __name__})
    globals()["NotFittedError"] = cls
    return cls
