"""Writing a trained model: the sentence-transformers folder, its card and babelir's record.

The folder becomes visible in one step: files are saved into a pending folder and moved
in, and ``babelir-train.json`` (the marker ``compare`` reuses runs by) is written last.
The free space is checked first (about the weights' size), and a full disk during the
save removes the pending folder and stops with one line (:class:`babelir.core.io.DiskSpaceError`):
the run's checkpoints are kept, so ``--resume`` saves the model once space is freed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from babelir.batches.strategies import get_strategy
from babelir.core.io import atomic_dir, write_json, write_text

MARKER = "babelir-train.json"


def is_trained(output: Path) -> bool:
    return (Path(output) / MARKER).is_file()


def model_bytes(model) -> int:
    """About how many bytes a saved model takes: its weights, plus 5% and 64 KiB for the
    tokenizer and configuration files (the writes themselves are guarded too)."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return int(weights * 1.05) + 2**16


def save_model(model, output: Path, info: dict[str, Any]) -> None:
    """Save the model files into ``output`` atomically, then the marker (last)."""
    from babelir.training.checkpoints import RESUME_HINT

    output.mkdir(parents=True, exist_ok=True)
    (output / MARKER).unlink(missing_ok=True)
    hint = RESUME_HINT if (output / "checkpoints").is_dir() else ""
    pending = output / ".model-pending"
    with atomic_dir(pending, need=model_bytes(model), what="the model", hint=hint) as tmp:
        model.save(str(tmp))
        _keep_pooler_off(tmp)
        write_text(tmp / "README.md", model_card(info))
    for item in pending.iterdir():
        dest = output / item.name
        if dest.is_dir() and item.is_dir():
            shutil.rmtree(dest)
        os.replace(item, dest)
    pending.rmdir()
    write_json(output / MARKER, info)


def _keep_pooler_off(folder: Path) -> None:
    """Tell transformers not to build a (random, unused) pooler the weights lack.

    sentence-transformers' save drops the base folder's ``add_pooling_layer: false``;
    without it every load of a BERT/XLM-R body without pooler weights prints a
    missing-weights report. Mean pooling never uses that layer.
    """
    from safetensors import safe_open

    weights, st_cfg, hf_cfg = (
        folder / n for n in ("model.safetensors", "sentence_bert_config.json", "config.json")
    )
    if not (weights.is_file() and st_cfg.is_file() and hf_cfg.is_file()):
        return
    if json.loads(hf_cfg.read_text())["model_type"] not in ("bert", "roberta", "xlm-roberta"):
        return
    with safe_open(str(weights), "np") as f:
        if any("pooler" in k for k in f.keys()):  # noqa: SIM118 (safe_open has no __iter__)
            return
    doc = json.loads(st_cfg.read_text())
    doc.setdefault("model_kwargs", {})["add_pooling_layer"] = False
    write_json(st_cfg, doc)


def model_card(info: dict[str, Any]) -> str:
    cfg = info["config"]
    alpha = f", alpha = {cfg['alpha']}" if get_strategy(cfg["strategy"]).mixes_by_alpha else ""
    rows = [
        ("base model", info["base_model"]),
        ("strategy", f"{cfg['strategy']}{alpha}"),
        ("training data", f"{cfg['train_data']} (articles {cfg['articles']})"),
        ("languages", ", ".join(info["train_languages"])),
        ("items / pair rows", f"{info['train_items']} / {info['pair_rows']}"),
        ("steps x batch size", f"{info['global_steps']} x {cfg['batch_size']}"),
        (
            "loss",
            f"{cfg['loss']} (scale {cfg['scale']}, symmetric {cfg['symmetric']}, "
            f"hard negatives {cfg['hard_negatives']})",
        ),
        (
            "optimizer",
            f"AdamW lr {cfg['learning_rate']}, warmup {cfg['warmup_ratio']}, "
            f"weight decay {cfg['weight_decay']}",
        ),
        ("max length", str(cfg["max_seq_length"])),
        ("frozen word embeddings", str(cfg["freeze_embeddings"])),
        ("prefixes", f"query {info['query_prefix']!r}, passage {info['passage_prefix']!r}"),
        ("seed", str(cfg["seed"])),
        ("mean train loss (whole run)", f"{info['train_loss']:.4f}"),
        ("weights kept", _selection_text(info)),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (
        "---\nlibrary_name: sentence-transformers\ntags:\n- babelir\n- sentence-similarity\n"
        "- multilingual\n---\n\n"
        f"# Multilingual retriever trained with babelir ({cfg['strategy']} batches)\n\n"
        "Trained with [babelir](https://github.com/) hybrid batch training "
        "(Elmahdy et al., arXiv 2408.10536): each batch is monolingual (x-x-mono) or "
        "cross-lingual (x-y), chosen per batch.\n\n"
        f"| setting | value |\n|---|---|\n{table}\n\n"
        "Load it with `SentenceTransformer(path)` and prefix inputs as above; evaluate it "
        "with `babelir evaluate --model path`.\n\n"
        f"```json\n{json.dumps(cfg, indent=2)}\n```\n"
    )


def _selection_text(info: dict[str, Any]) -> str:
    sel = info.get("selection") or {}
    if not sel or sel.get("select") == "last":
        return f"last step ({info['global_steps']})"
    point = sel.get("point") or {}
    vals = ", ".join(
        f"{k} {point[k]:.4f}" for k in ("val_loss", "val_map") if point.get(k) is not None
    )
    return f"step {sel.get('step')} by {sel['select']} ({vals})"
