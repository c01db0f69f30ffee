"""The one progress bar every app uses, driven by clock events.

A parameter-server job calls :meth:`Progress.on_clock` for every worker clock (the runtime
forwards them to the driver's thread); the bar advances when *every* worker has finished a
clock, in epochs, and shows the objective of that clock (summed or averaged over workers,
as the app's objective is defined) and a throughput. Apps that are not clocked (the
scheduler's checks) call :meth:`Progress.advance` instead. A disabled bar costs nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np


class Progress:
    def __init__(self, *, desc: str, epochs: float, clocks_per_epoch: int = 1,
                 workers: int = 1, enabled: bool = True, objective: str = "objective",
                 reduce: str = "mean", items_per_epoch: float | None = None,
                 items: str = "items", unit: str = "epoch") -> None:
        self.workers = workers
        self.clocks_per_epoch = clocks_per_epoch
        self.objective = objective
        self.reduce = np.sum if reduce == "sum" else np.mean
        self.items_per_epoch = items_per_epoch
        self.items = items
        self._shares: dict[int, list[float]] = {}
        self._first: float | None = None  # epoch this run started at (after a resume)
        self._lock = threading.Lock()
        self._start = time.perf_counter()
        self.bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=epochs, desc=desc, unit=unit, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n:.3g}/{total:.3g} {unit}s "
                            "[{elapsed}<{remaining}{postfix}]")

    @property
    def enabled(self) -> bool:
        return self.bar is not None

    def on_clock(self, worker: int, clock: int, objective: float | None) -> None:
        if self.bar is None:
            return
        with self._lock:
            shares = self._shares.setdefault(clock, [])
            shares.append(np.nan if objective is None else objective)
            if len(shares) < self.workers:
                return
            del self._shares[clock]
            value = None if np.isnan(shares).any() else float(self.reduce(shares))
            self._update((clock + 1) / self.clocks_per_epoch, clock / self.clocks_per_epoch,
                         value)

    def advance(self, epoch: float, objective: float | None = None, **postfix: Any) -> None:
        """Move the bar to ``epoch`` (apps without clock events)."""
        if self.bar is None:
            return
        with self._lock:
            self._update(epoch, 0.0, objective, **postfix)

    def _update(self, epoch: float, started: float, objective: float | None,
                **postfix: Any) -> None:
        if self._first is None:
            self._first = started
        shown = dict(postfix)
        if objective is not None:
            shown[self.objective] = f"{objective:.5g}"
        if self.items_per_epoch:
            elapsed = max(time.perf_counter() - self._start, 1e-9)
            rate = self.items_per_epoch * (epoch - self._first) / elapsed
            shown[f"{self.items}/s"] = f"{rate:.3g}"
        if shown:
            self.bar.set_postfix(shown, refresh=False)
        self.bar.update(max(epoch - self.bar.n, 0))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
