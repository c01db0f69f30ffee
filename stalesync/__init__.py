"""stalesync: a bounded-staleness parameter server and model-parallel scheduler for ML."""

from .consistency import ConsistencyModel
from .context import WorkerContext
from .errors import (
    ConfigError,
    DataFormatError,
    IncrementError,
    JobAbortedError,
    JobEndedError,
    RowIndexError,
    StalesyncError,
    UnknownTableError,
)
from .faults import Stragglers
from .job import JobResult, run
from .row_batch import SparseRows
from .tables import TableSpec

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ConsistencyModel",
    "DataFormatError",
    "IncrementError",
    "JobAbortedError",
    "JobEndedError",
    "JobResult",
    "RowIndexError",
    "SparseRows",
    "StalesyncError",
    "Stragglers",
    "TableSpec",
    "UnknownTableError",
    "WorkerContext",
    "run",
]
