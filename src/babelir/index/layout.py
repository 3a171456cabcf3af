"""The files of an index folder (``babelir index``), shared by building and searching.

::

    shards/          embeddings + ids (babelir.index.shards): resumable, multi-process
    docstore.sqlite  row -> docid, lang, title, text (SQLite: no pickle, random access)
    index.faiss      approximate kinds only
    index.json       model, prefixes, passage format, encoder settings, kind and
                     parameters, row counts per language, recall vs exact, the size and
                     SHA-256 of index.faiss (``faiss_file``: search refuses a file that
                     differs); written last, so present = complete
"""

INDEX_META = "index.json"
FAISS_FILE = "index.faiss"
DOCSTORE = "docstore.sqlite"
SHARDS = "shards"
