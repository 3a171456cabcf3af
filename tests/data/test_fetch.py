"""Dataset fetch/verify against a local HTTP mirror of the shared data folder.

Everything is served from 127.0.0.1 (or file://); a guard fails any test that would
reach the real network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import warnings
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from testkit.network import local_server, offline

from babelir.core.errors import DataError, NetworkError
from babelir.data import registry
from babelir.data.fetch import (
    LOCAL_SUMS,
    UnpinnedHashWarning,
    fetch,
    git_blob_sha1,
    sha256_file,
    verify,
)
from babelir.data.registry import DataFile, Dataset

SHARED = Path(
    os.environ.get("BABELIR_DATA_DIR")
    or Path(__file__).resolve().parents[2].parent / "shared" / "data"
)
pytestmark = pytest.mark.skipif(
    not (SHARED / "xquad-r").is_dir(), reason=f"shared data not found at {SHARED}"
)


@contextlib.contextmanager
def serve(root: Path) -> Iterator[tuple[str, list[str]]]:
    """Serve ``root`` over HTTP on a random local port; yield (base URL, request paths)."""
    hits: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            hits.append(self.path)
            super().do_GET()

    with local_server(Handler) as url:
        yield url, hits


@pytest.fixture(scope="module")
def mirror() -> Iterator[tuple[str, list[str]]]:
    with serve(SHARED) as served:
        yield served


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    offline(monkeypatch)


def leftovers(root: Path) -> list[Path]:
    """Temporary files a download could have left behind."""
    return [p for p in root.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]


def copy_files(src: Path, dst: Path) -> None:
    """Copy a folder's files without their read-only modes (unlike shutil.copytree)."""
    for path in src.rglob("*"):
        if path.is_file():
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def test_registry_matches_shared_layout() -> None:
    shared_miracl = {
        p.relative_to(SHARED).as_posix() for p in (SHARED / "miracl").rglob("*") if p.is_file()
    }
    assert {f.path for f in registry.get("miracl").files} == shared_miracl
    assert len(registry.get("xquad-r").files) == 12
    assert registry.languages("xquad-r") == registry.XQUAD_R_LANGUAGES
    assert len(registry.languages("mlqa-r")) == 7
    assert len(registry.languages("miracl")) == 18
    assert registry.get("mlqa-r").pinned
    assert next(f.sha256 for f in registry.get("mlqa-r").files if f.path == "mlqa-r/en.json") == (
        "fedd9a5cc0848dda80caf84aa36f482adaae230526a3f6e9e86926a93ef3b1e4"
    )
    en = next(f for f in registry.get("xquad-r").files if f.path == "xquad-r/en.json")
    assert en.url == (
        "https://raw.githubusercontent.com/google-research-datasets/lareqa/"
        "9bc8c7fb6dd8d01d72a05a93c2cb96882b0d299c/xquad-r/en.json"
    )
    yo = "miracl/topics/topics.miracl-v1.0-yo-dev.tsv"
    url = next(f.url for f in registry.get("miracl").files if f.path == yo)
    assert url.endswith("/5b819c1a45c8a0a3ec9426f476694f44a29dfaf3/topics-and-qrels/" + yo[14:])

    report = verify(None, SHARED)  # the shared folder is itself a valid data dir
    assert report.ok and not report.unverified
    full = tuple(f"squad-train-{lang}" for lang in registry.SQUAD_TRAIN_FULL)
    xor = ("xor-retrieve", "xor-retrieve-corpus", "dpr-wiki-corpus")
    assert report.absent == ("mlqa-r", *full, *xor, "miracl-corpus")
    slices = {
        p.relative_to(SHARED).as_posix()
        for p in (SHARED / "training").rglob("*")
        if p.is_file() and p.name != LOCAL_SUMS
    }
    assert {f.path for n in registry.TRAINING_SLICES for f in registry.get(n).files} == slices
    assert len(report.passed) == 12 + 12 + 69 + len(slices)


