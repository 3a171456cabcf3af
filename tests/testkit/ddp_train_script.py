"""Run by tests/test_training.py under torchrun (2 processes, gloo, CPU).

Trains a tiny model for a few hybrid steps and records, per rank and step, the
(id, query_lang, passage_lang) of every pair the loss received.
"""

import json
import sys
from pathlib import Path

import torch.distributed as dist

from babelir.data.parallel import from_lareqa, pair_table
from babelir.training import trainer as train_mod

model_dir, data_dir, out_dir = (Path(x) for x in sys.argv[1:4])
data = from_lareqa(data_dir, languages="en,de,zh")
table = pair_table(data)
lookup = {
    (q, p): (i, ql, pl)
    for i, ql, pl, q, p in zip(
        table["id"],
        table["query_lang"],
        table["passage_lang"],
        table["query"],
        table["positive"],
        strict=False,
    )
}
seen: list[list[list[str]]] = []

import sentence_transformers  # noqa: E402
from sentence_transformers import SentenceTransformerTrainer  # noqa: E402


class RecordingTrainer(SentenceTransformerTrainer):
    """Records the rows of every batch this rank trains on (train() builds this class)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.data_collator = Recorder(self.data_collator)


class Recorder:
    """Wraps the trainer's data collator; attributes pass through to it."""

    def __init__(self, collate):
        self._collate = collate

    def __getattr__(self, name):
        return getattr(self._collate, name)

    def __call__(self, rows):
        seen.append([list(lookup[(r["query"], r["positive"])]) for r in rows])
        return self._collate(rows)


sentence_transformers.SentenceTransformerTrainer = RecordingTrainer
cfg = train_mod.TrainConfig(
    output=out_dir / "model",
    model=str(model_dir),
    strategy="hybrid",
    alpha=0.5,
    train_data=str(data_dir),
    languages=["en", "de", "zh"],
    batch_size=4,
    max_steps=3,
    max_seq_length=64,
    logging_steps=1,
)
train_mod.train(cfg, show_progress=False)
rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
(out_dir / f"rank{rank}.json").write_text(json.dumps(seen))
if dist.is_available() and dist.is_initialized():
    dist.barrier()
    dist.destroy_process_group()  # a gloo group left open can abort at interpreter exit
