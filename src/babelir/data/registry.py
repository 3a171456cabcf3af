"""The datasets babelir knows how to download, pinned to exact upstream commits.

Every file is described by its path inside the data dir (the layout of
``/work/shared/data``, so a copy of that folder is a valid data dir and a valid mirror),
the raw GitHub URL at a fixed commit, and the SHA256 it must have. Pinning both the
commit and the hash makes a fetched benchmark bit-identical to the one results were
reported on.

The hashes live in ``checksums.json`` next to this module (one ``"path": "sha256"`` per
file, same paths as ``SHA256SUMS`` in the shared data folder). Files too big to hash
where the registry was written (the full-size SQuAD-train files and their translations)
are pinned instead by their *git blob id* (``git_blob``: SHA-1 of ``b"blob <size>\0"`` +
the bytes, what ``git hash-object`` prints), which GitHub shows for every file at a
commit; :mod:`babelir.data.fetch` checks it and records the SHA256 it saw in
``<data_dir>/<dataset>/SHA256SUMS.local``. A file with neither pin is *unpinned*: fetch
records its hash the same way and warns that it is not pinned (the XOR-Retrieve files,
hosted on the task's site with no published hash, are unpinned).

A few files have no upstream download (``url=None``): the shared copy's English SQuAD
slice was rebuilt from the SQuAD explorer's pages, not copied; only ``--mirror`` (a copy
of a data dir that has it) can fetch it, and ``verify`` checks it like any other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from babelir.core.errors import DataError

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

# Full-size SQuAD v1.1 train and its id-preserving machine translations:
# lang -> (repo, commit, upstream path, git blob id).
SQUAD_TRAIN_FULL: dict[str, tuple[str, str, str, str]] = {
    "en": ("rajpurkar/SQuAD-explorer", "eee5fdbf62f8613a7812b03419e6b29617b74fd1",
           "dataset/train-v1.1.json", "77f1d9a7daee11f7bc293832020f7709f63410ad"),
    "es": ("ccasimiro88/TranslateAlignRetrieve", "c84784219785c1fc05884b26081d9b7b4156c019",
           "SQuAD-es-v1.1/train-v1.1-es.json", "d1275fc9df544a9614ea6ba5f4feac93402ae8c1"),
    "it": ("crux82/squad-it", "86a19baebed654d07c4e790c07d39a02ceb6b15f",
           "SQuAD_it-train.json.gz", "3127df88086a8c13a06bc7193ca3f9497be7744d"),
    "pt": ("nunorc/squad-v1.1-pt", "da73fd9d7ae32ab063882c02e4be3bfda4a12193",
           "train-v1.1-pt.json", "61c0b3542407290a14039836bfa388fc4a557b99"),
    "zh": ("junzeng-pluto/ChineseSquad", "68bc319f89a8b15682e7a174da21658e559bb560",
           "squad_1.1/train-v1.1-zh.json", "e401936f9571cd3b217dab56bbe44a3bc3cdde1e"),
    "ar": ("husseinmozannar/SOQAL", "1229d34aa2b7a0b9a2e4858c9268e68f45d7e3c4",
           "data/Arabic-SQuAD.json", "7dda8c23ed143a39c201c892da09f045162df6ef"),
    "de": ("markusgl/translate-squad", "ed4f07a7830f4f86e0eda1e0d2ae17cce8f1d0a8",
           "data/train-v1.1_de.json", "232dee32fe97603cfe7ccacdabd386d4a1c2164c"),
    "tr": ("boun-tabi/SQuAD-TR", "ddbfca6193400be19f335a1eafd7e341c38e8dae",
           "data/squad-tr-train-v1.0.0.json.gz", "962b1affa61883952277f2ae0c124fc93c6588c4"),
}  # fmt: skip
SQUAD_TRAIN_FULL_DIR = "training/squad-v1.1-train-full"

# The small training files of the shared data folder (training/): name -> (folder,
# description, license, languages, [(local file, repo, commit, upstream path or None)]).
# Upstream LICENSE files are taken to sit at each repository's root.
SQUAD_EXPLORER_PAGES_COMMIT = "0b3c8e824b9fd05ad69e9b6b590966e4aade2baf"
TRANSLATE_SQUAD = ("markusgl/translate-squad", "ed4f07a7830f4f86e0eda1e0d2ae17cce8f1d0a8")
SQUAD_PT = ("nunorc/squad-v1.1-pt", "da73fd9d7ae32ab063882c02e4be3bfda4a12193")
SOQAL = ("husseinmozannar/SOQAL", "1229d34aa2b7a0b9a2e4858c9268e68f45d7e3c4")
CMRC2018 = ("ymcui/cmrc2018", "c0eb1b6ba219847457e6af3180da722bbeb656af")
IAPP = ("iapp-technology/iapp-wiki-qa-dataset", "644a29c59bac62d5b15b9e9b06c55bba00708eca")
MINTAKA = ("amazon-science/mintaka", "cbb87072c9e0c92a2baf585f1d67b5a9003081a0")
# XOR-TyDi QA's human question translations, in the layout of the release's per-language
# archives (the host repository has no license file; the data is XOR-TyDi's, CC BY-SA 4.0).
XOR_TRANSLATIONS = (
    "grt812/lcm-cross-lingual-question-answering", "202bcdc144797f4c49ca74a3a72ef42543bebc36"
)
_Slice = tuple[str, str, str, tuple[str, ...], list[tuple[str, str, str, str | None]]]
TRAINING_SLICES: dict[str, _Slice] = {
    "squad-train-en-sample": (
        "training/squad-v1.1-train-en",
        "SQuAD v1.1 train, first 10 articles (rebuilt: mirror only) and a 20-question excerpt",
        "CC BY-SA 4.0", ("en",),
        [("first10-articles.json", "rajpurkar/SQuAD-explorer", SQUAD_EXPLORER_PAGES_COMMIT, None),
         ("train-v1.1_mock.json", *TRANSLATE_SQUAD, "test/data/train-v1.1_mock.json"),
         ("LICENSE.SQuAD-explorer-code", "rajpurkar/SQuAD-explorer",
          SQUAD_EXPLORER_PAGES_COMMIT, "LICENSE")],
    ),
    "squad-train-pt-sample": (
        "training/squad-v1.1-train-pt",
        "SQuAD v1.1 train, first 10 articles machine-translated to Portuguese",
        "MIT (code); CC BY-SA 4.0 (SQuAD)", ("pt",),
        [("sample-v1.1-pt.json", *SQUAD_PT, "docs/sample-v1.1-pt.json"),
         ("LICENSE", *SQUAD_PT, "LICENSE")],
    ),
    "squad-train-de-sample": (
        "training/squad-v1.1-train-de",
        "SQuAD v1.1 train, first 2 articles machine-translated to German",
        "MIT; CC BY-SA 4.0", ("de",),
        [("train-v1.1_translated.json_chkp1", *TRANSLATE_SQUAD,
          "test/data/train-v1.1_translated.json_chkp1"),
         ("LICENSE.md", *TRANSLATE_SQUAD, "LICENSE.md")],
    ),
    "arcd": (
        "training/arcd", "ARCD: native Arabic QA, 1,395 questions (SQuAD format)", "MIT",
        ("ar",), [("arcd.json", *SOQAL, "data/arcd.json"), ("LICENSE", *SOQAL, "LICENSE")],
    ),
    "cmrc2018": (
        "training/cmrc2018", "CMRC 2018: native Chinese QA, dev + trial (SQuAD style)",
        "CC BY-SA 4.0", ("zh",),
        [("cmrc2018_dev.json", *CMRC2018, "squad-style-data/cmrc2018_dev.json"),
         ("cmrc2018_trial.json", *CMRC2018, "squad-style-data/cmrc2018_trial.json"),
         ("LICENCE", *CMRC2018, "LICENCE")],
    ),
    "iapp-wiki-qa": (
        "training/iapp-wiki-qa", "iapp Wikipedia QA: native Thai, a zip of JSONL", "MIT",
        ("th",), [("data.zip", *IAPP, "squad_format/data.zip"), ("LICENSE", *IAPP, "LICENSE")],
    ),
    "mintaka": (
        "training/mintaka", "Mintaka v1.0 dev: 2,000 questions in 9 languages, no passages",
        "CC BY 4.0", ("en", "ar", "de", "es", "fr", "hi", "it", "ja", "pt"),
        [("mintaka_dev.json", *MINTAKA, "data/mintaka_dev.json"),
         ("LICENSE.md", *MINTAKA, "LICENSE.md")],
    ),
    "xor-tydi-question-translations": (
        "training/xor-tydi-question-translations",
        "XOR-TyDi QA human question translations, LANG <-> en line-aligned, no passages "
        "(bn and ko hold 20 and 22 XOR-Retrieve dev questions: leave them out there)",
        "CC BY-SA 4.0 (XOR-TyDi QA)", ("ar", "bn", "fi", "ja", "ko", "ru", "te", "en"),
        [(f"{lang}-en/{side}.txt", *XOR_TRANSLATIONS, f"{lang}-en/{side}.txt")
         for lang in ("ar", "bn", "fi", "ja", "ko", "ru", "te") for side in (lang, "en")],
    ),
}  # fmt: skip

# Stand-ins: a file of the data dir that holds exactly the items of a selection of another
# (registered, fetchable) file, read when that file is absent (training.sources.
# apply_stand_ins). (file, article selection) -> (stand-in file, its dataset, what differs).
STAND_INS: dict[tuple[str, str | None], tuple[str, str, str]] = {
    (f"{SQUAD_TRAIN_FULL_DIR}/en/train-v1.1.json", "0-9"): (
        "training/squad-v1.1-train-en/first10-articles.json",
        "squad-train-en-sample",
        "the same 10 articles, paragraphs, questions and question ids, rebuilt from the "
        "SQuAD explorer's pages; answer_start is the first occurrence of the answer text, "
        "which differs from the official offset where an answer occurs twice",
    ),
}

XQUAD_R_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
MLQA_R_LANGUAGES = ("ar", "de", "en", "es", "hi", "vi", "zh")
XQUAD_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
MIRACL_LANGUAGES = (
    "ar", "bn", "de", "en", "es", "fa", "fi", "fr", "hi", "id", "ja", "ko", "ru", "sw",
    "te", "th", "yo", "zh",
)  # fmt: skip
# MIRACL v1.0 has no training split for the two surprise languages (de, yo).
MIRACL_TRAIN_LANGUAGES = tuple(lang for lang in MIRACL_LANGUAGES if lang not in ("de", "yo"))
# XOR-TyDi XOR-Retrieve (babelir.data.xor_retrieve): questions and the passage collection
# are hosted on the task's site, not in its git repository (AkariAsai/XORQA), so there is
# no commit to pin and no published hash: the files are unpinned (fetch records their
# SHA256 in SHA256SUMS.local and warns). DPR's passages are the alternative collection.
XOR_RETRIEVE_LANGUAGES = ("ar", "bn", "fi", "ja", "ko", "ru", "te")
XORQA = "AkariAsai/XORQA"
XORQA_DATA_URL = "https://nlp.cs.washington.edu/xorqa/XORQA_site/data/"
XOR_RETRIEVE_FILES = (
    "xor_dev_retrieve_eng_span_v1_1.jsonl",
    "xor_dev_retrieve_eng_span.jsonl",
    "xor_train_retrieve_eng_span.jsonl",
)
XOR_RETRIEVE_CORPUS_URL = XORQA_DATA_URL + "models/enwiki_20190201_w100.tsv"
DPR = "facebookresearch/DPR"
DPR_CORPUS_URL = "https://dl.fbaipublicfiles.com/dpr/wikipedia_split/psgs_w100.tsv.gz"
# The MIRACL passage corpus (``babelir data fetch miracl-corpus``): gzipped JSONL shards
# docs-0 .. docs-<n-1> per language on the Hugging Face hub, n as in the dataset's own
# loading script (miracl-corpus.py, ``languages2filesize``). A fixed table, not "fetch
# until 404": a partial mirror or a transient error then reads as a missing shard, never
# as the end of a silently truncated corpus. No hashes are published: fetch records them.
MIRACL_CORPUS_URL = (
    "https://huggingface.co/datasets/miracl/miracl-corpus/resolve/main/"
    "miracl-corpus-v1.0-{lang}/docs-{shard}.jsonl.gz"
)
MIRACL_CORPUS_SHARDS = {
    "ar": 5, "bn": 1, "de": 32, "en": 66, "es": 21, "fa": 5, "fi": 4, "fr": 30, "hi": 2,
    "id": 3, "ja": 14, "ko": 3, "ru": 20, "sw": 1, "te": 2, "th": 2, "yo": 1, "zh": 10,
}  # fmt: skip


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: where it goes locally, where it comes from, what it hashes to."""

    path: str  # POSIX path relative to the data dir, e.g. "xquad-r/en.json"
    url: str | None  # upstream raw URL at the pinned commit; None: from a mirror only
    sha256: str | None  # None: not pinned by SHA256 (see module docstring)
    git_blob: str | None = None  # git blob SHA-1, for files pinned that way


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
        """Whether every file has a known SHA256 or git blob id."""
        return all(f.sha256 is not None or f.git_blob is not None for f in self.files)


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


