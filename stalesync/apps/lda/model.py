"""``LDA``: a scikit-learn-style estimator over the parameter-server LDA program."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import TransformerMixin
from sklearn.utils.validation import validate_data

from ... import job
from ...data.corpus import Corpus
from ...errors import ConfigError, DataFormatError
from ...kernels import lda as k
from ...ps.tables import STORAGES, TableSpec
from ..base import (
    RunConfig,
    StalesyncEstimator,
    check_choice,
    check_consistency,
    check_float,
    check_int,
)
from ..progress import Progress
from ..workers import AUTO, Work, decide, timed
from .worker import (
    SAMPLERS,
    TOPIC_TOTAL,
    WORD_TOPIC,
    Hyper,
    Partition,
    choose_sampler,
    clocks_per_sweep,
    joint_loglik,
    make_worker,
)

PROBE_TOKENS = 50_000  # workers="auto" times one sweep over this many tokens
PROBE_MAX_TOPICS = 1000  # ... at no more topics than this (a dense K-wide row per word)


def integer_counts(X: Any) -> Any:
    """``X`` with fractional counts rounded to the nearest integer, with a warning saying
    how many (the sampler draws one topic per token, so a count must be whole)."""
    values = X.data if sp.issparse(X) else np.asarray(X)
    if values.dtype.kind != "f":
        return X
    rounded = np.rint(values)
    changed = int(np.count_nonzero(rounded != values))
    if not changed:
        return X
    warnings.warn(f"LDA: {changed} of {values.size} counts were not whole numbers and were "
                  "rounded to the nearest integer (one topic is sampled per token)",
                  UserWarning, stacklevel=4)
    if sp.issparse(X):
        out = X.copy()
        out.data = rounded
        out.eliminate_zeros()
        return out
    return rounded


class LDA(TransformerMixin, StalesyncEstimator):
    """Latent Dirichlet allocation by collapsed Gibbs sampling on the parameter server.

    ``alpha`` is the doc-topic prior per topic, ``beta`` the topic-word prior per word.
    Sampling is exact, by one of two kernels (``sampler``): ``"sparse"`` (F+LDA: a Fenwick
    tree over the word's topics and sparse doc-topic lists, O(K_d + log K) per token, for
    large K) or ``"dense"`` (all K topics from dense counts, O(K) per token but branch-free,
    for small K or long documents); ``"auto"`` picks by the measured crossover
    (:func:`~stalesync.apps.lda.worker.choose_sampler`). ``epochs`` full sweeps over the
    corpus are made; each worker sweeps its share ``docs_per_clock`` of its documents
    between two clocks (so a sweep is
    ``1 / docs_per_clock`` clocks). ``workers``, ``consistency`` and ``staleness`` are the
    parameter server's; ``storage`` is how the word-topic table is held
    (:class:`~stalesync.ps.tables.TableSpec`: ``"auto"`` makes it sparse rows once the dense
    table would pass 256 MB). Sparse rows are sparse everywhere (shards, worker caches,
    the sampler), so K = 10,000 fits in memory; ``word_topic_`` is then a CSR matrix. Where
    and how the fit runs (Ray, snapshots, progress) is ``fit(X, run=RunConfig(...))``.

    ``X`` is a :class:`~stalesync.data.corpus.Corpus` or a documents x words matrix of
    non-negative counts (dense or scipy sparse; fractional counts are rounded to the
    nearest integer, with a warning).
    """

    _fitted_attributes = ("word_topic_", "topic_total_", "n_features_in_")
    _model_arrays = ("word_topic_", "topic_total_", "doc_topic_counts_")
    _model_info = ("n_features_in_", "vocab_", "loglik_per_token_")

    def __init__(
        self,
        n_topics: int = 100,
        alpha: float = 0.1,
        beta: float = 0.01,
        epochs: int = 100,
        workers: int | str = "auto",
        consistency: str = "ssp",
        staleness: int | None = 1,
        docs_per_clock: float = 0.1,
        eval_every: int | None = None,
        sampler: str = "auto",
        storage: str = "auto",
        seed: int = 0,
    ):
        self.n_topics = n_topics
        self.alpha = alpha
        self.beta = beta
        self.epochs = epochs
        self.workers = workers
        self.consistency = consistency
        self.staleness = staleness
        self.docs_per_clock = docs_per_clock
        self.eval_every = eval_every
        self.sampler = sampler
        self.storage = storage
        self.seed = seed

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags

    # -- validation ---------------------------------------------------------------------
    def _check_own_params(self) -> None:
        check_int(self.n_topics, "n_topics", 1)
        if self.eval_every is not None:
            check_int(self.eval_every, "eval_every", 1)
        check_float(self.alpha, "alpha", 0, low_open=True)
        check_float(self.beta, "beta", 0, low_open=True)
        check_float(self.docs_per_clock, "docs_per_clock", 0, 1, low_open=True)
        check_choice(self.sampler, "sampler", ("auto", *SAMPLERS))
        check_choice(self.storage, "storage", STORAGES)
        check_consistency(self.consistency, self.staleness)

    def _corpus(self, X: Any, reset: bool) -> Corpus:
        """``X`` as a Corpus, validated; sets (``reset``) or checks ``n_features_in_``."""
        if isinstance(X, Corpus):
            corpus = X
        else:
            X = validate_data(self, X, reset=reset, accept_sparse="csr",
                              ensure_non_negative=True, dtype="numeric")
            corpus = Corpus.from_doc_term(integer_counts(X))
        if reset:
            self.n_features_in_ = corpus.num_words
        elif corpus.num_words > self.n_features_in_:
            raise DataFormatError(
                f"documents use a vocabulary of {corpus.num_words} words, but the model "
                f"knows {self.n_features_in_}")
        return corpus

    # -- training -----------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, *, run: RunConfig | dict | None = None) -> LDA:
        """Train on ``X`` (Corpus or doc-term count matrix); ``run``: where and how."""
        self._check_params()
        run = RunConfig.coerce(run)
        corpus = self._corpus(X, reset=True)
        if corpus.num_tokens == 0:
            raise DataFormatError("LDA: the corpus has no tokens")
        if self.workers != AUTO and corpus.num_docs < self.workers:
            raise ConfigError(
                f"{corpus.num_docs} documents cannot be split over {self.workers} workers",
                param="workers")
        K, V = self.n_topics, corpus.num_words
        chunks = clocks_per_sweep(self.docs_per_clock)
        word_topic_spec = TableSpec(WORD_TOPIC, V, K, "int32", storage=self.storage)
        decision = decide(self.workers, lambda: Work(
            self._probe(corpus) * corpus.num_tokens * self.epochs, self.epochs * chunks,
            max_workers=corpus.num_docs), resume=run.resume)
        workers = decision.workers
        rng = np.random.default_rng(self.seed)
        parts = [
            Partition.create(c, K, self.docs_per_clock, rng) for c in corpus.partition(workers)
        ]
        if word_topic_spec.sparse:  # never the dense V x K form (at K = 10,000: gigabytes)
            word_topic = sum(p.word_topic_sparse(V, K) for p in parts).tocsr()
        else:
            word_topic = sum(p.word_topic(V, K) for p in parts)
        clocks = self.epochs * chunks
        docs_per_chunk = max(p.num_docs for p in parts) / chunks
        sampler = (choose_sampler(K, corpus.num_tokens / corpus.num_docs, docs_per_chunk)
                   if self.sampler == "auto" else self.sampler)
        hyper = Hyper(K, V, float(self.alpha), float(self.beta), float(self.docs_per_clock),
                      self.eval_every or chunks, corpus.num_tokens, sampler,
                      sparse_rows=word_topic_spec.sparse)
        progress = Progress(desc="lda", epochs=self.epochs, clocks_per_epoch=chunks,
                            workers=workers, enabled=run.progress,
                            objective="loglik/token", reduce="sum",
                            items_per_epoch=corpus.num_tokens, items="tokens", unit="sweep")
        start = time.perf_counter()
        with progress:
            result = job.run(
                make_worker(hyper),
                [word_topic_spec, TableSpec(TOPIC_TOTAL, 1, K, "int64")],
                data=parts, workers=workers, consistency=self.consistency,
                staleness=None if self.consistency in ("bsp", "async") else self.staleness,
                iterations=clocks, seed=self.seed, app="lda", on_clock=progress.on_clock,
                objective_reduce="sum",
                initial_tables={WORD_TOPIC: word_topic,
                                TOPIC_TOTAL: np.asarray(word_topic.sum(
                                    axis=0, dtype=np.int64)).reshape(1, K)},
                **run.job_options(self.seed),
            )
        train_s = time.perf_counter() - start
        parts = result.worker_results
        self.partitions_ = parts  # every token's topic, per worker (not saved)
        self.word_topic_ = result.tables[WORD_TOPIC]
        self.topic_total_ = result.tables[TOPIC_TOTAL][0]
        self.vocab_ = corpus.vocab
        self.doc_topic_counts_ = sp.vstack([p.doc_topic_sparse(K) for p in parts]).tocsr()
        self.loglik_ = joint_loglik(
            self.word_topic_, self.topic_total_, parts, self.alpha, self.beta
        )
        self.loglik_per_token_ = self.loglik_ / corpus.num_tokens
        record = result.record
        record["workers_decision"] = decision.as_record()
        resumed_clocks = record.get("resumed_from_clock", 0)
        swept = corpus.num_tokens * (clocks - resumed_clocks) / chunks
        record["epochs"] = self.epochs
        record["objective_name"] = "log p(w, z) per token"
        record["objective_reduce"] = "sum"
        record["final"] = {
            "loglik_per_token": self.loglik_per_token_,
            "tokens_per_s": swept / train_s,
            "sweeps": self.epochs,
            "clocks_per_sweep": chunks,
            "sampler": sampler,
            "storage": "sparse" if word_topic_spec.sparse else "dense",
            "num_topics": K,
            "num_words": V,
            "num_docs": corpus.num_docs,
            "num_tokens": corpus.num_tokens,
        }
        self._keep_record(record)
        return self

    def _probe(self, corpus: Corpus) -> float:
        """Seconds of sampling per token and sweep (for ``workers="auto"``), timed on the
        first documents of the corpus (up to PROBE_TOKENS tokens) against their own counts.
        A table too wide to probe densely is probed at PROBE_MAX_TOPICS topics with F+LDA,
        whose cost grows with the topics a document uses, not with K."""
        ends = corpus.doc_ptr[1:]
        docs = max(1, int(np.searchsorted(ends, PROBE_TOKENS, side="right")))
        sample = corpus.subset(np.arange(min(docs, corpus.num_docs)))
        K = min(self.n_topics, PROBE_MAX_TOPICS)
        part = Partition.create(sample, K, 1.0, np.random.default_rng([self.seed, 17]))
        rows = part.chunk_table_rows(0)
        wt = np.ascontiguousarray(part.word_topic_sparse(corpus.num_words, K)[rows].toarray())
        nk = wt.sum(axis=0, dtype=np.int64)
        mean_len = corpus.num_tokens / corpus.num_docs
        sampler = (choose_sampler(K, mean_len) if self.sampler == "auto" and K == self.n_topics
                   else "sparse" if self.sampler == "auto" else self.sampler)
        beta = float(self.beta)
        rng = k.generator(self.seed)

        def sweep() -> None:
            SAMPLERS[sampler](part.tok_row, part.tok_doc, part.tok_base, part.z, 0,
                              sample.num_tokens, part.lists, wt, nk, float(self.alpha), beta,
                              corpus.num_words * beta, rng)

        return timed(sweep) / max(sample.num_tokens, 1)

    # -- results ------------------------------------------------------------------------
    @property
    def components_(self) -> np.ndarray:
        """Topic-word pseudo-counts (K x V), as scikit-learn's LatentDirichletAllocation."""
        self._check_fitted()
        return self._word_topic_dense().T + self.beta

    def _word_topic_dense(self) -> np.ndarray:
        """``word_topic_`` as a dense V x K array (it is CSR when trained on sparse rows)."""
        wt = self.word_topic_
        return wt.toarray() if sp.issparse(wt) else wt

    @property
    def topic_word_(self) -> np.ndarray:
        """Topic-word probabilities phi (K x V); rows sum to 1."""
        self._check_fitted()
        return (self._word_topic_dense().T + self.beta) / (
            self.topic_total_[:, None] + self.n_features_in_ * self.beta
        )

    @property
    def doc_topic_(self) -> np.ndarray:
        """Doc-topic proportions of the training documents, from their final assignments."""
        self._check_fitted()
        dt = self.doc_topic_counts_.toarray() + self.alpha
        return dt / dt.sum(axis=1, keepdims=True)

    def top_words(self, n: int = 10) -> list[list[str]]:
        """The ``n`` most probable words of each topic (word ids as strings without vocab)."""
        self._check_fitted()
        order = np.argsort(-self._word_topic_dense().T, axis=1, kind="stable")[:, :n]
        vocab = self.vocab_
        return [[vocab[w] if vocab else str(w) for w in row] for row in order]

    def transform(
        self, X: Any, iterations: int = 50, burn_in: int = 10, seed: int | None = None
    ) -> np.ndarray:
        """Doc-topic proportions of new documents, topics fixed (Gibbs fold-in)."""
        self._check_fitted()
        corpus = self._corpus(X, reset=False)
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
        corpus = self._corpus(X, reset=False)
        observed, held = corpus.halves(seed)
        if held.num_tokens == 0:
            raise DataFormatError("held-out documents need at least 2 tokens each to be split")
        phi = self.topic_word_
        theta = k.fold_in(
            observed.doc_ptr, observed.words, phi, float(self.alpha), iterations, burn_in, seed
        )
        return k.heldout_loglik(held.doc_ptr, held.words, theta, phi) / held.num_tokens

    def score(self, X: Any, y: Any = None) -> float:
        """Held-out log-likelihood per token of ``X`` (document completion; greater is
        better), as a scikit-learn ``score``."""
        return self.heldout_loglik(X)

    def _after_load(self) -> None:
        self.vocab_ = list(self.vocab_) if self.vocab_ is not None else None
        self.n_features_in_ = int(self.n_features_in_)
