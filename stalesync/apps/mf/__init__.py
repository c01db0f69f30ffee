"""Matrix factorization by SGD: data-parallel on SSP tables, or block-scheduled (DSGD,
Fugue). See ``docs/mf.md``."""

from .estimator import MatrixFactorization, NotFittedError, UnknownIdError
from .sgd import SGDConfig

__all__ = ["MatrixFactorization", "NotFittedError", "SGDConfig", "UnknownIdError"]