def _squad_full(lang: str) -> Dataset:
    repo, commit, upstream, blob = SQUAD_TRAIN_FULL[lang]
    directory = f"{SQUAD_TRAIN_FULL_DIR}/{lang}"
    local = f"{directory}/{upstream.rsplit('/', 1)[-1]}"
    url = _RAW.format(repo=repo, commit=commit, path=upstream)
    what = "SQuAD v1.1 train" if lang == "en" else f"SQuAD v1.1 train machine-translated ({lang})"
    return Dataset(
        name=f"squad-train-{lang}",
        directory=directory,
        repo=repo,
        commit=commit,
        license="CC BY-SA 4.0 (SQuAD); see the repository",
        languages=(lang,),
        files=(DataFile(local, url, None, git_blob=blob),),
        description=f"{what}, full size, SQuAD ids kept (pinned by git blob id)",
    )


def _xor_retrieve() -> tuple[Dataset, ...]:
    """XOR-Retrieve questions, its passage collection and DPR's (all unpinned)."""
    questions = tuple(
        DataFile(f"xor-retrieve/{name}", XORQA_DATA_URL + name, None)
        for name in XOR_RETRIEVE_FILES
    )
    data_license = "see the XOR-TyDi site (questions from TyDi QA; passages from Wikipedia)"
    return (
        Dataset(
            name="xor-retrieve",
            directory="xor-retrieve",
            repo=XORQA,
            commit="",  # hosted on the task's site: no commit holds these files
            license=data_license,
            languages=XOR_RETRIEVE_LANGUAGES,
            files=questions,
            description="XOR-TyDi XOR-Retrieve questions: dev v1.1, dev v1.0, train (unpinned)",
        ),
        Dataset(
            name="xor-retrieve-corpus",
            directory="xor-retrieve/corpus",
            repo=XORQA,
            commit="",
            license=data_license,
            languages=("en",),
            files=(
                DataFile(
                    "xor-retrieve/corpus/enwiki_20190201_w100.tsv", XOR_RETRIEVE_CORPUS_URL, None
                ),
            ),
            description="XOR-Retrieve passages: English Wikipedia 2019-02-01 in 100-word "
            "pieces, DPR TSV, 13 GB (unpinned)",
        ),
        Dataset(
            name="dpr-wiki-corpus",
            directory="xor-retrieve/dpr-corpus",
            repo=DPR,
            commit="",
            license="CC BY-SA (Wikipedia text); see facebookresearch/DPR",
            languages=("en",),
            files=(DataFile("xor-retrieve/dpr-corpus/psgs_w100.tsv.gz", DPR_CORPUS_URL, None),),
            description="DPR's 21M English Wikipedia passages (2018-12-20), gzipped TSV, "
            "4.4 GB (unpinned); close to, not the official XOR-Retrieve collection",
        ),
    )


