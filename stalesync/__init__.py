"""stalesync: a bounded-staleness parameter server and model-parallel scheduler for ML."""

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
from .ps.consistency import ConsistencyModel
from .ps.context import WorkerContext
from .ps.row_batch import SparseRows
from .ps.tables import TableSpec

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
