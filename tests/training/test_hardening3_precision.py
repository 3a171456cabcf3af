"""Hardening round 3 (issue 34, smaller cases): the precision environment hooks are never
taken silently: an unknown $BABELIR_BF16_KERNELS is refused, a faked $BABELIR_CPU_FLAGS
is said once."""

from __future__ import annotations

import logging

import pytest

from babelir.core.errors import ConfigError
from babelir.precision import resolver as precision
from babelir.precision.emulated_bf16 import KERNELS_ENV, emulation


def test_unknown_bf16_kernels_value_is_refused(monkeypatch):
    monkeypatch.setenv(KERNELS_ENV, "junk")
    with pytest.raises(ConfigError, match=r"BABELIR_BF16_KERNELS='junk': expected 'onednn'"):
        emulation()
    for value, expected in (("onednn", "onednn-emulated"), ("FP32", "fp32-kernels"),
                            ("", "fp32-kernels")):
        monkeypatch.setenv(KERNELS_ENV, value)
        assert emulation() == expected


def test_faked_cpu_flags_are_warned_once(monkeypatch, caplog):
    monkeypatch.setattr(precision, "_warned", set())
    monkeypatch.setenv(precision.CPU_FLAGS_ENV, "avx2 avx512_bf16")
    with caplog.at_level(logging.WARNING, logger="babelir.precision.resolver"):
        assert precision.cpu_bf16_supported()
        assert precision.cpu_bf16_supported()
    said = [r.getMessage() for r in caplog.records if "BABELIR_CPU_FLAGS" in r.getMessage()]
    assert said == [
        "$BABELIR_CPU_FLAGS is set: the CPU flags are taken from it, not /proc/cpuinfo "
        "(native bf16: yes)"
    ]
