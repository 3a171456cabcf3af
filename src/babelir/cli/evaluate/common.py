"""What every ``babelir evaluate`` family command shares, declared once.

:func:`family_command` registers a family's command with the options all families take
(model, ``--benchmark``, data, output, device, encoding), the
:class:`~babelir.evaluation.options.RetrievalOptions` fields its table row names (under
the row's option names and help) and, for passage-retrieval families, the search and BM25
options; the command body gets them checked, as one :class:`FamilyRun`, and declares only
the family's own options. :func:`with_retrieval_options` gives another command
(``babelir index``) retrieval options from the same schema. :class:`FamilyRun`'s methods
are the steps the family bodies have in common (load, encoder, print and write).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from babelir.cli.app import (
    ENCODE_OPTIONS,
    DataDirOpt,
    LanguagesOpt,
    ModelOpt,
    NoCacheOpt,
    QuietOpt,
    console,
    encode_options,
    model_name,
    out,
    print_warning,
)
from babelir.cli.schema import cli_name_of, cli_values, schema_command, schema_parameters
from babelir.core.errors import ConfigError
from babelir.core.schema import FieldError, constraint_text, option_map
from babelir.encoding.options import EncodeOptions
from babelir.evaluation.families import BenchmarkFamily, get_family
from babelir.evaluation.options import RetrievalOptions

_KW = inspect.Parameter.KEYWORD_ONLY


# --------------------------------------------------------------------------- retrieval options


def _family_option(p: inspect.Parameter, family: BenchmarkFamily) -> inspect.Parameter:
    """``p`` under the family's own option name and help (the range stays the schema's)."""
    flag, own = family.option_name(p.name), family.cli_help.get(p.name)
    o = option_map(RetrievalOptions)[p.name]
    if flag == o.cli_name and own is None:
        return p
    bounds = constraint_text(o.info)
    text = o.help_text() if own is None else own + (f" Range: {bounds}." if bounds else "")
    base = typing.get_args(p.annotation)[0]
    return p.replace(annotation=Annotated[base, typer.Option(flag, help=text)])


def retrieval_parameters(
    names: Sequence[str], family: BenchmarkFamily | None = None
) -> list[inspect.Parameter]:
    """Typer parameters of the :class:`RetrievalOptions` fields ``names``."""
    params = schema_parameters(RetrievalOptions, names)
    return params if family is None else [_family_option(p, family) for p in params]


def retrieval_options(
    values: dict[str, Any],
    names: Sequence[str],
    family: BenchmarkFamily | None = None,
    ctx: typer.Context | None = None,
) -> RetrievalOptions:
    """Pop ``names`` from a command's ``values``: the RetrievalOptions they give. A value
    out of its range is a usage error naming the option as typed (``Invalid value for
    '--top-k': ...``), as Typer words one."""
    mine = cli_values(RetrievalOptions, {k: values.pop(k) for k in names})
    name_of = family.option_name if family else cli_name_of(RetrievalOptions)
    try:
        return RetrievalOptions(**mine)
    except FieldError as e:
        err = e.validation.errors()[0]
        hint = f"'{name_of(str(err['loc'][0]))}'"
        raise typer.BadParameter(err["msg"], ctx=ctx, param_hint=hint) from None


def _keyword(params: Iterable[inspect.Parameter]) -> list[inspect.Parameter]:
    return [p.replace(kind=_KW) for p in params]


def _sign(command: Callable[..., Any], body: Callable[..., Any], params: list[Any]) -> None:
    """Give ``command`` the parameters Typer reads (a first positional ``values``, the
    click context for usage errors) and ``body``'s name and help."""
    values = inspect.Parameter("values", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ctx = inspect.Parameter("ctx", _KW, annotation=typer.Context)
    command.__signature__ = inspect.Signature([values, ctx, *params])  # type: ignore[attr-defined]
    command.__doc__, command.__name__ = body.__doc__, body.__name__
    command.__module__ = body.__module__


def with_retrieval_options(
    names: Sequence[str],
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``body(values, retrieval, **own)`` as a :func:`~babelir.cli.schema.schema_command`
    body ``(values, **own)`` that also takes the RetrievalOptions ``names``."""

    def wrap(body: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(body, eval_str=True).parameters.values())[2:]

        def command(values: dict[str, Any], ctx: typer.Context, **kw: Any) -> None:
            body(values, retrieval_options(kw, names, ctx=ctx), **kw)

        _sign(command, body, [*_keyword(own), *retrieval_parameters(names)])
        return command

    return wrap


# --------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class FamilyRun:
    """The options every family command takes, checked: the model, its encoding, the
    data, where to write; for passage-retrieval families the retrieval options, search
    (``index``: an :class:`~babelir.index.faiss_backend.IndexSpec`, None: exact), shard
    folder and BM25. A family's body takes one (and its own options)."""

    family: BenchmarkFamily
    benchmark: str
    options: EncodeOptions = field(default_factory=EncodeOptions)
    model: str | None = None
    data_dir: Path | None = None
    languages: str | None = None
    output: Path | None = None
    device: str | None = None
    retrieval: RetrievalOptions = field(default_factory=RetrievalOptions)
    index: Any = None
    work_dir: Path | None = None
    bm25: bool = False

    @classmethod
    def of(cls, kind: str, **values: Any) -> FamilyRun:
        """A run of family ``kind`` from keywords, its retrieval options among them (for
        callers other than the command line: ``FamilyRun.of("miracl", corpus=...)``)."""
        family = get_family(kind)
        retrieval = {k: values.pop(k) for k in family.options if k in values}
        if retrieval.get("corpus") is not None:
            retrieval["corpus"] = str(retrieval["corpus"])
        values.setdefault("benchmark", family.benchmarks[0])
        return cls(family, retrieval=RetrievalOptions(**retrieval), **values)

    @property
    def corpus(self) -> Path | None:
        """``--corpus`` as a path (None: the family's default under the data dir)."""
        return Path(self.retrieval.corpus) if self.retrieval.corpus is not None else None

    def load(self) -> Any:
        """The data of a passage-retrieval family, as its row loads it."""
        from babelir.core.settings import data_dir

        assert self.family.load is not None, self.family.kind
        return self.family.load(
            data_dir(self.data_dir), self.languages, split=self.retrieval.split,
            corpus=self.corpus, root=None,
        )  # fmt: skip

    def preflight(self) -> None:
        """What can fail in a second fails before minutes of encoding: the passage
        template, and bm25s where a BM25 row is asked for."""
        from babelir.data.miracl import check_passage_format

        check_passage_format(self.retrieval.passage_format)
        if self.bm25:
            from babelir.evaluation.bm25 import _bm25s

            _bm25s()

    def encoder(self) -> tuple[Any, EncodeOptions, dict[str, Any]]:
        """The encoder as the options say, and the run's record of it for metrics.json;
        in a passage-retrieval family, where every ``torchrun`` rank encodes its shards,
        on this rank's device (the process group joined first)."""
        from babelir.core.distributed import init_distributed, rank_device
        from babelir.encoding.encoder import load_encoder
        from babelir.models.loading import model_fingerprint

        device = self.device
        if self.family.passage_retrieval:
            init_distributed()
            device = device or rank_device()
        st, opts = load_encoder(self.model, self.options, device=device)
        info = {
            "model": model_name(self.model),
            "model_fingerprint": model_fingerprint(st),
            "max_seq_length": opts.max_seq_length,
            "device": str(st.device),
        }
        return st, opts, info

    @property
    def shard_dir(self) -> Path:
        """``--work-dir``, else the user cache's shard folder (shared by later runs)."""
        from babelir.core.settings import cache_dir

        return Path(self.work_dir) if self.work_dir else cache_dir() / "shards"

    def finish(
        self, doc: dict[str, Any], write: Callable[[Path], None], warnings: Iterable[str] = ()
    ) -> None:
        """Print the family's table of ``doc`` and the warnings (one line each); ``write``
        the results to ``--output`` where given."""
        out.print(self.family.console_table(doc))
        for line in warnings:
            print_warning(line)
        if self.output is not None:
            write(Path(self.output))
            console.print(
                f"wrote {Path(self.output) / 'metrics.json'}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )


def _option(default: Any, ann: Any, *decls: str, help: str) -> tuple[Any, Any]:
    return default, Annotated[ann, typer.Option(*decls, help=help)]


def _shared_parameters(family: BenchmarkFamily) -> list[inspect.Parameter]:
    """The options of every family command; the search, shard and BM25 ones for
    passage-retrieval families."""
    torchrun = "; torchrun: the local rank's" if family.passage_retrieval else ""
    benchmark = family.cli_help.get(
        "benchmark", f"{', '.join(family.benchmarks)} (the family's one benchmark)."
    )
    output = family.cli_help.get("output", "Folder for metrics.json.")
    spec: dict[str, tuple[Any, Any]] = {
        "model": (None, ModelOpt),
        "benchmark": _option(family.benchmarks[0], str, "--benchmark", "-b", help=benchmark),
        "data_dir": (None, DataDirOpt),
        "languages": (None, LanguagesOpt),
        "output": _option(None, Path | None, "--output", "-o", help=output),
        "no_cache": (False, NoCacheOpt),
        "device": _option(
            None, str | None, "--device", help=f"cpu, cuda, cuda:1 ... (default: auto{torchrun})."
        ),
        "quiet": (False, QuietOpt),
    }
    if family.passage_retrieval:
        spec |= {
            "index": _option(
                "flat", str, "--index",
                help="Search: flat (exact), ivf, hnsw or a FAISS factory string.",
            ),
            "nlist": _option(None, int | None, "--nlist", help="IVF cells (default ~4 sqrt(N))."),
            "nprobe": _option(
                None, int | None, "--nprobe", help="IVF cells probed (default nlist/16)."
            ),
            "work_dir": _option(
                None, Path | None, "--work-dir",
                help="Shard folder (default <cache>/shards); reused, resumable.",
            ),
        }  # fmt: skip
    if family.bm25 is not None:
        spec["bm25"] = _option(False, bool, "--bm25", help=family.cli_help["bm25"])
    return [inspect.Parameter(k, _KW, default=d, annotation=a) for k, (d, a) in spec.items()]


def _run(family: BenchmarkFamily, values: dict[str, Any], shared: dict[str, Any],
         retrieval: RetrievalOptions) -> FamilyRun:  # fmt: skip
    benchmark = shared["benchmark"]
    if not family.fallback and benchmark not in family.benchmarks:
        raise ConfigError(
            f"--benchmark {benchmark}: this is the {family.title} family "
            f"({', '.join(family.benchmarks)})"
        )
    quiet, no_cache = shared.pop("quiet"), shared.pop("no_cache")
    options = encode_options(values, quiet=quiet, cache=not no_cache)
    if family.passage_retrieval:
        from babelir.index.faiss_backend import IndexSpec

        index = shared.pop("index")
        shared["index"] = IndexSpec(kind=index, nlist=shared.pop("nlist"),
                                    nprobe=shared.pop("nprobe"))  # fmt: skip
    return FamilyRun(family, options=options, retrieval=retrieval, **shared)


def family_command(
    app: typer.Typer, kind: str
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``body(run: FamilyRun, **own)`` as family ``kind``'s ``evaluate`` command
    (see the module docstring); ``own`` are the options only this family takes."""
    family = get_family(kind)

    def register(body: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(body, eval_str=True).parameters.values())[1:]
        shared = _shared_parameters(family)

        def command(values: dict[str, Any], ctx: typer.Context, **kw: Any) -> None:
            common = {p.name: kw.pop(p.name) for p in shared}
            retrieval = retrieval_options(kw, family.options, family, ctx)
            body(_run(family, values, common, retrieval), **kw)

        params = [*shared, *retrieval_parameters(family.options, family), *_keyword(own)]
        _sign(command, body, params)
        schema_command(app, EncodeOptions, ENCODE_OPTIONS, name="evaluate")(command)
        return body

    return register


def family_app() -> typer.Typer:
    """The Typer app of a family module (its one command: ``evaluate``)."""
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False)


__all__ = [
    "FamilyRun",
    "family_app",
    "family_command",
    "retrieval_options",
    "retrieval_parameters",
    "with_retrieval_options",
]
