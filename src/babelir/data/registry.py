"""The datasets babelir knows how to download, pinned to exact upstream commits.

Every file is described by its path inside the data dir (the layout of
``/work/shared/data``, so a copy of that folder is a valid data dir and a valid mirror),
the raw GitHub URL at a fixed commit, and the SHA256 it must have. Pinning both the
commit and the hash makes a fetched benchmark bit-identical to the one results were
reported on.

The hashes live in ``checksums.json`` next to this module (one ``"path": "sha256"`` per
file, same paths as ``SHA256SUMS`` in the shared data folder). A file without an entry
there is *unpinned* (``sha256=None``): MLQA-R, whose full files were not available when
the registry was written. :mod:`babelir.data.fetch` records what it downloaded for those
in ``<data_dir>/<dataset>/SHA256SUMS.local`` and warns that the hash is not pinned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from babelir.errors import DataError

_RAW = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"

LAREQA = "google-research-datasets/lareqa"
XQUAD_R_COMMIT = "9bc8c7fb6dd8d01d72a05a93c2cb96882b0d299c"
# MLQA-R was removed from lareqa's newest commit; this one still has mlqa-r/*.json.
MLQA_R_COMMIT = "354d67d1cd066854cdfbf5ad0e6105528976141d"
XQUAD = "google-deepmind/xquad"
XQUAD_COMMIT = "7d30520c717524000f0d9d2f9c10a069acd9d285"
ANSERINI_TOOLS = "castorini/anserini-tools"
ANSERINI_TOOLS_COMMIT = "5b819c1a45c8a0a3ec9426f476694f44a29dfaf3"
# anserini-tools keeps topics and qrels side by side in one folder (Anserini mounts the
# repo as ``tools/``, hence ``tools/topics-and-qrels/...`` in Anserini's docs); babelir
# splits them into ``miracl/topics`` and ``miracl/qrels``. Change the folder here if
# upstream moves it.
ANSERINI_TOPICS_AND_QRELS = "topics-and-qrels"

XQUAD_R_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
MLQA_R_LANGUAGES = ("ar", "de", "en", "es", "hi", "vi", "zh")
XQUAD_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
MIRACL_LANGUAGES = (
    "ar", "bn", "de", "en", "es", "fa", "fi", "fr", "hi", "id", "ja", "ko", "ru", "sw",
    "te", "th", "yo", "zh",
)  # fmt: skip
# MIRACL v1.0 has no training split for the two surprise languages (de, yo).
MIRACL_TRAIN_LANGUAGES = tuple(lang for lang in MIRACL_LANGUAGES if lang not in ("de", "yo"))


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: where it goes locally, where it comes from, what it hashes to."""

    path: str  # POSIX path relative to the data dir, e.g. "xquad-r/en.json"
    url: str  # upstream raw URL at the pinned commit
    sha256: str | None  # None: not pinned (see module docstring)


@dataclass(frozen=True)
class Dataset:
    """A downloadable dataset: one folder of the data dir, one upstream repo at one commit."""

    name: str
    directory: str  # top-level folder in the data dir; holds SHA256SUMS.local if any
    repo: str
    commit: str
    license: str
    languages: tuple[str, ...]
    files: tuple[DataFile, ...]
    description: str

    @property
    def pinned(self) -> bool:
        """Whether every file has a known SHA256."""
        return all(f.sha256 is not None for f in self.files)


@cache
def _checksums() -> dict[str, str]:
    text = resources.files("babelir.data").joinpath("checksums.json").read_text("utf-8")
    return json.loads(text)


def _files(
    repo: str, commit: str, mapping: list[tuple[str, str]], pinned: bool
) -> tuple[DataFile, ...]:
    """Build DataFiles from (local path, upstream path) pairs; pinned ones must have a hash."""
    sums = _checksums()
    out = []
    for local, upstream in mapping:
        sha = sums.get(local)
        if pinned and sha is None:  # a registry bug, not a user error
            raise RuntimeError(f"no SHA256 for {local} in babelir/data/checksums.json")
        out.append(DataFile(local, _RAW.format(repo=repo, commit=commit, path=upstream), sha))
    return tuple(out)


def _miracl_mapping() -> list[tuple[str, str]]:
    pairs = [("miracl/LICENSE", "LICENSE")]
    for kind in ("topics", "qrels"):
        for split, langs in (("dev", MIRACL_LANGUAGES), ("train", MIRACL_TRAIN_LANGUAGES)):
            for lang in langs:
                name = f"{kind}.miracl-v1.0-{lang}-{split}.tsv"
                pairs.append((f"miracl/{kind}/{name}", f"{ANSERINI_TOPICS_AND_QRELS}/{name}"))
    return pairs


@cache
def datasets() -> dict[str, Dataset]:
    """All registered datasets by name, in a stable order."""
    xquad_r = [(f"xquad-r/{lang}.json",) * 2 for lang in XQUAD_R_LANGUAGES]
    xquad_r.append(("xquad-r/LICENSE",) * 2)
    mlqa_r = [(f"mlqa-r/{lang}.json",) * 2 for lang in MLQA_R_LANGUAGES]
    xquad = [(f"xquad/xquad.{lang}.json", f"xquad.{lang}.json") for lang in XQUAD_LANGUAGES]
    items = [
        Dataset(
            name="xquad-r",
            directory="xquad-r",
            repo=LAREQA,
            commit=XQUAD_R_COMMIT,
            license="CC BY-SA 4.0",
            languages=XQUAD_R_LANGUAGES,
            files=_files(LAREQA, XQUAD_R_COMMIT, xquad_r, pinned=True),
            description="LAReQA XQuAD-R: 11-way parallel QA as sentence retrieval",
        ),
        Dataset(
            name="mlqa-r",
            directory="mlqa-r",
            repo=LAREQA,
            commit=MLQA_R_COMMIT,
            license="CC BY-NC 4.0",
            languages=MLQA_R_LANGUAGES,
            files=_files(LAREQA, MLQA_R_COMMIT, mlqa_r, pinned=False),
            description="LAReQA MLQA-R: MLQA dev as sentence retrieval (hashes not pinned)",
        ),
        Dataset(
            name="xquad",
            directory="xquad",
            repo=XQUAD,
            commit=XQUAD_COMMIT,
            license="CC BY-SA 4.0",
            languages=XQUAD_LANGUAGES,
            files=_files(XQUAD, XQUAD_COMMIT, xquad, pinned=True),
            description="XQuAD: 240 SQuAD v1.1 dev paragraphs translated, 12 languages",
        ),
        Dataset(
            name="miracl",
            directory="miracl",
            repo=ANSERINI_TOOLS,
            commit=ANSERINI_TOOLS_COMMIT,
            license="Apache-2.0",
            languages=MIRACL_LANGUAGES,
            files=_files(ANSERINI_TOOLS, ANSERINI_TOOLS_COMMIT, _miracl_mapping(), pinned=True),
            description="MIRACL v1.0 topics and qrels (dev 18 languages, train 16); no corpus",
        ),
    ]
    return {d.name: d for d in items}


def names() -> list[str]:
    """Names of all registered datasets."""
    return list(datasets())


def get(name: str) -> Dataset:
    """The dataset called ``name``; an unknown name is a user error listing the known ones."""
    try:
        return datasets()[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(names())}") from None


def languages(name: str) -> tuple[str, ...]:
    """ISO 639-1 codes of a dataset's languages, e.g. the 11 of ``languages("xquad-r")``."""
    return get(name).languages
