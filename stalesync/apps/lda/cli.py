"""``stalesync lda``: train a topic model, print its topics, write the run record."""

from __future__ import annotations

# Imports inside functions: a command loads its estimator, kernels and readers only when
# it runs, so that `stalesync --help` and the other commands do not pay for them.
import argparse
import sys
from typing import Any

from ..command import AppCommand, Flags


class LDACommand(AppCommand):
    name = "lda"
    help = "LDA topic model by collapsed Gibbs sampling (dense or F+LDA sampler)"
    description = ("Train LDA on a corpus: a built-in dataset (nyt, reuters, clothing) or a "
                   "file: UCI docword, LDA-C, libsvm-style, raw text (one doc per line) or a "
                   "directory of .txt files.")
    parameter_server = True
    epochs_default = 100
    epochs_help = "full Gibbs sweeps over the corpus"
    data_help = "dataset name (nyt, reuters, clothing) or path"

    def add_data_arguments(self, flags: Flags) -> None:
        flags.add("data", "--data", required=True, help=self.data_help)
        flags.add("data", "--format", default="auto", help="uci, ldac, libsvm, text or auto")

    def add_model_arguments(self, flags: Flags) -> None:
        flags.add("model", "--topics", dest="n_topics", type=int, default=100,
                  help="number of topics K")
        flags.add("model", "--alpha", type=float, default=0.1, help="doc-topic prior (per topic)")
        flags.add("model", "--beta", type=float, default=0.01, help="topic-word prior (per word)")
        flags.add("model", "--docs-per-clock", type=float, default=0.1,
                  help="share of each worker's documents sampled between clocks")
        flags.add("model", "--sampler", default="auto", choices=("auto", "dense", "sparse"),
                  help="exact Gibbs kernel: dense (small K, long documents), sparse (F+LDA, "
                       "large K) or auto (by K and document length)")
        flags.add("model", "--storage", default="auto", choices=("auto", "dense", "sparse"),
                  help="how the shards hold the word-topic table: dense, sparse rows, or auto "
                       "(sparse above 256 MB dense)")
        flags.add("output", "--top-words", type=int, default=10, help="words printed per topic")
        flags.add("output", "--show-topics", type=int, default=20,
                  help="topics printed (0: none)")

    def make_estimator(self, args: argparse.Namespace) -> Any:
        from .model import LDA

        return LDA(n_topics=args.n_topics, alpha=args.alpha, beta=args.beta,
                   epochs=args.epochs, workers=args.workers, consistency=args.consistency,
                   staleness=args.staleness, docs_per_clock=args.docs_per_clock,
                   sampler=args.sampler, storage=args.storage, seed=args.seed)

    def check_args(self, args: argparse.Namespace) -> None:
        from ..base import check_int

        check_int(args.top_words, "top_words", 1)
        check_int(args.show_topics, "show_topics", 0)

    def load(self, args: argparse.Namespace) -> tuple[Any, Any]:
        from ...data.load import load_corpus

        corpus = load_corpus(args.data, format=args.format)
        test = None
        if args.test is not None:
            test = load_corpus(args.test, format=args.format)
        elif args.test_fraction:
            corpus, test = corpus.split(args.test_fraction, seed=args.seed)
        print(f"corpus: {corpus.num_docs} documents, {corpus.num_words} words, "
              f"{corpus.num_tokens} tokens", file=sys.stderr)
        return corpus, test

    def summarize(self, model: Any, train: Any, test: Any,
                  args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
        lines, final = [], {}
        shown = min(args.show_topics, model.n_topics)
        if shown:
            lines.append(f"top {args.top_words} words of {shown} of {model.n_topics} topics "
                         "(--show-topics):")
            for i, words in enumerate(model.top_words(args.top_words)[:shown]):
                lines.append(f"topic {i:3d}: {' '.join(words)}")
        f = model.run_record_["final"]
        record = model.run_record_
        lines.append(
            f"log-likelihood per token {f['loglik_per_token']:.4f} after {model.epochs} "
            f"sweeps, {f['tokens_per_s']:.3g} tokens/s, {record['wall_time_s']:.1f} s, "
            f"{record['workers']} workers, {record['consistency']}")
        if test is not None:
            final["test_loglik_per_token"] = model.heldout_loglik(test, seed=args.seed)
            lines.append(f"held-out log-likelihood per token "
                         f"{final['test_loglik_per_token']:.4f} ({test.num_docs} documents)")
        return lines, final


COMMAND = LDACommand()
