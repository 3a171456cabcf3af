"""Training: the run schema (:mod:`.config`), the trainer (:mod:`.train`), validation and
checkpoint selection (:mod:`.validation`), crash-safe checkpoints (:mod:`.checkpoints`).

``train`` is imported on first use: the trainer pulls torch, and reading a run's schema
(``babelir.training.config``, compare's YAML) must not.
"""

from typing import Any

from babelir.training.config import TrainConfig

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from babelir.training.trainer import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
