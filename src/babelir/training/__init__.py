"""Training: the run schema (:mod:`.config`), the trainer (:mod:`.train`), validation and
checkpoint selection (:mod:`.validation`), crash-safe checkpoints (:mod:`.checkpoints`)."""

from babelir.training.config import TrainConfig
from babelir.training.trainer import train

__all__ = ["TrainConfig", "train"]
