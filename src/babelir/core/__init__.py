"""Shared infrastructure every stage uses: error types (:mod:`.errors`), atomic writes
(:mod:`.io`), settings such as the data dir (:mod:`.settings`), the option schema
(:mod:`.schema`) and the distributed helpers (:mod:`.distributed`)."""
