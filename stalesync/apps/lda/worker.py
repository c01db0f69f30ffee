"""LDA's worker program on the parameter server (data-parallel collapsed Gibbs sampling).

Tables: ``word_topic`` (V x K int32) and ``topic_total`` (1 x K int64). Each worker owns a
contiguous range of documents with their topic assignments and sparse doc-topic counts. Per
clock it reads the rows of the words its documents use, samples one chunk of its documents
against a local copy (its own changes applied at once), and adds the count changes it made.
Tokens are kept in word-major order inside each chunk, as the F+LDA sampler wants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import scipy.sparse as sp

from ...data.corpus import Corpus
from ...errors import ConfigError
from ...kernels import lda as k
from ...kernels.lda_dense import sweep_dense
from ...kernels.lda_sparse_rows import sweep_rows
from ...kernels.rows import row_deltas
from ...ps.row_batch import SparseRows, concat

WORD_TOPIC = "word_topic"
TOPIC_TOTAL = "topic_total"

# Both exact; "sparse" is F+LDA (O(K_d + log K) per token), "dense" costs O(K) per token
# with a branch-free inner loop (see choose_sampler for which wins where).
SAMPLERS = {"sparse": k.sweep, "dense": sweep_dense}

# a sparse word-topic table: a chunk's rows are expanded to dense rows this many bytes at a
# time (at K = 10,000 a chunk's rows as one dense array would take gigabytes)
ROW_BLOCK_BYTES = 32 * 2**20


@dataclass(frozen=True)
class Hyper:
    num_topics: int
    num_words: int
    alpha: float
    beta: float
    docs_per_clock: float
    eval_every: int
    total_tokens: int
    sampler: str  # a key of SAMPLERS
    sparse_rows: bool = False  # read and increment word_topic as SparseRows batches


@dataclass
class Partition:
    """One worker's documents and sampler state.

    Documents are cut into chunks, one chunk sampled per clock. Token arrays (``tok_row``,
    ``tok_doc``, ``z``) are in *sampling order*: chunk by chunk, sorted by word inside a chunk,
    as the F+LDA sampler wants. ``tok_row`` indexes the chunk's own rows
    ``rows[chunk_rows[chunk_row_ptr[c]:chunk_row_ptr[c + 1]]]``, so a clock reads and writes
    only the table rows of the words its chunk uses. ``order[i]`` is the document-order
    position of sampling-order token ``i``.
    """

    doc_len: np.ndarray  # tokens per local document
    rows: np.ndarray  # global word ids of the local vocabulary
    tok_row: np.ndarray  # row of the token's word within its chunk's rows
    tok_doc: np.ndarray  # local document id
    tok_base: np.ndarray  # start of the token's document region in ``lists``
    z: np.ndarray  # topic
    order: np.ndarray
    chunk_ptr: np.ndarray  # token offsets of the chunks
    chunk_rows: np.ndarray  # local word ids used by each chunk, concatenated
    chunk_row_ptr: np.ndarray
    region: np.ndarray  # sparse doc-topic lists: see kernels.lda.build_doc_lists
    lists: np.ndarray
    num_topics: int

    @classmethod
    def create(
        cls, corpus: Corpus, num_topics: int, docs_per_clock: float, rng: np.random.Generator
    ) -> Partition:
        rows, local = np.unique(corpus.words, return_inverse=True)
        doc_len = corpus.doc_lengths.astype(np.int64)
        tok_doc = np.repeat(np.arange(corpus.num_docs, dtype=np.int32), doc_len)
        chunks = clocks_per_sweep(docs_per_clock)
        chunk_docs = np.arange(chunks + 1) * corpus.num_docs // chunks
        chunk_ptr = corpus.doc_ptr[chunk_docs]
        chunk_of_token = np.repeat(np.arange(chunk_ptr.size - 1), np.diff(chunk_ptr))
        order = np.lexsort((local, chunk_of_token))  # chunk-major, then word
        words, chunks = local[order], chunk_of_token[order]
        first = np.ones(words.size, dtype=bool)  # a partition may hold no tokens
        first[1:] = (words[1:] != words[:-1]) | (chunks[1:] != chunks[:-1])
        run = np.cumsum(first) - 1  # global index of the token's (chunk, word) run
        run_chunk = chunks[first]
        chunk_row_ptr = np.searchsorted(run_chunk, np.arange(chunk_ptr.size))
        tok_row = (run - chunk_row_ptr[chunks]).astype(np.int32)
        z = rng.integers(0, num_topics, size=corpus.num_tokens, dtype=np.int32)
        tok_doc = tok_doc[order]
        region, lists = k.build_doc_lists(tok_doc, z, corpus.num_docs, doc_len, num_topics)
        return cls(
            doc_len,
            rows.astype(np.int64),
            tok_row,
            tok_doc,
            region[tok_doc],
            z,
            order,
            chunk_ptr,
            words[first].astype(np.int64),
            chunk_row_ptr,
            region,
            lists,
            num_topics,
        )

    @property
    def num_docs(self) -> int:
        return self.doc_len.size

    @property
    def num_chunks(self) -> int:
        return self.chunk_ptr.size - 1

    def chunk_table_rows(self, chunk: int) -> np.ndarray:
        """Global word ids (table rows) that chunk ``chunk`` samples."""
        return self.rows[self.chunk_rows[self.chunk_row_ptr[chunk] : self.chunk_row_ptr[chunk + 1]]]

    def z_in_doc_order(self) -> np.ndarray:
        z = np.empty_like(self.z)
        z[self.order] = self.z
        return z

    def word_topic(self, num_words: int, num_topics: int) -> np.ndarray:
        """Word-topic counts (V x K) implied by this partition's assignments."""
        wt = np.zeros((num_words, num_topics), dtype=np.int32)
        np.add.at(wt, (self.token_words(), self.z), 1)
        return wt

    def word_topic_sparse(self, num_words: int, num_topics: int) -> sp.csr_matrix:
        """:meth:`word_topic` as a CSR matrix: O(tokens), never O(V x K)."""
        ones = np.ones(self.z.size, dtype=np.int32)
        wt = sp.csr_matrix((ones, (self.token_words(), self.z)),
                           shape=(num_words, num_topics), dtype=np.int32)
        wt.sum_duplicates()
        return wt

    def token_words(self) -> np.ndarray:
        """The global word id of every token (sampling order)."""
        chunk_of_token = np.repeat(np.arange(self.num_chunks), np.diff(self.chunk_ptr))
        return self.rows[self.chunk_rows[self.chunk_row_ptr[chunk_of_token] + self.tok_row]]

    def doc_topic(self, num_topics: int) -> np.ndarray:
        """Dense doc-topic counts (docs x K), recomputed from ``z``."""
        dt = np.zeros((self.num_docs, num_topics), dtype=np.int32)
        np.add.at(dt, (self.tok_doc, self.z), 1)
        return dt

    def doc_topic_sparse(self, num_topics: int) -> sp.csr_matrix:
        """Doc-topic counts (docs x K) as a sparse matrix (at most one entry per token)."""
        ones = np.ones(self.z.size, dtype=np.int32)
        return sp.csr_matrix((ones, (self.tok_doc, self.z)),
                             shape=(self.num_docs, num_topics))

    def restore(self, z: np.ndarray) -> None:
        """Take over assignments ``z`` (sampling order) from a snapshot; rebuild doc lists."""
        if z.shape != self.z.shape:
            raise ConfigError(
                f"LDA snapshot holds {z.size} topic assignments, this partition has "
                f"{self.z.size}: resume with the same corpus and workers"
            )
        self.z[:] = z
        self.region, self.lists = k.build_doc_lists(
            self.tok_doc, self.z, self.num_docs, self.doc_len, self.num_topics
        )

    def doc_loglik(self, num_topics: int, alpha: float) -> float:
        return k.doc_loglik(self.region, self.lists, self.doc_len, num_topics, alpha)