def test_training_slices_verify_on_the_shared_copy() -> None:
    for name in registry.TRAINING_SLICES:
        report = verify(name, SHARED)
        assert report.ok and len(report.passed) == len(registry.get(name).files), name
    arcd = registry.get("arcd").files[0]
    assert arcd.url == (
        "https://raw.githubusercontent.com/husseinmozannar/SOQAL/"
        "1229d34aa2b7a0b9a2e4858c9268e68f45d7e3c4/data/arcd.json"
    )
    rebuilt = registry.get("squad-train-en-sample").files[0]
    assert rebuilt.path.endswith("first10-articles.json") and rebuilt.url is None


def test_full_squad_train_is_pinned_by_git_blob() -> None:
    ds = registry.get("squad-train-it")
    [f] = ds.files
    assert ds.pinned and f.sha256 is None
    assert f.git_blob == "3127df88086a8c13a06bc7193ca3f9497be7744d"
    assert f.url == (
        "https://raw.githubusercontent.com/crux82/squad-it/"
        "86a19baebed654d07c4e790c07d39a02ceb6b15f/SQuAD_it-train.json.gz"
    )
    assert f.path == "training/squad-v1.1-train-full/it/SQuAD_it-train.json.gz"
    assert len(registry.SQUAD_TRAIN_FULL) == 8


