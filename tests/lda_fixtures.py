"""Corpora for the LDA tests: one drawn from a known LDA model, one of real English text."""

from __future__ import annotations

import importlib
import inspect

import numpy as np

from stalesync.data.corpus import Corpus
from stalesync.data.text import Tokenizer


def planted_corpus(num_topics=5, num_words=60, num_docs=300, doc_len=80, alpha=0.1, seed=0):
    """Documents drawn from LDA with well-separated true topics. Returns (corpus, phi)."""
    rng = np.random.default_rng(seed)
    phi = np.full((num_topics, num_words), 0.002)
    block = num_words // num_topics
    for k in range(num_topics):
        phi[k, k * block : (k + 1) * block] += rng.dirichlet(np.ones(block))
    phi /= phi.sum(axis=1, keepdims=True)
    theta = rng.dirichlet(np.full(num_topics, alpha), size=num_docs)
    words = []
    for d in range(num_docs):
        topics = rng.choice(num_topics, size=doc_len, p=theta[d])
        cum = np.cumsum(phi[topics], axis=1)
        words.append((cum < rng.random((doc_len, 1))).sum(axis=1))
    doc_ptr = np.arange(num_docs + 1) * doc_len
    return Corpus(doc_ptr, np.concatenate(words), None, num_words), phi


STDLIB_MODULES = (
    "argparse collections csv datetime decimal email.message fractions ftplib functools "
    "gzip heapq http.client imaplib inspect ipaddress json logging mailbox math pathlib "
    "pickle poplib random re shutil smtplib socket sqlite3 statistics string subprocess "
    "tarfile tempfile textwrap threading unittest urllib.parse urllib.request uuid zipfile"
).split()


def docstring_corpus() -> Corpus:
    """Real English text available offline: docstrings of standard-library members."""
    texts = []
    for name in STDLIB_MODULES:
        module = importlib.import_module(name)
        for _, member in inspect.getmembers(module):
            doc = getattr(member, "__doc__", None)
            if isinstance(doc, str) and len(doc) > 200:
                texts.append(doc)
    texts = sorted(set(texts))
    return Tokenizer(min_df=3, max_df=0.5).corpus(texts, drop_empty=True)
