"""Matrix factorization by SGD: data-parallel on SSP tables, or block-scheduled (DSGD,
Fugue). See ``docs/mf.md``."""

from .. import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "MatrixFactorization": "estimator",
    "NotFittedError": "estimator",
    "UnknownIdError": "estimator",
    "SGDConfig": "sgd",
})