def test_fetch_via_mirror_then_skip(tmp_path: Path, mirror: tuple[str, list[str]]) -> None:
    url, hits = mirror
    hits.clear()
    paths = fetch("xquad-r", tmp_path, mirror=url + "/", progress=False)
    assert len(hits) == 12
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        f.path for f in registry.get("xquad-r").files
    ]
    for p in paths:
        assert p.read_bytes() == (SHARED / p.relative_to(tmp_path)).read_bytes()
    report = verify("xquad-r", tmp_path)
    assert report.ok and len(report.passed) == 12
    assert not leftovers(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    assert paths[0].stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600

    hits.clear()
    assert fetch("xquad-r", tmp_path, mirror=url, progress=False) == paths
    assert hits == []  # everything present with the right hash: nothing downloaded

    (tmp_path / "xquad-r" / "en.json").write_text("damaged")
    fetch("xquad-r", tmp_path, mirror=url, progress=False)
    assert hits == ["/xquad-r/en.json"]  # only the damaged file is replaced
    assert verify("xquad-r", tmp_path).ok


def test_corrupted_download_leaves_nothing(tmp_path: Path) -> None:
    served = tmp_path / "mirror" / "xquad-r"
    served.mkdir(parents=True)
    for src in (SHARED / "xquad-r").iterdir():
        (served / src.name).symlink_to(src)
    (served / "de.json").unlink()
    (served / "de.json").write_bytes((SHARED / "xquad-r" / "de.json").read_bytes() + b" ")
    expected = next(f.sha256 for f in registry.get("xquad-r").files if f.path.endswith("de.json"))
    data = tmp_path / "data"
    with serve(tmp_path / "mirror") as (url, _), pytest.raises(NetworkError) as err:
        fetch("xquad-r", data, mirror=url, progress=False)
    msg = str(err.value)
    assert "xquad-r/de.json" in msg and expected in msg
    assert sha256_file(served / "de.json") in msg
    assert not (data / "xquad-r" / "de.json").exists()
    assert not leftovers(data)
    assert (data / "xquad-r" / "ar.json").exists()  # files before it were fine


def test_connection_refused_explains_offline_options(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again on exit: nothing listens there
    with pytest.raises(NetworkError) as err:
        fetch("xquad-r", tmp_path / "data", mirror=f"http://127.0.0.1:{port}", progress=False)
    msg = str(err.value)
    assert f"http://127.0.0.1:{port}/xquad-r/" in msg and "failed" in msg
    assert "--data-dir" in msg and "BABELIR_DATA_DIR" in msg and "--mirror" in msg
    assert "\n" not in msg
    assert not (tmp_path / "data").exists() or not leftovers(tmp_path / "data")


def test_http_404_is_clear(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with serve(tmp_path / "empty") as (url, _), pytest.raises(NetworkError, match="HTTP 404"):
        fetch("xquad", tmp_path / "data", mirror=url, progress=False)
    assert not leftovers(tmp_path / "data")


def test_verify_reports_modified_and_missing(tmp_path: Path) -> None:
    copy_files(SHARED / "xquad-r", tmp_path / "xquad-r")
    (tmp_path / "xquad-r" / "en.json").write_text("{}")
    (tmp_path / "xquad-r" / "de.json").unlink()
    report = verify("xquad-r", tmp_path)
    assert not report.ok
    assert [c.relpath for c in report.mismatched] == ["xquad-r/en.json"]
    assert [c.relpath for c in report.missing] == ["xquad-r/de.json"]
    assert len(report.passed) == 10
    bad = report.mismatched[0]
    assert bad.actual == sha256_file(tmp_path / "xquad-r" / "en.json") != bad.expected
    assert "1 mismatched" in report.summary() and "1 missing" in report.summary()
    assert set(verify(None, tmp_path).absent) == {*registry.names(), "miracl-corpus"} - {"xquad-r"}


def test_unknown_name(tmp_path: Path) -> None:
    for call in (
        lambda: fetch("xquad-x", tmp_path, mirror="http://127.0.0.1:9"),
        lambda: verify("xquad-x", tmp_path),
        lambda: registry.languages("xquad-x"),
    ):
        with pytest.raises(DataError, match=r"unknown dataset 'xquad-x'.*xquad-r, mlqa-r"):
            call()


def test_miracl_via_env_mirror_and_force(
    tmp_path: Path, mirror: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, hits = mirror
    monkeypatch.setenv("BABELIR_DATA_MIRROR", url)
    hits.clear()
    paths = fetch("miracl", tmp_path, progress=False)
    assert len(paths) == len(hits) == 69
    assert (tmp_path / "miracl/topics/topics.miracl-v1.0-yo-dev.tsv").read_bytes() == (
        SHARED / "miracl/topics/topics.miracl-v1.0-yo-dev.tsv"
    ).read_bytes()
    assert verify("miracl", tmp_path).ok
    hits.clear()
    fetch("miracl", tmp_path, force=True, progress=False)
    assert len(hits) == 69


def test_folder_mirror(tmp_path: Path) -> None:
    fetch("miracl", tmp_path, mirror=str(SHARED), progress=False)  # file:// under the hood
    assert verify("miracl", tmp_path).ok


def use_dataset(monkeypatch: pytest.MonkeyPatch, ds: Dataset) -> None:
    """Register ``ds`` (in place of a real dataset of the same name) for one test."""
    known = dict(registry.datasets())
    known[ds.name] = ds
    monkeypatch.setattr(registry, "datasets", lambda: known)


def test_git_blob_pin_accepts_the_file_git_hashes_and_records_its_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "mirror" / "big"
    served.mkdir(parents=True)
    body = (SHARED / "xquad-r" / "en.json").read_bytes()
    (served / "train.json").write_bytes(body)
    blob = subprocess.run(
        ["git", "hash-object", str(served / "train.json")],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert git_blob_sha1(served / "train.json") == blob
    f = DataFile("big/train.json", None, None, git_blob=blob)
    ds = Dataset("big", "big", "o/r", "c" * 40, "x", ("en",), (f,), "test")
    use_dataset(monkeypatch, ds)
    data = tmp_path / "data"
    with pytest.raises(DataError, match=r"big/train\.json has no upstream download.*--mirror"):
        fetch("big", data, progress=False)
    with serve(tmp_path / "mirror") as (url, hits):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # pinned by blob: no unpinned-hash warning
            [path] = fetch("big", data, mirror=url, progress=False)
        assert path.read_bytes() == body and hits == ["/big/train.json"]
        sums = (data / "big" / LOCAL_SUMS).read_text()
        assert sums == f"{sha256_file(served / 'train.json')}  train.json\n"
        report = verify("big", data)
        assert report.ok and report.passed[0].actual == f"git-blob:{blob}"
        hits.clear()
        fetch("big", data, mirror=url, progress=False)
        assert hits == []  # verified by its blob id: kept

    (data / "big" / "train.json").write_bytes(body + b" ")
    bad = verify("big", data)
    assert [c.relpath for c in bad.mismatched] == ["big/train.json"]


def test_wrong_git_blob_pin_is_refused_and_nothing_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "mirror" / "big"
    served.mkdir(parents=True)
    (served / "train.json").write_bytes(b'{"data": []}\n')
    wrong = "77f1d9a7daee11f7bc293832020f7709f63410ad"
    f = DataFile("big/train.json", "http://127.0.0.1:9/x", None, git_blob=wrong)
    use_dataset(monkeypatch, Dataset("big", "big", "o/r", "c", "x", ("en",), (f,), "test"))
    data = tmp_path / "data"
    with serve(tmp_path / "mirror") as (url, _), pytest.raises(NetworkError) as err:
        fetch("big", data, mirror=url, progress=False)
    msg = str(err.value)
    actual = git_blob_sha1(served / "train.json")
    assert "big/train.json" in msg and wrong in msg and actual in msg and "\n" not in msg
    assert not (data / "big" / "train.json").exists()
    assert not (data / "big" / LOCAL_SUMS).exists()
    assert not leftovers(data)


def test_pinned_mlqa_r_refuses_other_bytes(tmp_path: Path) -> None:
    served = tmp_path / "mirror" / "mlqa-r"
    served.mkdir(parents=True)
    (served / "ar.json").write_text('{"data": []}')
    with serve(tmp_path / "mirror") as (url, _), pytest.raises(NetworkError, match="mlqa-r/ar"):
        fetch("mlqa-r", tmp_path / "data", mirror=url, progress=False)
    assert not leftovers(tmp_path / "data")


def test_unpinned_files_record_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mlqa = registry.get("mlqa-r")  # no registered file is unpinned now: unpin MLQA-R here
    unpinned = tuple(dataclasses.replace(f, sha256=None) for f in mlqa.files)
    use_dataset(monkeypatch, dataclasses.replace(mlqa, files=unpinned))
    served = tmp_path / "mirror"
    for lang in registry.MLQA_R_LANGUAGES:
        path = served / "mlqa-r" / f"{lang}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'{{"data": [], "lang": "{lang}"}}')
    data = tmp_path / "data"
    with serve(served) as (url, hits):
        with pytest.warns(UnpinnedHashWarning, match="no pinned SHA256.*not prove"):
            fetch("mlqa-r", data, mirror=url, progress=False)
        sums = (data / "mlqa-r" / LOCAL_SUMS).read_text().splitlines()
        assert sums[0] == f"{sha256_file(served / 'mlqa-r' / 'ar.json')}  ar.json"
        assert len(sums) == 7
        report = verify("mlqa-r", data)
        assert report.ok and len(report.passed) == 7

        hits.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # recorded hashes match: no download, no warning
            fetch("mlqa-r", data, mirror=url, progress=False)
        assert hits == []

        (served / "mlqa-r" / "vi.json").write_text("{}")  # upstream changed
        with pytest.warns(UnpinnedHashWarning, match=r"differ .*: mlqa-r/vi\.json"):
            fetch("mlqa-r", data, mirror=url, force=True, progress=False)
        assert len(hits) == 7
        assert verify("mlqa-r", data).ok

    (data / "mlqa-r" / "en.json").write_text("changed")
    assert [c.relpath for c in verify("mlqa-r", data).mismatched] == ["mlqa-r/en.json"]
    (data / "mlqa-r" / LOCAL_SUMS).unlink()
    report = verify("mlqa-r", data)
    assert report.ok and len(report.unverified) == 7
