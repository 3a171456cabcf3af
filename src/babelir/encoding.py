"""Text -> embedding, shared by evaluation, training checks and search.

Wraps ``SentenceTransformer.encode`` so every caller gets the same settings: the input
prefix (e5's ``query: `` / ``passage: ``), L2 normalisation (so inner product = cosine),
float32 numpy output, and progress bars on long inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def encode_texts(
    model: Any,
    texts: Sequence[str],
    *,
    prefix: str = "",
    batch_size: int = 64,
    show_progress: bool = True,
    desc: str | None = None,
) -> np.ndarray:
    """Encode ``texts`` (prefixed) into L2-normalised float32 rows."""
    if len(texts) == 0:
        dim = model.get_sentence_embedding_dimension() or 0
        return np.zeros((0, dim), dtype=np.float32)
    inputs = [prefix + t for t in texts] if prefix else list(texts)
    with torch.inference_mode():
        emb = model.encode(
            inputs,
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
    return np.ascontiguousarray(emb, dtype=np.float32)
