"""LDA on short and long documents: stalesync next to tomotopy (and gensim), in one run.

Corpora: ``nyt`` (8,447 NYT articles, 145 tokens each on average), ``nyt-long`` (the same
tokens, every six consecutive articles joined: 1,407 documents of ~870 tokens) and
``clothing`` (22,641 reviews of ~60 tokens). For each K (same alpha, beta, sweeps, seed):
tokens/s per core and log-likelihood vs wall time for stalesync (1 and 2 workers, embedded
runtime, its automatic sampler choice) and tomotopy (1 and 2 threads, hyper-parameter
optimisation off); gensim's LdaMulticore (variational Bayes, a different algorithm), when
installed, reports time per pass only.

The log-likelihood is the collapsed joint log p(w, z) per token for both Gibbs samplers,
computed with the same code: for tomotopy from its own topic assignments (``doc.topics``),
outside its timed training calls. stalesync's times include its own per-sweep evaluation.

    python bench/lda_peers.py [--corpora nyt nyt-long] [--sweeps 10] [--repeats 3]
                              [--topics 50 100 1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import figure_path, write_json  # noqa: E402

from stalesync.apps.lda import LDA  # noqa: E402
from stalesync.data.corpus import Corpus  # noqa: E402
from stalesync.data.datasets import load_dataset  # noqa: E402
from stalesync.kernels import lda as k  # noqa: E402
from stalesync.observe.metrics import objective_curve  # noqa: E402

ALPHA, BETA = 0.1, 0.01


def joint_loglik_per_token(words, topics, doc_lens, num_words, num_topics) -> float:
    wt = np.zeros((num_words, num_topics), dtype=np.int32)
    np.add.at(wt, (words, topics), 1)
    doc_ptr = np.r_[0, np.cumsum(doc_lens)]
    doc = np.repeat(np.arange(doc_lens.size, dtype=np.int32), doc_lens)
    region, lists = k.build_doc_lists(
        doc, topics.astype(np.int32), doc_lens.size, doc_lens.astype(np.int64), num_topics
    )
    total = (
        k.word_loglik_rows(wt, BETA)
        + k.topic_loglik(wt.sum(0).astype(np.int64), num_words, BETA)
        + k.doc_loglik(region, lists, doc_lens.astype(np.int64), num_topics, ALPHA)
    )
    assert doc_ptr[-1] == words.size
    return total / words.size


JOINED = 6  # articles per document in nyt-long


def load_corpus(name: str) -> Corpus:
    if name != "nyt-long":
        return load_dataset(name)
    nyt = load_dataset("nyt")
    ends = np.arange(0, nyt.num_docs // JOINED * JOINED + 1, JOINED)
    doc_ptr = nyt.doc_ptr[ends]
    return Corpus(doc_ptr, nyt.words[: doc_ptr[-1]], nyt.vocab, nyt.num_words)


def run_stalesync(corpus, K, workers, sweeps, seed):
    model = LDA(n_topics=K, alpha=ALPHA, beta=BETA, epochs=sweeps, workers=workers, seed=seed)
    model.fit(corpus)
    # the job's own wall time: sampling, table traffic and per-sweep evaluation, but not the
    # one-off partitioning before it (tomotopy's initialisation is not timed either)
    wall = model.run_record_["wall_time_s"]
    times, values = objective_curve(model.run_record_)
    return {
        "wall_s": wall,
        "tokens_per_s": corpus.num_tokens * sweeps / wall,
        "curve_t": times.tolist(),
        "curve_ll": values.tolist(),
        "final_ll": model.loglik_per_token_,
        "sampler": model.run_record_["final"]["sampler"],
    }


def run_tomotopy(corpus, K, threads, sweeps, seed):
    import tomotopy as tp

    model = tp.LDAModel(k=K, alpha=ALPHA, eta=BETA, seed=seed)
    model.optim_interval = 0
    vocab = [str(w) for w in range(corpus.num_words)]
    for d in range(corpus.num_docs):
        model.add_doc([vocab[w] for w in corpus.doc(d)])
    scheme = tp.ParallelScheme.NONE if threads == 1 else tp.ParallelScheme.PARTITION
    model.train(0, workers=threads, parallel=scheme)
    ids = np.array([int(w) for w in model.used_vocabs])
    doc_lens = np.array([len(doc.words) for doc in model.docs])
    times, lls, trained = [], [], 0.0
    for _ in range(sweeps):
        t0 = time.perf_counter()
        model.train(1, workers=threads, parallel=scheme)
        trained += time.perf_counter() - t0
        words = ids[np.concatenate([np.asarray(doc.words) for doc in model.docs])]
        topics = np.concatenate([np.asarray(doc.topics) for doc in model.docs])
        times.append(trained)
        lls.append(joint_loglik_per_token(words, topics, doc_lens, corpus.num_words, K))
    return {
        "wall_s": trained,
        "tokens_per_s": corpus.num_tokens * sweeps / trained,
        "curve_t": times,
        "curve_ll": lls,
        "final_ll": lls[-1],
    }


def run_gensim(corpus, K, workers, passes, seed):
    from gensim.models import LdaMulticore

    bow = []
    for d in range(corpus.num_docs):
        ids, counts = np.unique(corpus.doc(d), return_counts=True)
        bow.append(list(zip(ids.tolist(), counts.tolist(), strict=True)))
    t0 = time.perf_counter()
    LdaMulticore(
        bow,
        num_topics=K,
        id2word={i: str(i) for i in range(corpus.num_words)},
        workers=workers,
        passes=passes,
        alpha=ALPHA,
        eta=BETA,
        random_state=seed,
        iterations=50,
    )
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "s_per_pass": wall / passes,
        "tokens_per_s": corpus.num_tokens * passes / wall,
    }


def ll_at(result, t):
    """Log-likelihood of a run at wall time t (last value reached by then)."""
    times = np.asarray(result["curve_t"])
    idx = np.searchsorted(times, t, side="right") - 1
    return result["curve_ll"][idx] if idx >= 0 else float("nan")


def median_run(runs):
    tps = [r["tokens_per_s"] for r in runs]
    best = runs[int(np.argsort(tps)[len(tps) // 2])]
    return {**best, "tokens_per_s_runs": tps, "tokens_per_s": statistics.median(tps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", nargs="+", default=["nyt", "nyt-long"],
                        choices=["nyt", "nyt-long", "clothing", "reuters"])
    parser.add_argument("--sweeps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--topics", type=int, nargs="+", default=[50, 100, 1000])
    parser.add_argument("--gensim-passes", type=int, default=2)
    args = parser.parse_args()
    try:
        import gensim  # noqa: F401
        with_gensim = True
    except ImportError:
        with_gensim = False
    corpora = {name: load_corpus(name) for name in args.corpora}
    LDA(n_topics=10, epochs=1, workers=1).fit(corpora[args.corpora[0]])  # compile kernels
    results = {}
    for cname, corpus in corpora.items():
        print(f"{cname}: {corpus.num_docs} documents, "
              f"{corpus.num_tokens / corpus.num_docs:.0f} tokens each", flush=True)
        for K in args.topics:
            for system, runner, cores in (
                ("stalesync", run_stalesync, (1, 2)),
                ("tomotopy", run_tomotopy, (1, 2)),
            ):
                for n in cores:
                    runs = [runner(corpus, K, n, args.sweeps, seed)
                            for seed in range(args.repeats)]
                    res = median_run(runs)
                    res["tokens_per_s_per_core"] = res["tokens_per_s"] / n
                    results[f"{cname}/{system}/{n}/K={K}"] = res
                    print(
                        f"{cname} K={K:5d} {system:9s} x{n}: {res['tokens_per_s']:.3g} tokens/s "
                        f"({res['tokens_per_s_per_core']:.3g} per core), "
                        f"final loglik/token {res['final_ll']:.4f}"
                        + (f", {res['sampler']} sampler" if "sampler" in res else ""),
                        flush=True,
                    )
            if with_gensim:
                res = run_gensim(corpus, K, 2, args.gensim_passes, 0)
                results[f"{cname}/gensim/2/K={K}"] = res
                print(f"{cname} K={K:5d} gensim LdaMulticore x2: {res['s_per_pass']:.2f} s "
                      "per pass", flush=True)
    summary = compare(results, args.corpora, args.topics)
    path = write_json(
        "lda_peers",
        {
            "sweeps": args.sweeps,
            "repeats": args.repeats,
            "alpha": ALPHA,
            "beta": BETA,
            "corpora": {n: {"num_docs": c.num_docs, "num_tokens": c.num_tokens}
                        for n, c in corpora.items()},
            "results": results,
            "summary": summary,
        },
    )
    plot(results, args.corpora, args.topics)
    print(f"wrote {path} and {figure_path('lda_peers')}")


def compare(results, corpora, topics):
    summary = {}
    for cname in corpora:
        for K in topics:
            for n in (1, 2):
                ours = results[f"{cname}/stalesync/{n}/K={K}"]
                theirs = results[f"{cname}/tomotopy/{n}/K={K}"]
                t = min(ours["curve_t"][-1], theirs["curve_t"][-1])
                entry = {
                    "per_core_speedup": (ours["tokens_per_s_per_core"]
                                         / theirs["tokens_per_s_per_core"]),
                    "sampler": ours["sampler"],
                    "equal_time_s": t,
                    "stalesync_ll_at_t": ll_at(ours, t),
                    "tomotopy_ll_at_t": ll_at(theirs, t),
                    "stalesync_final_ll": ours["final_ll"],
                    "tomotopy_final_ll": theirs["final_ll"],
                }
                summary[f"{cname}/K={K}/x{n}"] = entry
                print(
                    f"{cname} K={K:5d} x{n}: per-core speed stalesync/tomotopy "
                    f"{entry['per_core_speedup']:.2f} ({ours['sampler']}); loglik at {t:.1f} s: "
                    f"stalesync {entry['stalesync_ll_at_t']:.4f} vs tomotopy "
                    f"{entry['tomotopy_ll_at_t']:.4f}; after {len(ours['curve_t'])} evaluations "
                    f"{entry['stalesync_final_ll']:.4f} vs {entry['tomotopy_final_ll']:.4f}"
                )
    worst = min(summary.items(), key=lambda kv: kv[1]["per_core_speedup"])
    print(f"worst per-core ratio: {worst[1]['per_core_speedup']:.2f} at {worst[0]}")
    return summary


def plot(results, corpora, topics):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(corpora), len(topics), figsize=(5 * len(topics),
                             4 * len(corpora)), squeeze=False)
    for row, cname in zip(axes, corpora, strict=True):
        for ax, K in zip(row, topics, strict=True):
            for name, res in results.items():
                if name.startswith(f"{cname}/") and name.endswith(f"/K={K}") and "curve_t" in res:
                    _, system, n, _ = name.split("/")
                    ax.plot(res["curve_t"], res["curve_ll"],
                            "-" if system == "stalesync" else "--", marker=".",
                            label=f"{system} x{n} ({res['tokens_per_s']:.2g} tok/s)")
            ax.set_title(f"{cname}, K={K}")
            ax.set_xlabel("wall time (s)")
            ax.set_ylabel("log p(w, z) per token")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figure_path("lda_peers"), dpi=100)


if __name__ == "__main__":
    main()
