"""Data-parallel SGD strategies, one module each (see :mod:`.base` and :mod:`.registry`)."""

from .base import TABLE, Options, SGDProblem, Strategy
from .registry import STRATEGIES, STRATEGY_NAMES, check_strategy_consistency, make_strategy

__all__ = ["STRATEGIES", "STRATEGY_NAMES", "TABLE", "Options", "SGDProblem", "Strategy",
           "check_strategy_consistency", "make_strategy"]
