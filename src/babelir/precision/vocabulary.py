"""The precision vocabulary of every path that encodes or trains (training refuses int8)."""

from __future__ import annotations

import typing
from typing import Annotated, Literal

from pydantic import AfterValidator

Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)


def _trainable(value: str) -> str:
    if value == "int8":
        raise ValueError("int8 is for evaluation (ONNX Runtime); train in auto, fp32, bf16 or fp16")
    return value


#: :data:`Precision` for training (:class:`babelir.training.config.TrainConfig`): no int8.
TrainingPrecision = Annotated[Precision, AfterValidator(_trainable)]
TRAINING_PRECISIONS: tuple[str, ...] = tuple(p for p in PRECISIONS if p != "int8")

__all__ = ["PRECISIONS", "TRAINING_PRECISIONS", "Precision", "TrainingPrecision"]
