"""``sync``: synchronous SGD with backup workers (TensorFlow's SyncReplicasOptimizer,
Chen et al. 2016): each step the first ``workers - backup_workers`` gradients computed on
that step's parameters are averaged and applied by the shard's SGD rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..ps.update_rules import make_rule
from .base import Options, positive_float, positive_int
from .steps import GradientSteps


@dataclass(frozen=True)
class SyncOptions(Options):
    lr: float = 0.1  # the shard's step size
    lr_decay: float = 0.0  # lr_t = lr / (1 + decay t)
    batch_size: int = 64  # examples per step and worker
    backup_workers: int = 0  # gradients of a step not waited for

    def __post_init__(self) -> None:
        positive_float(self.lr, "lr")
        positive_float(self.lr_decay, "lr_decay", zero=True)
        positive_int(self.batch_size, "batch_size")
        positive_int(self.backup_workers, "backup_workers", low=0)


class SynchronousSGD(GradientSteps):
    """``sync``: each step the first ``workers - backup_workers`` gradients computed on that
    step's parameters are averaged and applied by the shard's SGD rule; late ones are
    dropped and counted (TensorFlow's SyncReplicasOptimizer, Chen et al. 2016)."""

    name = "sync"
    strategy_record = "sync"
    options_type = SyncOptions
    presync = True

    def promise(self, consistency: str, staleness: Any) -> str:
        backup = self.options.backup_workers
        return ("sync: every step applied the mean gradient of the step's parameters from "
                + (f"the first workers - {backup} workers to report (late ones dropped and "
                   "counted)" if backup else "every worker"))

    def table_update(self) -> Any:
        return make_rule({"rule": "sgd", "lr": self.options.lr, "decay": self.options.lr_decay})

    def job_options(self, workers: int, consistency: str, staleness: int | None
                    ) -> dict[str, Any]:
        return {"consistency": "bsp", "staleness": None,
                "backup_workers": self.options.backup_workers}
