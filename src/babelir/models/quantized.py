"""The int8 (ONNX Runtime, CPU) encoder's public API; it lives in :mod:`babelir.models.int8`.

Kept so ``from babelir.models.quantized import int8_model`` goes on working. To patch
the build's internals (tests), patch the :mod:`babelir.models.int8` module that looks the
name up (e.g. ``int8.store._build``), not this re-export.
"""

from babelir.models.int8 import (
    FORMAT_VERSION,
    INSTALL_HINT,
    MANIFEST,
    MIN_PROBE_COSINE,
    ONNX_FILE,
    cpu_int8_dot_supported,
    int8_model,
    int8_path,
    quantization_settings,
)

__all__ = [
    "FORMAT_VERSION",
    "INSTALL_HINT",
    "MANIFEST",
    "MIN_PROBE_COSINE",
    "ONNX_FILE",
    "cpu_int8_dot_supported",
    "int8_model",
    "int8_path",
    "quantization_settings",
]
