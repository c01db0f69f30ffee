"""Data-parallel SGD strategies on the parameter server (see :mod:`.base`)."""

from .base import STRATEGY_NAMES, TABLE, SGDProblem, Strategy, StrategyConfig
from .programs import STRATEGIES, make_strategy

__all__ = ["STRATEGIES", "STRATEGY_NAMES", "TABLE", "SGDProblem", "Strategy",
           "StrategyConfig", "make_strategy"]
