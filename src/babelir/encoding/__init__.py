"""Encoding texts into embeddings: the encoder and its precisions (:mod:`.encoder`), the
options every command shares (:mod:`.options`), the on-disk embedding cache
(:mod:`.cache`) and streamed encoding of corpora too large for memory (:mod:`.streaming`).
Light on import: torch loads with :mod:`.encoder`."""
