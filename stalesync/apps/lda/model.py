"""``LDA``: a scikit-learn-style estimator over the parameter-server LDA program."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ... import job
from ...data.corpus import Corpus
from ...errors import ConfigError, DataFormatError
from ...faults import Stragglers
from ...kernels import lda as k
from ...tables import TableSpec
from .worker import (
    TOPIC_TOTAL,
    WORD_TOPIC,
    Hyper,
    Partition,
    clocks_per_sweep,
    joint_loglik,
    make_worker,
)

MODEL_FORMAT = 1


def as_corpus(X: Any, num_words: int | None = None) -> Corpus:
    """Accept a Corpus, a scipy sparse / dense doc-term count matrix."""
    corpus = X if isinstance(X, Corpus) else Corpus.from_doc_term(X)
    if num_words is not None and corpus.num_words > num_words:
        raise DataFormatError(
            f"documents use a vocabulary of {corpus.num_words} words, but the model knows "
            f"{num_words}"
        )
    return corpus


class LDA(TransformerMixin, BaseEstimator):
    """Latent Dirichlet allocation by collapsed Gibbs sampling on the parameter server.

    Parameters mirror common topic-model tools (``alpha`` per topic, ``beta`` per word) plus
    the parameter-server options of :func:`stalesync.run`. Sampling is exact (F+LDA: a
    Fenwick tree over the word's topics, sparse doc-topic lists), so the cost per token grows
    with the topics a document uses and with log ``n_topics``. ``docs_per_clock`` is
    the share of each worker's documents swept between two clocks. ``snapshot_every`` clocks
    a consistent snapshot goes to ``snapshot_dir``; ``resume`` restarts from one (same corpus,
    workers and seed), and on the Ray runtime a crashed actor is recovered from the newest.
    """

    def __init__(
        self,
        n_topics: int = 100,
        alpha: float = 0.1,
        beta: float = 0.01,
        iterations: int = 100,
        workers: int = 2,
        runtime: str = "embedded",
        consistency: str = "ssp",
        staleness: int | None = 1,
        shards: int = 1,
        docs_per_clock: float = 0.1,
        eval_every: int | None = None,
        stragglers: Stragglers | None = None,
        seed: int = 0,
        progress: bool = False,
        snapshot_every: int | None = None,
        snapshot_dir: str | None = None,
        resume: str | None = None,
        address: str | None = None,
    ):
        self.n_topics = n_topics
        self.alpha = alpha
        self.beta = beta
        self.iterations = iterations
        self.workers = workers
        self.runtime = runtime
        self.consistency = consistency
        self.staleness = staleness
        self.shards = shards
        self.docs_per_clock = docs_per_clock
        self.eval_every = eval_every
        self.stragglers = stragglers
        self.seed = seed
        self.progress = progress
        self.snapshot_every = snapshot_every
        self.snapshot_dir = snapshot_dir
        self.resume = resume
        self.address = address

    # -- validation ---------------------------------------------------------------------
    def _check_params(self) -> None:
        def positive(name, value, kind=(int, np.integer)):
            if not isinstance(value, kind) or value <= 0:
                raise ConfigError(f"LDA: {name} must be positive, got {value!r}")

        positive("n_topics", self.n_topics)
        positive("iterations", self.iterations)
        positive("workers", self.workers)
        if self.eval_every is not None:
            positive("eval_every", self.eval_every)
        positive("alpha", self.alpha, (int, float))
        positive("beta", self.beta, (int, float))
        if not 0 < self.docs_per_clock <= 1:
            raise ConfigError(f"LDA: docs_per_clock must be in (0, 1], got {self.docs_per_clock}")

    # -- training -----------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, *, metrics_out: str | None = None) -> LDA:
        """Train on ``X`` (Corpus or doc-term count matrix)."""
        self._check_params()
        corpus = as_corpus(X)
        if corpus.num_tokens == 0:
            raise DataFormatError("LDA: the corpus has no tokens")
        if corpus.num_docs < self.workers:
            raise ConfigError(
                f"LDA: {corpus.num_docs} documents cannot be split over {self.workers} workers"
            )
        K, V = self.n_topics, corpus.num_words
        rng = np.random.default_rng(self.seed)
        parts = [
            Partition.create(c, K, self.docs_per_clock, rng) for c in corpus.partition(self.workers)
        ]
        word_topic = sum(p.word_topic(V, K) for p in parts)
        chunks = clocks_per_sweep(self.docs_per_clock)
        clocks = self.iterations * chunks
        eval_every = self.eval_every or chunks  # default: once per sweep
        hyper = Hyper(
            K,
            V,
            float(self.alpha),
            float(self.beta),
            float(self.docs_per_clock),
            eval_every,
            corpus.num_tokens,
        )
        progress = _Progress(
            self.iterations, chunks, self.workers, corpus.num_tokens, enabled=self.progress
        )
        start = time.perf_counter()
        try:
            result = job.run(
                make_worker(hyper),
                [TableSpec(WORD_TOPIC, V, K, "int32"), TableSpec(TOPIC_TOTAL, 1, K, "int64")],
                data=parts,
                workers=self.workers,
                runtime=self.runtime,
                consistency=self.consistency,
                staleness=None if self.consistency in ("bsp", "async") else self.staleness,
                shards=self.shards,
                iterations=clocks,
                stragglers=self.stragglers,
                seed=self.seed,
                app="lda",
                on_clock=progress.on_clock,
                **job.run_control_options(self),
                initial_tables={
                    WORD_TOPIC: word_topic,
                    TOPIC_TOTAL: word_topic.sum(axis=0, dtype=np.int64)[None],
                },
            )
        finally:
            progress.close()
        train_s = time.perf_counter() - start
        parts = result.worker_results
        self.word_topic_ = result.tables[WORD_TOPIC]
        self.topic_total_ = result.tables[TOPIC_TOTAL][0]
        self.vocab_ = corpus.vocab
        self.num_words_ = V
        self.partitions_ = parts
        self.loglik_ = joint_loglik(
            self.word_topic_, self.topic_total_, parts, self.alpha, self.beta
        )
        self.loglik_per_token_ = self.loglik_ / corpus.num_tokens
        record = result.record
        resumed_clocks = record.get("resumed_from_clock", 0)
        swept = corpus.num_tokens * (clocks - resumed_clocks) / chunks
        record["objective_name"] = "log p(w, z) per token"
        record["objective_reduce"] = "sum"
        record["final"] = {
            "loglik_per_token": self.loglik_per_token_,
            "tokens_per_s": swept / train_s,
            "sweeps": self.iterations,
            "clocks_per_sweep": chunks,
            "num_topics": K,
            "num_words": V,
            "num_docs": corpus.num_docs,
            "num_tokens": corpus.num_tokens,
        }
        self.run_record_ = record
        if metrics_out:
            job.write_run_record(record, metrics_out)
        return self

    # -- results ------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "word_topic_"):
            raise ConfigError("LDA: this model is not fitted yet; call fit() or load() first")

    @property
    def components_(self) -> np.ndarray:
        """Topic-word pseudo-counts (K x V), as scikit-learn's LatentDirichletAllocation."""
        self._check_fitted()
        return self.word_topic_.T + self.beta

    @property
    def topic_word_(self) -> np.ndarray:
        """Topic-word probabilities phi (K x V); rows sum to 1."""
        self._check_fitted()
        return (self.word_topic_.T + self.beta) / (
            self.topic_total_[:, None] + self.num_words_ * self.beta
        )

    @property
    def doc_topic_(self) -> np.ndarray:
        """Doc-topic proportions of the training documents, from their final assignments."""
        self._check_fitted()
        dt = np.concatenate([p.doc_topic(self.n_topics) for p in self.partitions_]) + self.alpha
        return dt / dt.sum(axis=1, keepdims=True)

    def top_words(self, n: int = 10) -> list[list[str]]:
        """The ``n`` most probable words of each topic (word ids as strings without vocab)."""
        self._check_fitted()
        order = np.argsort(-self.word_topic_.T, axis=1, kind="stable")[:, :n]
        vocab = self.vocab_
        return [[vocab[w] if vocab else str(w) for w in row] for row in order]

    def transform(
        self, X: Any, iterations: int = 50, burn_in: int = 10, seed: int | None = None
    ) -> np.ndarray:
        """Doc-topic proportions of new documents, topics fixed (Gibbs fold-in)."""
        self._check_fitted()
        corpus = as_corpus(X, self.num_words_)
        return k.fold_in(
            corpus.doc_ptr,
            corpus.words,
            self.topic_word_,
            float(self.alpha),
            iterations,
            burn_in,
            self.seed if seed is None else seed,
        )

    def heldout_loglik(
        self, X: Any, seed: int = 0, iterations: int = 50, burn_in: int = 10
    ) -> float:
        """Per-token held-out log-likelihood by document completion.

        Each document's tokens are split in two halves (seeded); its topic mix is estimated
        on the first half with the topics fixed, and the second half is scored under it.
        """
        self._check_fitted()
        corpus = as_corpus(X, self.num_words_)
        observed, held = corpus.halves(seed)
        if held.num_tokens == 0:
            raise DataFormatError("held-out documents need at least 2 tokens each to be split")
        phi = self.topic_word_
        theta = k.fold_in(
            observed.doc_ptr, observed.words, phi, float(self.alpha), iterations, burn_in, seed
        )
        return k.heldout_loglik(held.doc_ptr, held.words, theta, phi) / held.num_tokens

    # -- persistence (npz + JSON, atomic) --------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``model.json`` + ``arrays.npz`` into directory ``path`` (replaced atomically)."""
        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        meta = {
            "format": MODEL_FORMAT,
            "model": "lda",
            "params": self.get_params(),
            "num_words": self.num_words_,
            "vocab": self.vocab_,
            "loglik_per_token": self.loglik_per_token_,
        }
        meta["params"]["stragglers"] = None
        (tmp / "model.json").write_text(json.dumps(meta))
        np.savez(tmp / "arrays.npz", word_topic=self.word_topic_, topic_total=self.topic_total_)
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> LDA:
        """Load a model written by :meth:`save` (no pickle involved)."""
        path = Path(path)
        try:
            meta = json.loads((path / "model.json").read_text())
            arrays = np.load(path / "arrays.npz", allow_pickle=False)
        except FileNotFoundError as exc:
            raise DataFormatError(
                f"{path}: not a saved LDA model ({exc.filename} missing)"
            ) from None
        if meta.get("model") != "lda" or meta.get("format") != MODEL_FORMAT:
            raise DataFormatError(f"{path}: not an LDA model of format {MODEL_FORMAT}")
        model = cls(**meta["params"])
        model.word_topic_ = arrays["word_topic"]
        model.topic_total_ = arrays["topic_total"]
        model.num_words_ = int(meta["num_words"])
        model.vocab_ = meta["vocab"]
        model.loglik_per_token_ = meta["loglik_per_token"]
        model.partitions_ = []
        return model


class _Progress:
    """A tqdm bar in sweeps, advanced when every worker has finished a clock."""

    def __init__(
        self, sweeps: int, clocks_per_sweep: int, workers: int, tokens: int, enabled: bool
    ) -> None:
        self.workers = workers
        self.clocks_per_sweep = clocks_per_sweep
        self.tokens = tokens
        self.done: dict[int, list[float]] = {}
        self.first_sweeps: float | None = None  # where this run started (after a resume)
        self.lock = threading.Lock()
        self.start = time.perf_counter()
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=sweeps,
                desc="lda",
                unit="sweep",
                bar_format="{l_bar}{bar}| {n:.1f}/{total} [{elapsed}<{remaining}{postfix}]",
            )

    def on_clock(self, worker: int, clock: int, objective: float | None) -> None:
        if self.bar is None:
            return
        with self.lock:
            shares = self.done.setdefault(clock, [])
            shares.append(np.nan if objective is None else objective)
            if len(shares) < self.workers:
                return
            del self.done[clock]
            sweeps = (clock + 1) / self.clocks_per_sweep
            if self.first_sweeps is None:
                self.first_sweeps = clock / self.clocks_per_sweep
            elapsed = time.perf_counter() - self.start
            rate = self.tokens * (sweeps - self.first_sweeps) / elapsed
            postfix = {"tokens/s": f"{rate:.3g}"}
            if not np.isnan(shares).any():
                postfix["loglik/token"] = f"{sum(shares):.4f}"
                self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(sweeps - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
