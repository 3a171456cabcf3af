"""Dense retrieval over encoded shards with FAISS, and a docstore to show the results.

- :mod:`~babelir.index.faiss_backend`: index kinds (:class:`IndexSpec`), exact and
  approximate search, save/load, recall against exact search;
- :mod:`~babelir.index.docstore`: row -> passage in SQLite;
- :mod:`~babelir.index.corpus_index`: encode a corpus to shards -> index -> recall check,
  shared by ``babelir index`` and the MIRACL evaluation;
- :mod:`~babelir.index.build` / :mod:`~babelir.index.search`: an index folder
  (:mod:`~babelir.index.layout`), built by ``babelir index``, queried by ``babelir search``.

Corpora come from :func:`babelir.data.corpus.open_corpus`. LAReQA-size benchmarks do not
come here: they score the full similarity matrix (:mod:`babelir.evaluation.metrics`).
"""

from babelir.data.corpus import CorpusSource, open_corpus
from babelir.index.build import BuildReport, build_search_index
from babelir.index.corpus_index import CorpusIndex, index_corpus
from babelir.index.docstore import Docstore
from babelir.index.faiss_backend import (
    INDEX_KINDS,
    IndexSettingsError,
    IndexSpec,
    approximate_search,
    build_faiss_index,
    cached_faiss_index,
    check_corpus_size,
    exact_search,
    file_record,
    load_faiss,
    overlap_at_k,
    recall_vs_exact,
    save_faiss,
)
from babelir.index.layout import DOCSTORE, FAISS_FILE, INDEX_META, SHARDS
from babelir.index.search import Hit, SearchIndex

__all__ = [
    "DOCSTORE",
    "FAISS_FILE",
    "INDEX_KINDS",
    "INDEX_META",
    "SHARDS",
    "BuildReport",
    "CorpusIndex",
    "CorpusSource",
    "Docstore",
    "Hit",
    "IndexSettingsError",
    "IndexSpec",
    "SearchIndex",
    "approximate_search",
    "build_faiss_index",
    "build_search_index",
    "cached_faiss_index",
    "check_corpus_size",
    "exact_search",
    "file_record",
    "index_corpus",
    "load_faiss",
    "open_corpus",
    "overlap_at_k",
    "recall_vs_exact",
    "save_faiss",
]
