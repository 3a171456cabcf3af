"""An int8 copy of a sentence-transformers encoder for CPU inference (ONNX Runtime).

Why not sentence-transformers' own ``backend="onnx"`` / ``backend="openvino"`` with
``export_dynamic_quantized_onnx_model`` / ``export_static_quantized_openvino_model``: both
go through optimum, and no optimum release works with the transformers 5.x that
sentence-transformers 6.x needs. ``optimum-onnx`` 0.1.0 (the latest, which ST's ``onnx``
extra installs) pins ``transformers<4.58`` and ``optimum~=2.1``, and forced in anyway it
fails at import (``is_offline_mode`` is gone from ``transformers.utils``);
``optimum-intel`` 2.2.0 pins ``transformers<5.6`` and ``huggingface-hub<1.22`` and fails
at import on transformers 5.24 (``VisionRotaryEmbedding`` is gone from qwen2_vl). So the
backbone is exported here with ``torch.onnx.export`` (the ``torch.export`` path, falling
back to the TorchScript exporter) and quantized with ONNX Runtime's
``quantize_dynamic``: int8 per-channel weights for the weight MatMuls, activations
quantized per batch at run time; embeddings, LayerNorm, the attention products and (by
default) the FFN output projections stay fp32. As activations are quantized per batch, a
text's embedding varies in the last digits with its batch-mates (babelir's batching is
deterministic, so runs repeat exactly). ONNX Runtime's transformer fusion was tried and
left out: it finds no attention pattern in the ``torch.export`` graph and was no faster.

The result is an ordinary :class:`SentenceTransformer` whose Transformer module runs the
backbone through an ONNX Runtime session (as ST's own ``backend="onnx"`` does), so its
tokenizer, prompts, pooling and normalisation are the original's and
:func:`babelir.encoding.encoder.encode_texts` (length bucketing, embedding cache) works unchanged.
Its fingerprint differs from the fp32 model's (a buffer holds the build's hash), so cached
embeddings of the two never mix.

The quantized model is built once per (model fingerprint, quantization settings) under
``<cache>/int8/``, atomically, with a manifest of sizes and SHA-256s; a build that fails
that check (truncated, edited) is rebuilt.

Modules, one job each: :mod:`~babelir.models.int8.export` (quantization settings, ONNX
export, ``quantize_dynamic``), :mod:`~babelir.models.int8.session` (the ONNX Runtime
session and the build's self-check against fp32), :mod:`~babelir.models.int8.store` (the
cache: path, manifest, verification, atomic build under a lock) and
:mod:`~babelir.models.int8.runtime` (:func:`int8_model` and the backbone module it puts
in the returned model).
"""

from babelir.models.int8.export import FORMAT_VERSION, cpu_int8_dot_supported, quantization_settings
from babelir.models.int8.runtime import INSTALL_HINT, int8_model
from babelir.models.int8.session import MIN_PROBE_COSINE
from babelir.models.int8.store import MANIFEST, ONNX_FILE, int8_path

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
