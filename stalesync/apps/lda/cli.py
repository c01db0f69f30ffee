"""``stalesync lda``: train a topic model, print its topics, write the run record."""

from __future__ import annotations

import argparse
import sys

from ...cli import add_job_options, write_outputs
from ...faults import Stragglers
from ...job import run_control_options


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "lda",
        help="LDA topic model by collapsed Gibbs sampling (F+LDA sampler)",
        description="Train LDA on a corpus: a built-in dataset (nyt, reuters, clothing) or a "
        "file: UCI docword, LDA-C, libsvm-style, raw text (one doc per line) or a directory "
        "of .txt files.",
    )
    p.add_argument("--data", required=True, help="dataset name or path")
    p.add_argument("--format", default="auto", help="uci, ldac, libsvm, text or auto")
    p.add_argument("--topics", type=int, default=100, help="number of topics K")
    p.add_argument("--iterations", type=int, default=100, help="full sweeps over the corpus")
    p.add_argument("--alpha", type=float, default=0.1, help="doc-topic prior (per topic)")
    p.add_argument("--beta", type=float, default=0.01, help="topic-word prior (per word)")
    p.add_argument(
        "--docs-per-clock",
        type=float,
        default=0.1,
        help="share of each worker's documents sampled between clocks",
    )
    p.add_argument(
        "--heldout",
        type=float,
        default=0.0,
        help="hold out this share of documents; report held-out log-likelihood",
    )
    p.add_argument("--top-words", type=int, default=10, help="words printed per topic")
    p.add_argument("--show-topics", type=int, default=20, help="topics printed (0: none)")
    p.add_argument("--save-model", default=None, help="write the model (npz + JSON) here")
    add_job_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ...data.readers import load_corpus
    from .model import LDA

    corpus = load_corpus(args.data, format=args.format)
    heldout = None
    if args.heldout:
        corpus, heldout = corpus.split(args.heldout, seed=args.seed)
    print(
        f"corpus: {corpus.num_docs} documents, {corpus.num_words} words, "
        f"{corpus.num_tokens} tokens",
        file=sys.stderr,
    )
    model = LDA(
        n_topics=args.topics,
        alpha=args.alpha,
        beta=args.beta,
        iterations=args.iterations,
        workers=args.workers,
        runtime=args.runtime,
        consistency=args.consistency,
        staleness=args.staleness,
        shards=args.shards,
        docs_per_clock=args.docs_per_clock,
        stragglers=Stragglers.parse(args.stragglers, seed=args.seed),
        seed=args.seed,
        progress=not args.no_progress,
        **run_control_options(args),
    )
    model.fit(corpus)
    record = model.run_record_
    if heldout is not None:
        record["final"]["heldout_loglik_per_token"] = model.heldout_loglik(heldout, seed=args.seed)
    for i, words in enumerate(model.top_words(args.top_words)[: args.show_topics]):
        print(f"topic {i:3d}: {' '.join(words)}")
    final = record["final"]
    print(
        f"log-likelihood per token {final['loglik_per_token']:.4f}, "
        f"{final['tokens_per_s']:.3g} tokens/s, {record['wall_time_s']:.1f} s, "
        f"{record['workers']} workers, {record['consistency']}"
    )
    if "heldout_loglik_per_token" in final:
        print(f"held-out log-likelihood per token {final['heldout_loglik_per_token']:.4f}")
    write_outputs(record, args)
    if args.save_model:
        print(f"model saved to {model.save(args.save_model)}")
    return 0