def _training_slice(name: str) -> Dataset:
    directory, description, license_, langs, entries = TRAINING_SLICES[name]
    sums = _checksums()
    files = []
    for local, repo, commit, upstream in entries:
        path = f"{directory}/{local}"
        if path not in sums:  # a registry bug, not a user error
            raise RuntimeError(f"no SHA256 for {path} in babelir/data/checksums.json")
        url = None if upstream is None else _RAW.format(repo=repo, commit=commit, path=upstream)
        files.append(DataFile(path, url, sums[path]))
    repo, commit = entries[0][1], entries[0][2]
    return Dataset(name, directory, repo, commit, license_, langs, tuple(files), description)


@cache
def datasets() -> dict[str, Dataset]:
    """All registered datasets by name, in a stable order."""
    xquad_r = [(f"xquad-r/{lang}.json",) * 2 for lang in XQUAD_R_LANGUAGES]
    xquad_r.append(("xquad-r/LICENSE",) * 2)
    mlqa_r = [(f"mlqa-r/{lang}.json",) * 2 for lang in MLQA_R_LANGUAGES]
    xquad = [(f"xquad/xquad.{lang}.json", f"xquad.{lang}.json") for lang in XQUAD_LANGUAGES]
    # one upstream repo at one pinned commit each: (name = folder, repo, commit, license,
    # languages, (local, upstream) files, description)
    pinned_repos = [
        ("xquad-r", LAREQA, XQUAD_R_COMMIT, "CC BY-SA 4.0", XQUAD_R_LANGUAGES, xquad_r,
         "LAReQA XQuAD-R: 11-way parallel QA as sentence retrieval"),
        ("mlqa-r", LAREQA, MLQA_R_COMMIT, "CC BY-NC 4.0", MLQA_R_LANGUAGES, mlqa_r,
         "LAReQA MLQA-R: MLQA dev as sentence retrieval"),
        ("xquad", XQUAD, XQUAD_COMMIT, "CC BY-SA 4.0", XQUAD_LANGUAGES, xquad,
         "XQuAD: 240 SQuAD v1.1 dev paragraphs translated, 12 languages"),
        ("miracl", ANSERINI_TOOLS, ANSERINI_TOOLS_COMMIT, "Apache-2.0", MIRACL_LANGUAGES,
         _miracl_mapping(),
         "MIRACL v1.0 topics and qrels (dev 18 languages, train 16); no corpus"),
    ]  # fmt: skip
    items = [
        *(
            Dataset(
                name, name, repo, commit, license_, langs,
                _files(repo, commit, mapping, pinned=True), description,
            )
            for name, repo, commit, license_, langs, mapping, description in pinned_repos
        ),
        *(_training_slice(name) for name in TRAINING_SLICES),
        *(_squad_full(lang) for lang in SQUAD_TRAIN_FULL),
        *_xor_retrieve(),
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
