"""Hardening (third round) of ``babelir data fetch|verify``: a half-fetched corpus folder,
changed upstream shards, a dripping mirror, unreadable ``SHA256SUMS.local`` files.

Mirrors are folders (file://) or served from 127.0.0.1; a guard fails any test that would
open another address.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from testkit.cli import call
from testkit.network import local_server, offline, send_range

from babelir.core.errors import DataError, NetworkError
from babelir.data import fetch as fetch_module
from babelir.data import registry
from babelir.data.fetch import (
    LOCAL_SUMS,
    UnpinnedHashWarning,
    fetch,
    fetch_miracl_corpus,
    sha256_file,
    verify,
    verify_miracl_corpus,
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    offline(monkeypatch)


def _shard(path: Path, n: int, tag: str = "") -> bytes:
    rows = "".join(
        json.dumps({"docid": f"{i}#0", "title": f"T{i}", "text": f"omi {tag} {i} " * 8}) + "\n"
        for i in range(n)
    )
    data = gzip.compress(rows.encode(), compresslevel=0, mtime=0)  # incompressible-ish size
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _yo_mirror(root: Path, tag: str = "") -> bytes:
    assert registry.MIRACL_CORPUS_SHARDS["yo"] == 1
    return _shard(root / "miracl-corpus-v1.0-yo" / "docs-0.jsonl.gz", 1000, tag)


# --------------------------------------------------------------------------- 9. .part only


def test_verify_reports_a_folder_holding_only_a_part_file_incomplete(tmp_path: Path, capsys):
    folder = tmp_path / "d" / "miracl" / "corpus" / "yo"
    folder.mkdir(parents=True)
    blob = _yo_mirror(tmp_path / "mirror")
    (folder / "docs-0.jsonl.gz.part").write_bytes(blob[:1000])  # an interrupted first fetch
    report = verify_miracl_corpus(tmp_path / "d")
    assert not report.ok
    assert [f.relpath for f in report.missing] == ["miracl/corpus/yo/docs-0.jsonl.gz"]
    code, out, err = call(capsys, "data", "verify", "miracl-corpus", "--data-dir",
                          str(tmp_path / "d"))  # fmt: skip
    text = " ".join((out + err).split())
    assert code == 1 and "0 ok, 1 missing" in text and "docs-0.jsonl.gz" in text
    assert "interrupted" in text
    assert not verify(None, tmp_path / "d").ok  # all datasets: the same


# --------------------------------------------------------------------------- 10. changed shards


def test_force_refetch_of_a_changed_shard_warns(tmp_path: Path, capsys) -> None:
    mirror, data = tmp_path / "mirror", tmp_path / "d"
    _yo_mirror(mirror)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the first fetch, and an unchanged refetch: silent
        fetch_miracl_corpus("yo", data, mirror=str(mirror), progress=False)
        fetch_miracl_corpus("yo", data, mirror=str(mirror), force=True, progress=False)
    new = _yo_mirror(mirror, tag="changed")  # upstream changed
    with pytest.warns(UnpinnedHashWarning, match=r"differ from the hashes recorded before: "
                      r"miracl/corpus/yo/docs-0\.jsonl\.gz"):  # fmt: skip
        fetch_miracl_corpus("yo", data, mirror=str(mirror), force=True, progress=False)
    shard = data / "miracl" / "corpus" / "yo" / "docs-0.jsonl.gz"
    assert shard.read_bytes() == new and verify_miracl_corpus(data).ok
    _yo_mirror(mirror, tag="again")
    code, _, err = call(capsys, "data", "fetch", "miracl-corpus", "--languages", "yo",
                        "--mirror", str(mirror), "--data-dir", str(data), "--force")  # fmt: skip
    assert code == 0 and "warning:" in err and "differ from the hashes recorded before" in err


# --------------------------------------------------------------------------- 13. slow mirror


@contextlib.contextmanager
def _serve(root: Path, drip: dict[str, Any]) -> Iterator[tuple[str, list]]:
    """Serve ``root`` with Range support; while ``drip["on"]``, a request from byte 0 gets
    64 KiB, then one byte every ``drip["every"]`` seconds."""
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            seen.append((self.path, rng))
            data = (root / urllib.parse.unquote(self.path.lstrip("/"))).read_bytes()
            body = send_range(self, data)
            start = len(data) - len(body)
            try:
                if drip["on"] and start == 0:
                    self.wfile.write(body[:65536])
                    for i in range(65536, 65536 + 200):  # far longer than the test waits
                        time.sleep(drip["every"])
                        self.wfile.write(body[i : i + 1])
                    self.close_connection = True
                    return
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up: what a slow download should do

    with local_server(Handler) as url:
        yield url, seen


def test_dripping_mirror_is_abandoned_and_the_part_continued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = _yo_mirror(tmp_path / "mirror")
    assert len(blob) > 65536 + 200
    monkeypatch.setenv("BABELIR_FETCH_MIN_BYTES_PER_S", "20000")
    monkeypatch.setattr(fetch_module, "SLOW_WINDOW_S", 0.5)
    data = tmp_path / "d"
    part = data / "miracl" / "corpus" / "yo" / "docs-0.jsonl.gz.part"
    drip = {"on": True, "every": 0.05}
    with _serve(tmp_path / "mirror", drip) as (base, seen):
        began = time.monotonic()
        with pytest.raises(NetworkError, match="too slow") as err:
            fetch_miracl_corpus("yo", data, mirror=base, progress=False)
        assert time.monotonic() - began < 5  # not the 10 s the drip lasts
        msg = str(err.value)
        assert "BABELIR_FETCH_MIN_BYTES_PER_S" in msg and "rerun" in msg and "\n" not in msg
        have = part.stat().st_size
        assert have >= 65536  # what arrived is in the .part
        assert part.read_bytes() == blob[:have]
        drip["on"] = False
        fetch_miracl_corpus("yo", data, mirror=base, progress=False)
    assert seen[-1][1] == f"bytes={have}-"  # continued, not restarted
    assert (data / "miracl" / "corpus" / "yo" / "docs-0.jsonl.gz").read_bytes() == blob


def test_bad_min_rate_setting_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _yo_mirror(tmp_path / "mirror")
    monkeypatch.setenv("BABELIR_FETCH_MIN_BYTES_PER_S", "fast")
    with pytest.raises(Exception, match="BABELIR_FETCH_MIN_BYTES_PER_S") as err:
        fetch_miracl_corpus("yo", tmp_path / "d", mirror=str(tmp_path / "mirror"), progress=False)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- 18. SHA256SUMS.local


def test_sums_file_not_utf8_is_named(tmp_path: Path, capsys) -> None:
    xq = tmp_path / "d" / "xquad-r"
    xq.mkdir(parents=True)
    (xq / LOCAL_SUMS).write_bytes(b"\xff\xfe\x00 not text")
    corpus = tmp_path / "d" / "miracl" / "corpus" / "yo"
    corpus.mkdir(parents=True)
    (corpus / LOCAL_SUMS).write_bytes(b"\xff\xfe\x00 not text")
    for name, sums in (("xquad-r", xq / LOCAL_SUMS), ("miracl-corpus", corpus / LOCAL_SUMS)):
        with pytest.raises(DataError, match="not UTF-8") as err:
            verify(name, tmp_path / "d")
        assert str(sums) in str(err.value)
        code, _, err_text = call(capsys, "data", "verify", name, "--data-dir", str(tmp_path / "d"))
        assert code == 2 and err_text.strip().startswith("error:") and "Traceback" not in err_text
        assert "not UTF-8" in err_text and len(err_text.strip().splitlines()) == 1


def test_sums_path_that_is_a_folder_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    mirror, data = tmp_path / "mirror", tmp_path / "d"
    _yo_mirror(mirror)
    (data / "miracl" / "corpus" / "yo" / LOCAL_SUMS).mkdir(parents=True)
    with pytest.raises(DataError, match="is a folder") as err:
        fetch_miracl_corpus("yo", data, mirror=str(mirror), progress=False)
    assert str(data / "miracl" / "corpus" / "yo" / LOCAL_SUMS) in str(err.value)
    code, _, err_text = call(capsys, "data", "fetch", "miracl-corpus", "--languages", "yo",
                             "--mirror", str(mirror), "--data-dir", str(data))  # fmt: skip
    assert code == 2 and "is a folder" in err_text and "Traceback" not in err_text

    # a registered dataset whose hashes fetch records (unpinned): the same
    served = tmp_path / "m2" / "mlqa-r"
    files = []
    for lang in registry.MLQA_R_LANGUAGES:
        (served / f"{lang}.json").parent.mkdir(parents=True, exist_ok=True)
        (served / f"{lang}.json").write_text(f'{{"data": [], "lang": "{lang}"}}')
    mlqa = registry.get("mlqa-r")
    files = tuple(dataclasses.replace(f, sha256=None) for f in mlqa.files)
    known = dict(registry.datasets())
    known["mlqa-r"] = dataclasses.replace(mlqa, files=files)
    monkeypatch.setattr(registry, "datasets", lambda: known)
    (data / "mlqa-r" / LOCAL_SUMS).mkdir(parents=True)
    with pytest.raises(DataError, match="is a folder") as err:
        fetch("mlqa-r", data, mirror=str(tmp_path / "m2"), progress=False)
    assert str(data / "mlqa-r" / LOCAL_SUMS) in str(err.value)
    assert sha256_file(served / "en.json")  # the mirror was fine
