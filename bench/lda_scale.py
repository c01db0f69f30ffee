"""LDA at large K: peak memory and tokens/s, dense against sparse word-topic rows.

``--corpus zipf`` (the default): a synthetic corpus with a Zipf vocabulary (V = ``--vocab``
words, exponent 1.07, 10,000 documents of ~200 tokens, 2M tokens); ``--corpus nyt-x9``: NYT's
documents repeated 9 times (11M tokens, V = 3,012). Trained for ``--sweeps`` sweeps with K in
``--topics``, 1 and 2 workers, the word-topic table dense or as sparse rows
(``LDA(storage=...)``). Each configuration runs in its own process: its peak resident memory
(``ru_maxrss``) is the whole job's (workers, shards, corpus). Next to the SSP paper's figure
(002_*: LDA on NYTimes with 10K topics at ~100K tokens/s on 128 threads). Writes
bench/results/lda_scale[_CORPUS].json and .png.

    flock /tmp/stalesync-bench.lock .venv/bin/python bench/lda_scale.py [--corpus nyt-x9]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_path, write_json  # noqa: E402

SEED_FIGURE = {"system": "SSP paper (002_*), NYTimes", "topics": 10_000,
               "tokens_per_s": 100_000, "threads": 128}

CHILD = r"""
import json, resource, sys, time
import numpy as np
from stalesync.apps.lda import LDA
from stalesync.data.corpus import Corpus

vocab, docs, length, topics, workers, storage, sweeps, source = sys.argv[1:9]
if source.startswith("nyt-x"):  # NYT's documents repeated: the same vocabulary, more tokens
    from stalesync.data.datasets import load_dataset
    nyt, times = load_dataset("nyt"), int(source[5:])
    lengths = np.tile(nyt.doc_lengths, times)
    corpus = Corpus(np.r_[0, np.cumsum(lengths)].astype(np.int64), np.tile(nyt.words, times),
                    num_words=nyt.num_words)
else:
    rng = np.random.default_rng(0)
    V, D, L = int(vocab), int(docs), int(length)
    p = 1.0 / np.arange(1, V + 1) ** 1.07
    lengths = rng.poisson(L, size=D).clip(1)
    words = rng.choice(V, size=int(lengths.sum()), p=p / p.sum()).astype(np.int32)
    corpus = Corpus(np.r_[0, np.cumsum(lengths)].astype(np.int64), words, num_words=V)
model = LDA(n_topics=int(topics), epochs=int(sweeps), workers=int(workers), storage=storage,
            docs_per_clock=0.25, seed=0)
model.fit(corpus)
final = model.run_record_["final"]
print(json.dumps({"tokens_per_s": final["tokens_per_s"], "storage": final["storage"],
                  "sampler": final["sampler"], "loglik_per_token": final["loglik_per_token"],
                  "tokens": final["num_tokens"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(args, topics: int, workers: int, storage: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(args.vocab), str(args.docs), str(args.length),
         str(topics), str(workers), storage, str(args.sweeps), args.corpus],
        capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed",
                "returncode": out.returncode}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=100_000)
    p.add_argument("--docs", type=int, default=10_000)
    p.add_argument("--length", type=int, default=200)
    p.add_argument("--topics", type=int, nargs="+", default=[1000, 10_000])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--sweeps", type=int, default=3)
    p.add_argument("--corpus", default="zipf",
                   help="'zipf' (synthetic, --vocab/--docs/--length) or 'nyt-xN' (NYT tiled N "
                        "times: nyt-x9 is 11M tokens)")
    p.add_argument("--max-dense-gb", type=float, default=2.0,
                   help="skip dense runs whose V x K int32 table alone is larger")
    args = p.parse_args()
    rows = []
    for topics in args.topics:
        for workers in args.workers:
            for storage in ("dense", "sparse"):
                vocab = 3012 if args.corpus.startswith("nyt") else args.vocab
                dense_gb = vocab * topics * 4 / 2**30
                if storage == "dense" and dense_gb > args.max_dense_gb:
                    r = {"topics": topics, "workers": workers, "requested": storage,
                         "skipped": f"the dense table alone is {dense_gb:.1f} GB"}
                    rows.append(r)
                    print(json.dumps(r), flush=True)
                    continue
                r = {"topics": topics, "workers": workers, "requested": storage,
                     **run(args, topics, workers, storage)}
                rows.append(r)
                print(json.dumps(r), flush=True)
    write_json("lda_scale" if args.corpus == "zipf" else f"lda_scale_{args.corpus}", {
        "corpus": args.corpus, "vocab": args.vocab, "docs": args.docs, "length": args.length,
        "sweeps": args.sweeps, "rows": rows, "seed_figure": SEED_FIGURE})
    plot(rows, "lda_scale" if args.corpus == "zipf" else f"lda_scale_{args.corpus}",
         "a Zipf corpus" if args.corpus == "zipf" else f"NYT tiled ({args.corpus})")


def plot(rows: list[dict], name: str, corpus: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "error" not in r and "skipped" not in r]
    labels = [f"K={r['topics']} x{r['workers']} {r['requested']}" for r in ok]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(ok) + 2))
    colors = ["C0" if r["requested"] == "dense" else "C1" for r in ok]
    axes[0].barh(labels, [r["peak_rss_mb"] for r in ok], color=colors)
    axes[0].set_xlabel("peak RSS of the job (MB)")
    axes[1].barh(labels, [r["tokens_per_s"] / 1e6 for r in ok], color=colors)
    axes[1].set_xlabel("tokens / s (millions)")
    for ax in axes:
        ax.invert_yaxis()
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(f"LDA on {corpus}: dense vs sparse word-topic rows on the shards")
    fig.tight_layout()
    fig.savefig(figure_path(name), dpi=100)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