DENSE_CROSSOVER = 7.5  # the dense sampler while K <= this x the mean document length
DENSE_MAX_BYTES = 256 * 2**20  # ... and its chunk's dense doc-topic rows fit in this


def choose_sampler(num_topics: int, mean_doc_len: float, docs_per_chunk: float = 0) -> str:
    """The faster exact sampler for K topics and documents of this mean length.

    F+LDA's per-token cost grows with the topics a document uses (at most its length), the
    dense sampler's with K. Measured one worker after 25 burn-in sweeps, tokens/s dense /
    sparse: clothing reviews (26 tokens a document) 1.50 / 1.32 / 0.97 / 0.61 at K = 50 / 100
    / 200 / 400; NYT (145) 1.93 / 1.52 / 1.04 / 0.69 at K = 100 / 300 / 1,000 / 2,000; NYT
    with six articles joined (870) 2.52 / 2.89 / 2.28 / 2.08 at K = 100 / 300 / 1,000 /
    2,000. The crossover sits near K = 7.5 x the mean document length. The dense sampler
    expands a chunk's documents to K-wide int32 rows, so it is not chosen when those would
    pass DENSE_MAX_BYTES (``docs_per_chunk``: documents a worker samples per clock).
    """
    if docs_per_chunk * num_topics * 4 > DENSE_MAX_BYTES:
        return "sparse"
    return "dense" if num_topics <= DENSE_CROSSOVER * mean_doc_len else "sparse"


