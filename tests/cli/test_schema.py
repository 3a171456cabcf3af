"""One source of truth: CLI options and YAML keys come from the schemas; examples run."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import pkgutil
import re

import pytest
from typer.testing import CliRunner

import babelir
from babelir.cli.main import app
from babelir.cli.train import BATCH_OPTIONS, TRAIN_OPTIONS
from babelir.compare.config import EVAL_KEYS, PROFILES, load_config
from babelir.core.schema import build, option_map
from babelir.encoding.options import EncodeOptions
from babelir.training.config import YAML_KEYS, TrainConfig


def test_every_training_option_is_a_cli_option_with_the_schema_default_and_range():
    fields = option_map(TrainConfig)
    # every field but the command's own --output is an option of `babelir train`
    assert set(TRAIN_OPTIONS) == set(fields) - {"output"}
    assert set(BATCH_OPTIONS) <= set(fields)
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    text = re.sub(r"\s+", " ", result.output)
    for name in TRAIN_OPTIONS:
        o = fields[name]
        assert o.cli_name in text, name
    # ranges and choices are stated in --help from the schema, not rewritten by hand
    assert "Range: >= 0, < 1." in text  # warmup_ratio
    assert "One of: last, best-val-loss, best-val-map." in text


def test_yaml_train_keys_are_the_schema_fields():
    assert YAML_KEYS["data"] == "train_data"
    assert set(YAML_KEYS.values()) <= set(option_map(TrainConfig))
    run_only = {o.name for o in option_map(TrainConfig).values() if o.yaml_key is None}
    assert {"output", "strategy", "alpha", "seed", "resume"} <= run_only
    assert set(EVAL_KEYS) <= set(EncodeOptions.__dataclass_fields__)
    for profile in PROFILES:
        _, raw = load_config(profile=profile)
        assert set(raw["train"]) <= set(YAML_KEYS)


def test_schema_defaults_reach_the_run():
    cfg = TrainConfig()
    assert cfg.max_steps == 100 and cfg.alpha == 0.5 and cfg.learning_rate == 3e-5
    assert TrainConfig(epochs=2).max_steps is None


def _examples() -> list[tuple[str, str]]:
    """Code blocks after 'Example::' / 'Usage ...::' in the package's module docstrings."""
    out = []
    for mod in pkgutil.walk_packages(babelir.__path__, "babelir."):
        module = importlib.import_module(mod.name)
        doc = module.__doc__ or ""
        for match in re.finditer(r"::\n\n((?:    .*\n|\n)+)", doc):
            block = "\n".join(line[4:] for line in match.group(1).splitlines())
            if "import" in block:
                out.append((mod.name, block))
    return out


@pytest.mark.parametrize(("module", "code"), _examples(), ids=lambda x: x[:40])
def test_docstring_examples_import_what_they_use(module, code):
    """The examples' imports run (a wrong module path fails here), and the code parses."""
    tree = ast.parse(code)
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            exec(compile(ast.Module([node], []), module, "exec"), {})


def test_training_example_import_path():
    from babelir.training import TrainConfig as T
    from babelir.training import train

    assert T is TrainConfig and callable(train)


def test_encode_options_are_a_schema_with_one_precision_vocabulary():
    """EncodeOptions' fields are schema options; training takes the same precision words."""
    from babelir.cli.schema import schema_parameters
    from babelir.core.errors import ConfigError
    from babelir.precision.vocabulary import PRECISIONS

    fields = option_map(EncodeOptions)
    train_precision = option_map(TrainConfig)["precision"]
    assert fields["precision"].choices == PRECISIONS == train_precision.choices
    assert "Range: >= 1." in fields["batch_size"].help_text()
    assert not fields["cache"].has_cli and fields["cache"].yaml_key is None
    with pytest.raises(TypeError, match="cache has no command-line option"):
        schema_parameters(EncodeOptions, ["cache"])
    with pytest.raises(ConfigError, match=r"^--precision: int8 is for evaluation"):
        build(TrainConfig, {"precision": "int8"}, lambda n: "--" + n)
    with pytest.raises(ConfigError, match="bogus: unknown key"):
        EncodeOptions(bogus=1)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        EncodeOptions(batch_size=True)  # strict: a bool is not a batch size
    with pytest.raises(dataclasses.FrozenInstanceError):
        EncodeOptions().batch_size = 3  # type: ignore[misc]
