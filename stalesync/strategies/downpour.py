"""``downpour``: DistBelief's asynchronous SGD. A worker fetches the parameters every
``n_fetch`` steps and pushes its accumulated gradient every ``n_push``; the shard applies
it with ``server_update`` (SGD, Adagrad or Adam)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..ps.update_rules import RULES, make_rule
from .base import Options, positive_float, positive_int
from .steps import GradientSteps

SERVER_UPDATES = tuple(name for name in RULES if name != "add")  # what the shard may do


@dataclass(frozen=True)
class DownpourOptions(Options):
    lr: float = 0.1  # the shard's step size
    lr_decay: float = 0.0  # server_update="sgd": lr_t = lr / (1 + decay t)
    batch_size: int = 64  # examples per step and worker
    n_fetch: int = 1  # steps between fetches of the parameters
    n_push: int = 1  # steps between pushes of the accumulated gradient
    server_update: str = "adagrad"  # the shard's update rule

    def __post_init__(self) -> None:
        positive_float(self.lr, "lr")
        positive_float(self.lr_decay, "lr_decay", zero=True)
        for key in ("batch_size", "n_fetch", "n_push"):
            positive_int(getattr(self, key), key)
        if self.server_update not in SERVER_UPDATES:
            raise ConfigError(f"server_update must be one of {SERVER_UPDATES}, got "
                              f"{self.server_update!r}", param="server_update")


class Downpour(GradientSteps):
    """``downpour``: asynchronous; fetch every ``n_fetch`` steps, push the accumulated
    gradient every ``n_push``; the shard applies it with SGD, Adagrad or Adam (DistBelief)."""

    name = "downpour"
    strategy_record = "downpour"
    options_type = DownpourOptions
    runs = "async"

    def promise(self, consistency: str, staleness: Any) -> str:
        o = self.options
        return (f"downpour: async; a worker's parameters were at most {o.n_fetch} of its own "
                f"steps old, its gradients reached the shard every {o.n_push} steps "
                f"({o.server_update})")

    def table_update(self) -> Any:
        options: dict[str, Any] = {"rule": self.options.server_update, "lr": self.options.lr}
        if self.options.server_update == "sgd":  # the one rule with a step-size decay
            options["decay"] = self.options.lr_decay
        return make_rule(options)

    def job_options(self, workers: int, consistency: str, staleness: int | None
                    ) -> dict[str, Any]:
        return {"consistency": "async", "staleness": None, "fetch_every": self.options.n_fetch,
                "push_every": self.options.n_push}