def clocks_per_sweep(docs_per_clock: float) -> int:
    """Chunks per partition: every worker sweeps all its documents in this many clocks."""
    return max(1, round(1.0 / docs_per_clock))


def clock_seed(seed: int, worker: int, clock: int) -> int:
    """A seed for the compiled generator at one worker's clock."""
    return int(np.random.SeedSequence([seed, worker, clock]).generate_state(1)[0] >> 1)


def make_worker(h: Hyper):
    """The ``worker(ctx)`` function for a job with hyper-parameters ``h``."""
    sample_chunk = chunk_sampler(h)

    def worker(ctx) -> Partition:
        part: Partition = ctx.data
        restored = ctx.load_state()
        if restored is not None:  # resuming from a snapshot: its assignments, not ours
            part.restore(restored["z"])
        ctx.save_state({"z": part.z})  # what a snapshot stores for this worker
        while ctx.clock_count < ctx.iterations:
            it = ctx.clock_count
            # the sampler's random stream starts from (seed, worker, clock): a run resumed
            # from a snapshot draws exactly what the uninterrupted run drew
            rng = k.generator(clock_seed(ctx.seed, ctx.worker_id, it))
            chunk = it % part.num_chunks
            rows = part.chunk_table_rows(chunk)
            wt0 = ctx.read(WORD_TOPIC, rows, sparse=h.sparse_rows)
            nk0 = ctx.read(TOPIC_TOTAL, 0)
            nk = nk0.copy()
            changed, delta = sample_chunk(part, chunk, wt0, nk, h, rng)
            ctx.inc(WORD_TOPIC, rows[changed], delta)
            ctx.inc(TOPIC_TOTAL, [0], (nk - nk0)[None, :])
            evaluate = (it + 1) % h.eval_every == 0 or it + 1 == ctx.iterations
            ctx.clock(objective=loglik_share(ctx, part, h) if evaluate else None)
        return part

    return worker


ChunkSampler = Callable[[Partition, int, Any, np.ndarray, Hyper, np.ndarray],
                        tuple[np.ndarray, Any]]


def chunk_sampler(h: Hyper) -> ChunkSampler:
    """How a clock samples its chunk, by sampler and table storage: F+LDA on the CSR rows
    themselves (sparse rows, ``sparse`` sampler), a sampler on blocks of rows expanded to
    dense (sparse rows otherwise), or a sampler on the dense rows. Each returns (changed
    positions in the chunk's rows, their increments), sampling ``nk`` in place."""
    if h.sparse_rows and h.sampler == "sparse":
        return sample_csr_rows
    if h.sparse_rows:
        return partial(sample_row_blocks, SAMPLERS[h.sampler])
    return partial(sample_dense_rows, SAMPLERS[h.sampler])


