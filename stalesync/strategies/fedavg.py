"""``fedavg``: federated averaging (McMahan et al. 2017) with optional server momentum
(FedAvgM, Hsu et al. 2019) and secure aggregation (Bonawitz et al. 2017).

The examples belong to ``clients`` (a client id per example, or a random split into that
many). Each round the same seeded draw on every worker samples ``max(min_clients,
ceil(fraction x clients))`` of them; a worker trains each sampled client it holds (clients
are dealt to workers round-robin and run one after another) for ``local_epochs`` passes
over the client's examples, starting from the global model, and adds the client's model
weighted by its share of the round's examples. Two BSP clocks close a round: after the
first, worker 0 (the server) reads the sum, forms the new global model and clears the sum;
after the second, everyone reads the new model.

**Exact arithmetic.** The global model lives in one of two tables in turn: the server
writes the new model into the table that was cleared (``0 + x == x``) and clears the old
one (``x + (-x) == 0``), so with one client the global model *is* the client's model, bit
for bit, and plain FedAvg carries no rounding of its own. With ``quantize_bits`` the
weighted models are added in fixed point (int64, exact and order-free).

**Stragglers and dropouts.** ``dropout``: each sampled client fails to report with this
probability (a seeded draw; for experiments). ``round_deadline_s``: a client that finishes
after the deadline (from its worker's start of the round) has its update dropped and
counted. The round averages exactly the clients that reported (re-weighted by their
examples); with fewer than ``min_clients`` reports it is skipped and counted.

**Secure aggregation** (``secure_aggregation=True``, needs ``quantize_bits``): each client
adds its quantised update plus pairwise masks (seeds agreed by Diffie-Hellman with every
other sampled client) and a self mask, so the shard only ever holds masked vectors and
their sum; the server recovers a dropped client's pairwise masks and the survivors' self
masks from Shamir shares held by the survivors (:mod:`.secure_aggregation`; an in-process
simulation of the key exchange and the share transport, with the real arithmetic). The
server knows which clients reported and their example counts (the weights), as in
Flower's SecAgg+ with weighted averaging.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..ps.tables import TableSpec
from . import secure_aggregation as secagg
from .base import TABLE, Options, Strategy, positive_int

NEXT, SUM, REPORTED = "fedavg_next", "fedavg_sum", "fedavg_reported"


@dataclass(frozen=True)
class FedAvgOptions(Options):
    clients: Any = 100  # an int (random IID split) or a client id per example
    fraction: float = 0.1  # of the clients sampled per round
    min_clients: int = 2  # sampled at least; a round with fewer reports is skipped
    local_epochs: int = 1  # passes over its examples a sampled client makes
    rounds: int | None = None  # None: as many as make `epochs` passes over the data
    server_lr: float = 1.0
    server_momentum: float = 0.0  # FedAvgM's beta (0: FedAvg)
    dropout: float = 0.0  # chance a sampled client fails to report (simulated)
    round_deadline_s: float | None = None  # later updates are dropped
    secure_aggregation: bool = False
    quantize_bits: int | None = None  # fixed-point fraction bits of the added models
    # the server's hook after each round: on_round(round, global model as table rows), e.g.
    # a central evaluation (Flower's evaluate_fn); it runs in worker 0's process
    on_round: Callable[[int, np.ndarray], None] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.clients, bool) or not (
                isinstance(self.clients, int) or _is_ids(self.clients)):
            raise ConfigError("clients must be a number of clients or a client id per "
                              f"example, got {type(self.clients).__name__}", param="clients")
        if isinstance(self.clients, int):
            positive_int(self.clients, "clients")
        _unit(self.fraction, "fraction", low_open=True)
        positive_int(self.min_clients, "min_clients")
        positive_int(self.local_epochs, "local_epochs")
        if self.rounds is not None:
            positive_int(self.rounds, "rounds")
        _unit(self.server_lr, "server_lr", low_open=True, high=None)
        _unit(self.server_momentum, "server_momentum", high_open=True)
        _unit(self.dropout, "dropout", high_open=True)
        if self.round_deadline_s is not None:
            _unit(self.round_deadline_s, "round_deadline_s", low_open=True, high=None)
        if self.quantize_bits is not None:
            positive_int(self.quantize_bits, "quantize_bits")
            if self.quantize_bits > 40:
                raise ConfigError(f"quantize_bits must be <= 40, got {self.quantize_bits}",
                                  param="quantize_bits")
        if self.on_round is not None and not callable(self.on_round):
            raise ConfigError("on_round must be a function (round, model rows)",
                              param="on_round")
        if self.secure_aggregation and self.quantize_bits is None:
            raise ConfigError("secure_aggregation adds masked fixed-point vectors: set "
                              "quantize_bits (e.g. 24)", param="quantize_bits")


def _is_ids(value: Any) -> bool:
    return isinstance(value, Sequence | np.ndarray) and not isinstance(value, str)


def _unit(value: Any, name: str, *, low_open: bool = False, high_open: bool = False,
          high: float | None = 1.0) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > 0 if low_open else value >= 0) and (
            high is None or (value < high if high_open else value <= high))
    if not ok:
        hi = "" if high is None else f" and {'<' if high_open else '<='} {high}"
        raise ConfigError(f"{name} must be {'>' if low_open else '>='} 0{hi}, got {value!r}",
                          param=name)


@dataclass
class ClientGroup:
    """A worker's clients (id, problem) and every client's example count."""

    members: list[tuple[int, Any]]
    sizes: np.ndarray

    @property
    def num_examples(self) -> int:
        return int(sum(p.num_examples for _, p in self.members))


@dataclass(frozen=True)
class RoundPlan:
    """Who takes part in a round: the sampled clients, those that will fail to report
    (simulated dropout), and the examples of the rest (the weights' denominator)."""

    sampled: np.ndarray
    failing: frozenset[int]
    expected_examples: int

    def weight(self, client: int, sizes: np.ndarray) -> float:
        return float(sizes[client]) / self.expected_examples


def split_by_label(labels: np.ndarray, clients: int, labels_per_client: int = 2,
                   seed: int = 0) -> np.ndarray:
    """A client id per example, non-IID as in McMahan et al.: the examples sorted by label
    and cut into ``clients x labels_per_client`` shards, each client given that many
    shards at random (so most clients see about ``labels_per_client`` labels)."""
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    shards = np.array_split(order, clients * labels_per_client)
    owner = rng.permutation(clients * labels_per_client) % clients
    ids = np.empty(len(labels), dtype=np.int64)
    for shard, client in zip(shards, owner, strict=True):
        ids[shard] = client
    return ids


class FederatedAveraging(Strategy):
    """``fedavg``: sampled clients train locally; the server averages their models
    weighted by examples (module docstring)."""

    name = "fedavg"
    strategy_record = "fedavg"
    options_type = FedAvgOptions

    def promise(self, consistency: str, staleness: Any) -> str:
        o = self.options
        secure = ", secure aggregation" if o.secure_aggregation else ""
        return (f"fedavg: each round averaged exactly the sampled clients that reported, "
                f"weighted by examples (bsp{secure})")

    def job_options(self, workers: int, consistency: str, staleness: int | None
                    ) -> dict[str, Any]:
        return {"consistency": "bsp", "staleness": None}

    # -- clients ----------------------------------------------------------------------------
    def partition(self, n: int, workers: int, rng: np.random.Generator) -> list[np.ndarray]:
        """Each client's examples (a list in client order)."""
        clients = self.options.clients
        if isinstance(clients, int):
            if clients > n:
                raise ConfigError(f"{n} examples cannot be split over {clients} clients",
                                  param="clients")
            return super().partition(n, clients, rng)  # the default split, one per client
        ids = np.asarray(clients)
        if ids.ndim != 1 or ids.shape[0] != n:
            raise ConfigError(f"clients: {ids.shape[0] if ids.ndim else 0} ids given for "
                              f"{n} examples (one per example)", param="clients")
        _, inverse = np.unique(ids, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        cuts = np.flatnonzero(np.diff(inverse[order])) + 1
        return [rng.permutation(part) for part in np.split(order, cuts)]

    def worker_data(self, problems: list[Any], workers: int) -> list[Any]:
        if len(problems) < workers:
            raise ConfigError(f"{len(problems)} clients cannot be spread over {workers} "
                              "workers", param="workers")
        sizes = np.array([p.num_examples for p in problems], dtype=np.int64)
        return [ClientGroup([(c, problems[c]) for c in range(w, len(problems), workers)],
                            sizes) for w in range(workers)]

    def per_round(self, clients: int) -> int:
        return min(clients, max(self.options.min_clients,
                                math.ceil(self.options.fraction * clients)))

    def rounds(self, clients: int, epochs: int) -> int:
        """``rounds``, or as many as make ``epochs`` passes over the data."""
        if self.options.rounds is not None:
            return self.options.rounds
        share = self.per_round(clients) / clients * self.options.local_epochs
        return max(1, math.ceil(epochs / share))

    def clocks(self, problems: list[Any], epochs: int) -> int:
        return 2 * self.rounds(len(problems), epochs) + 1

    def summary(self, worker_results: list[Any]) -> dict[str, Any]:
        counts = {k: int(sum(r[k] for r in worker_results))
                  for k in ("reports", "dropped_clients", "late_clients")}
        counts["skipped_rounds"] = int(worker_results[0]["skipped_rounds"])  # the server's
        return {"federated": counts}

    def num_clients(self) -> int:
        clients = self.options.clients
        return clients if isinstance(clients, int) else int(np.unique(clients).size)

    def planned_clocks(self, epochs: int) -> int:
        """The job's clocks before the clients are built (``workers="auto"``)."""
        return 2 * self.rounds(self.num_clients(), epochs) + 1

    def plan(self, seed: int, round_: int, sizes: np.ndarray) -> RoundPlan:
        rng = np.random.default_rng([seed, 7331, round_])
        sampled = np.sort(rng.choice(sizes.size, self.per_round(sizes.size), replace=False))
        fails = rng.random(sampled.size) < self.options.dropout
        failing = frozenset(int(c) for c in sampled[fails])
        expected = int(sizes[sampled[~fails]].sum()) or 1
        return RoundPlan(sampled, failing, expected)

    # -- tables -----------------------------------------------------------------------------
    def extra_tables(self, table: TableSpec, clients: int) -> list[TableSpec]:
        exact = self.options.quantize_bits is not None
        return [TableSpec(NEXT, table.num_rows, table.row_width, table.dtype),
                TableSpec(SUM, table.num_rows, table.row_width, "int64" if exact else "float64"),
                TableSpec(REPORTED, clients, 1, "int64")]

    # -- the worker program -------------------------------------------------------------------
    def make_worker(self, epochs: int) -> Callable[[Any], Any]:
        def worker(ctx: Any) -> dict[str, Any]:
            return _FedAvgWorker(self, ctx, epochs).run()

        return worker


class _FedAvgWorker:
    """One worker's rounds: its sampled clients' training, and (worker 0) the server."""

    def __init__(self, strategy: FederatedAveraging, ctx: Any, epochs: int) -> None:
        self.s, self.o, self.ctx = strategy, strategy.options, ctx
        self.group: ClientGroup = ctx.data
        self.sizes = self.group.sizes
        self.rounds = strategy.rounds(self.sizes.size, epochs)
        shape_source = self.group.members[0][1]
        self.rows = shape_source.all_rows()
        self.velocity: np.ndarray | None = None
        self.counts = {"dropped_clients": 0, "late_clients": 0, "skipped_rounds": 0,
                       "reports": 0}

    def run(self) -> dict[str, Any]:
        ctx = self.ctx
        self._restore()
        while ctx.clock_count < 2 * self.rounds:
            r = ctx.clock_count // 2
            plan = self.s.plan(ctx.seed, r, self.sizes)
            if ctx.clock_count % 2 == 0:  # (a run resumed between the two clocks skips it)
                loss, n = self._train_clients(r, plan)
                self._save()
                ctx.clock(objective=loss / max(n, 1))
            if ctx.worker_id == 0:
                self._close_round(r, plan)
            self._save()
            ctx.clock()
        if ctx.clock_count == 2 * self.rounds:  # the final model into the app's table
            if ctx.worker_id == 0 and self.rounds % 2 == 1:
                final = ctx.read(NEXT, self.rows)
                ctx.inc(TABLE, self.rows, final)
                ctx.inc(NEXT, self.rows, -final)
            ctx.clock()
        seen = sum(p.examples_seen for _, p in self.group.members)
        return {"examples": seen, **self.counts}

    # -- clients --------------------------------------------------------------------------
    def _train_clients(self, r: int, plan: RoundPlan) -> tuple[float, int]:
        ctx, o = self.ctx, self.o
        base = ctx.read(TABLE if r % 2 == 0 else NEXT, self.rows)
        started = time.perf_counter()
        sampled = set(plan.sampled.tolist())
        loss, n = 0.0, 0
        for c, p in self.group.members:
            if c not in sampled:
                continue
            if c in plan.failing:
                self.counts["dropped_clients"] += 1
                continue
            model = p.model_from(base)
            for e in range(o.local_epochs):
                # the client's own draw: the same whichever worker runs it
                order = p.shuffled(np.random.default_rng([ctx.seed, 9173, r, c, e]))
                loss += p.local_steps(model, order)
                n += order.size
            values = p.model_values(model)
            if o.round_deadline_s is not None and \
                    time.perf_counter() - started > o.round_deadline_s:
                self.counts["late_clients"] += 1
                continue
            self._report(r, c, plan, values * plan.weight(c, self.sizes))
        return loss, n

    def _report(self, r: int, client: int, plan: RoundPlan, weighted: np.ndarray) -> None:
        ctx, o = self.ctx, self.o
        if o.quantize_bits is None:
            ctx.inc(SUM, self.rows, weighted.astype(np.float64))
        else:
            q = secagg.quantize(weighted, o.quantize_bits, _bound(o, plan),
                                clients=plan.sampled.size)
            if o.secure_aggregation:
                keys = _round_keys(ctx.seed, r, plan.sampled)
                q = secagg.mask(q.ravel(), keys[client],
                                {c: k.public for c, k in keys.items()}).reshape(q.shape)
            ctx.inc(SUM, self.rows, q)
        ctx.inc(REPORTED, np.array([client]), np.ones((1, 1), dtype=np.int64))
        self.counts["reports"] += 1

    # -- the server (worker 0) ------------------------------------------------------------
    def _close_round(self, r: int, plan: RoundPlan) -> None:
        ctx, o = self.ctx, self.o
        current, following = (TABLE, NEXT) if r % 2 == 0 else (NEXT, TABLE)
        total = ctx.read(SUM, self.rows)
        flags = ctx.read(REPORTED, plan.sampled)[:, 0]
        reported = plan.sampled[flags > 0]
        ctx.inc(SUM, self.rows, -total)
        ctx.inc(REPORTED, plan.sampled, -flags[:, None])
        base = ctx.read(current, self.rows)
        # secure aggregation needs a threshold of survivors' shares (a majority) to unmask
        needed = max(o.min_clients, _threshold(plan) if o.secure_aggregation else 0)
        if reported.size < needed:
            self.counts["skipped_rounds"] += 1
            new = base
        else:
            average = self._average(r, plan, total, reported)
            new = self._server_step(base, average)
        new = np.asarray(new, dtype=base.dtype)
        ctx.inc(following, self.rows, new)
        ctx.inc(current, self.rows, -base)
        if o.on_round is not None:
            o.on_round(r + 1, new)

    def _average(self, r: int, plan: RoundPlan, total: np.ndarray,
                 reported: np.ndarray) -> np.ndarray:
        o = self.o
        if o.quantize_bits is not None:
            if o.secure_aggregation:
                total = _unmask(self.ctx.seed, r, plan, total, reported)
            total = secagg.dequantize(total, o.quantize_bits)
        got = int(self.sizes[reported].sum())
        if got == plan.expected_examples:
            return total
        return total * (plan.expected_examples / got)  # re-weight to those who reported

    def _server_step(self, base: np.ndarray, average: np.ndarray) -> np.ndarray:
        o = self.o
        if o.server_lr == 1.0 and o.server_momentum == 0.0:
            return average  # FedAvg: the average itself, no rounding
        step = average - base
        if o.server_momentum:
            self.velocity = step if self.velocity is None else \
                o.server_momentum * self.velocity + step
            step = self.velocity
        return base + o.server_lr * step

    # -- snapshots ------------------------------------------------------------------------
    def _save(self) -> None:
        state = {f"client{c}_{k}": v for c, p in self.group.members
                 for k, v in p.state().items()}
        if self.velocity is not None:
            state["velocity"] = self.velocity
        state.update({k: np.array([v]) for k, v in self.counts.items()})
        self.ctx.save_state(state)

    def _restore(self) -> None:
        state = self.ctx.load_state()
        if state is None:
            return
        for c, p in self.group.members:
            prefix = f"client{c}_"
            p.load_state({k[len(prefix):]: v for k, v in state.items()
                          if k.startswith(prefix)})
        self.velocity = state.get("velocity")
        for k in self.counts:
            self.counts[k] = int(state[k][0])


def _bound(o: FedAvgOptions, plan: RoundPlan) -> float:
    """The largest weighted value a client may add so that the round's fixed-point sum
    cannot overflow."""
    return 2.0 ** (62 - o.quantize_bits) / plan.sampled.size


def _threshold(plan: RoundPlan) -> int:
    """Shares needed to reconstruct a client's secrets: a majority of the round."""
    return plan.sampled.size // 2 + 1


def _round_keys(seed: int, r: int, sampled: np.ndarray) -> dict[int, secagg.ClientKeys]:
    """Every sampled client's keys for round ``r`` (the simulation derives them from the
    job's seed; a deployment generates them on the client and advertises the public
    halves through the server)."""
    return {int(c): secagg.client_keys(int(c), np.random.default_rng([seed, 4391, r, int(c)]))
            for c in sampled}


def _unmask(seed: int, r: int, plan: RoundPlan, masked_sum: np.ndarray,
            reported: np.ndarray) -> np.ndarray:
    """The exact sum of the reporting clients' quantised updates from their masked sum:
    the Shamir shares each sampled client dealt to the others are collected from the
    survivors (below threshold the round cannot be unmasked: an error)."""
    keys = _round_keys(seed, r, plan.sampled)
    participants = [int(c) for c in plan.sampled]
    threshold = _threshold(plan)
    survivors = {int(c) for c in reported}
    dropped = [c for c in participants if c not in survivors]

    def held_by_survivors(client: int, secret: int, tag: int) -> dict[int, int]:
        holders = participants  # every participant, the dealer too (Bonawitz et al.)
        shares = secagg.share(secret, holders, threshold,
                              np.random.default_rng([seed, 4391, r, client, tag]))
        return {h: s for h, s in shares.items() if h in survivors}

    key_shares = {c: held_by_survivors(c, keys[c].secret, 1) for c in dropped}
    seed_shares = {c: held_by_survivors(c, keys[c].self_seed, 2) for c in survivors}
    aggregator = secagg.SecureAggregator({c: k.public for c, k in keys.items()},
                                         {c: k.self_commit for c, k in keys.items()},
                                         threshold)
    flat = aggregator.unmask(masked_sum.ravel(), survivors, key_shares, seed_shares)
    return flat.reshape(masked_sum.shape)
