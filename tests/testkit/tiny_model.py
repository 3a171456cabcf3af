"""A tiny random BERT wrapped as a SentenceTransformer, built offline for fast tests.

Tests need a real model to exercise the training stack, but downloading one is impossible
(no network) and slow; a 2-layer, 32-dim BERT with a WordPiece vocabulary trained on the
test texts runs a training step in milliseconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import BertConfig, BertModel, BertTokenizerFast

_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _train_tokenizer(texts: list[str], vocab_size: int) -> BertTokenizerFast:
    """Train a lowercase WordPiece on ``texts`` so every test word has real tokens."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=_SPECIAL)
    )
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


def make_tiny_model(
    tmp_path: Path, texts: Iterable[str], *, vocab_size: int = 500, seed: int = 0
) -> SentenceTransformer:
    """Return a randomly initialised tiny BERT + mean pooling, saved under ``tmp_path``.

    The model is written to disk and loaded back through ST's ``Transformer`` module so the
    same code path as a real checkpoint is used (config, tokenizer files, safetensors).
    """
    import torch

    tokenizer = _train_tokenizer(list(texts), vocab_size)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    model_dir = Path(tmp_path) / "tiny-bert"
    BertModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    transformer = Transformer(str(model_dir), max_seq_length=64)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[transformer, pooling], device="cpu")