def sample_dense_rows(sample, part: Partition, chunk: int, wt0: np.ndarray, nk: np.ndarray,
                      h: Hyper, rng: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``chunk`` against its dense rows; the change is taken as a dense diff
    (measured against SparseRows.diff at K = 50-1,000 on NYT, the CSR change was 7-23%
    slower at K = 50-100 and within 2% at K = 1,000)."""
    wt = wt0.copy()
    sample(part.tok_row, part.tok_doc, part.tok_base, part.z, part.chunk_ptr[chunk],
           part.chunk_ptr[chunk + 1], part.lists, wt, nk, h.alpha, h.beta,
           h.num_words * h.beta, rng)
    return row_deltas(wt, wt0)


def sample_csr_rows(part: Partition, chunk: int, wt0: SparseRows, nk: np.ndarray, h: Hyper,
                    rng: np.ndarray) -> tuple[np.ndarray, SparseRows]:
    """Sample ``chunk`` with F+LDA on CSR rows (:mod:`stalesync.kernels.lda_sparse_rows`,
    O(K_w) per word instead of O(K)); returns (changed positions in the batch, their
    increments)."""
    indptr, cols, vals = sweep_rows(
        part.tok_row, part.tok_doc, part.tok_base, part.z, part.chunk_ptr[chunk],
        part.chunk_ptr[chunk + 1], part.lists, wt0.indptr, wt0.cols, wt0.vals, nk,
        h.alpha, h.beta, h.num_words * h.beta, h.num_topics, rng)
    changed = np.flatnonzero(np.diff(indptr))
    return changed, SparseRows(indptr, cols, vals, h.num_topics).take(changed)


def sample_row_blocks(sample, part: Partition, chunk: int, wt0: SparseRows, nk: np.ndarray,
                      h: Hyper, rng: np.ndarray) -> tuple[np.ndarray, SparseRows]:
    """Sample ``chunk`` against its rows given as a CSR batch, a block of rows at a time
    expanded to dense rows; returns (changed positions in the batch, their increments).

    Tokens are word-major, so a block of rows is a contiguous range of tokens: the blocks
    draw exactly what one call on all the rows would (same tokens, same order, one
    generator stream), with O(ROW_BLOCK_BYTES) memory instead of O(rows x K)."""
    lo, hi = int(part.chunk_ptr[chunk]), int(part.chunk_ptr[chunk + 1])
    n = len(wt0)
    step = max(1, ROW_BLOCK_BYTES // (4 * h.num_topics))
    starts = np.arange(0, n, step)
    bounds = lo + np.searchsorted(part.tok_row[lo:hi], np.r_[starts, n])
    changed, deltas = [], []
    for r0, t0, t1 in zip(starts, bounds[:-1], bounds[1:], strict=True):
        block = wt0.take(slice(r0, min(n, r0 + step))).to_dense()
        before = block.copy()
        sample((part.tok_row[t0:t1] - r0).astype(np.int32), part.tok_doc[t0:t1],
               part.tok_base[t0:t1], part.z[t0:t1], 0, t1 - t0, part.lists, block, nk,
               h.alpha, h.beta, h.num_words * h.beta, rng)
        rows, delta = SparseRows.diff(block, before)
        changed.append(rows + r0)
        deltas.append(delta)
    return (np.concatenate(changed) if changed else np.zeros(0, dtype=np.int64),
            concat(deltas, h.num_topics, np.int32))


def loglik_share(ctx, part: Partition, h: Hyper) -> float:
    """This worker's share of log p(w, z) / N, from its current (possibly stale) view.

    Docs part over its own documents; word part over rows ``w, w + P, ...`` of the table;
    worker 0 adds the topic-totals part. The shares of all workers add up to the total.
    """
    total = part.doc_loglik(h.num_topics, h.alpha)
    mine = np.arange(ctx.worker_id, h.num_words, ctx.num_workers)
    if mine.size and h.sparse_rows:  # the non-zeros are all the sum needs
        total += k.word_loglik_rows(ctx.read(WORD_TOPIC, mine, sparse=True).vals[None], h.beta)
    elif mine.size:
        total += k.word_loglik_rows(ctx.read(WORD_TOPIC, mine), h.beta)
    if ctx.worker_id == 0:
        total += k.topic_loglik(ctx.read(TOPIC_TOTAL, 0), h.num_words, h.beta)
    return total / h.total_tokens


def joint_loglik(
    word_topic: np.ndarray,
    topic_total: np.ndarray,
    parts: list[Partition],
    alpha: float,
    beta: float,
) -> float:
    """Exact log p(w, z) of a state (all workers' assignments); not per token."""
    if sp.issparse(word_topic):  # the non-zeros are all the sum needs
        total = k.word_loglik_rows(sp.csr_matrix(word_topic).data[None], beta)
    else:
        total = k.word_loglik_rows(word_topic, beta)
    total += k.topic_loglik(topic_total, word_topic.shape[0], beta)
    for p in parts:
        total += p.doc_loglik(word_topic.shape[1], alpha)
    return total
