"""Training batches: the strategy table (:mod:`.strategies`: x-x-mono, x-y, hybrid...),
the batch sampler that applies it with its guarantees (:mod:`.sampler`) and the column
helpers both read (:mod:`.columns`)."""
