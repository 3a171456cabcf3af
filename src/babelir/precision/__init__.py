"""Numeric precision: the vocabulary (:mod:`.vocabulary`), CPU detection and the one
resolver of ``auto`` (:mod:`.resolver`), and bf16 matmul kernels for CPUs without native
bf16 (:mod:`.emulated_bf16`). Light on import: no torch until a kernel is needed."""
