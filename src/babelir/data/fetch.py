"""Download registered datasets into the data dir, and verify what is there.

Downloads use only the standard library (``urllib``) so fetching works in a bare
environment, stream to a temporary file while hashing, and are renamed into place only
after the SHA256 (or, for files pinned that way, the git blob id) matched: an interrupted
or corrupted download never leaves a file that looks valid. Offline machines point
``--data-dir`` / ``BABELIR_DATA_DIR`` at a copy, or ``--mirror`` / ``BABELIR_DATA_MIRROR``
at any server (or folder) with the data-dir layout.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from babelir import __version__
from babelir.core.errors import ConfigError, DataError, NetworkError
from babelir.core.fingerprint import file_sha256 as sha256_file
from babelir.core.io import atomic_path, disk_guard, write_text
from babelir.core.settings import data_dir as resolve_data_dir
from babelir.data import registry
from babelir.data.registry import DataFile, Dataset

CHUNK = 1 << 20
TIMEOUT_S = 60.0
LOCAL_SUMS = "SHA256SUMS.local"
MIRROR_ENV = "BABELIR_DATA_MIRROR"
#: The slowest a download may go, in bytes per second over each ``SLOW_WINDOW_S``: the
#: per-read timeout never trips on a server that sends a byte now and then, so without
#: this such a fetch runs until killed. ``$BABELIR_FETCH_MIN_BYTES_PER_S`` overrides it;
#: 0 turns the check off.
MIN_BYTES_PER_S = 1024
MIN_RATE_ENV = "BABELIR_FETCH_MIN_BYTES_PER_S"
SLOW_WINDOW_S = 60.0

Status = Literal["ok", "missing", "mismatch", "unverified"]


class UnpinnedHashWarning(UserWarning):
    """A file was downloaded without a pinned SHA256 to check it against."""


@dataclass(frozen=True)
class FileCheck:
    """The state of one local file: ``ok``, ``missing``, ``mismatch`` or ``unverified``.

    ``unverified``: present, but neither babelir nor SHA256SUMS.local knows its hash.
    """

    dataset: str
    relpath: str
    path: Path
    status: Status
    expected: str | None
    actual: str | None


@dataclass(frozen=True)
class VerifyReport:
    """Result of :func:`verify`: one :class:`FileCheck` per registered file checked.

    ``absent`` names datasets skipped by ``verify(None)`` because none of their files exist.
    """

    data_dir: Path
    files: tuple[FileCheck, ...]
    absent: tuple[str, ...] = ()

    def _with(self, status: Status) -> list[FileCheck]:
        return [f for f in self.files if f.status == status]

    # the files of one status each
    passed = property(lambda self: self._with("ok"))
    missing = property(lambda self: self._with("missing"))
    mismatched = property(lambda self: self._with("mismatch"))
    unverified = property(lambda self: self._with("unverified"))

    @property
    def ok(self) -> bool:
        """True when nothing is missing or altered (unverified files do not fail)."""
        return not self.missing and not self.mismatched

    def summary(self) -> str:
        """One line for the CLI, e.g. ``12 ok, 0 missing, 1 mismatched, 0 unverified``."""
        line = (
            f"{self.data_dir}: {len(self.passed)} ok, {len(self.missing)} missing, "
            f"{len(self.mismatched)} mismatched, {len(self.unverified)} unverified"
        )
        return line + (f" (not present: {', '.join(self.absent)})" if self.absent else "")


def git_blob_sha1(path: Path) -> str:
    """Git's blob id of a file (``git hash-object``): SHA-1 of ``b"blob <size>\\0"`` + bytes.

    Read in chunks after a stat for the size, so large files do not fill memory.
    """
    h = hashlib.sha1(usedforsecurity=False)
    h.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _read_local_sums(root: Path, ds: Dataset) -> dict[str, str]:
    """``{data-dir relative path: sha256}`` from ``<dataset>/SHA256SUMS.local`` if present."""
    sums = _read_sums_file(root / ds.directory / LOCAL_SUMS)
    return {f"{ds.directory}/{name}": h for name, h in sums.items()}


def _write_local_sums(root: Path, ds: Dataset, sums: dict[str, str]) -> Path:
    """Write ``sha256sum -c``-compatible lines (paths relative to the dataset folder)."""
    prefix = f"{ds.directory}/"
    sums_path = root / ds.directory / LOCAL_SUMS
    _write_sums_file(sums_path, {p.removeprefix(prefix): h for p, h in sums.items()})
    return sums_path


def _read_sums_file(path: Path) -> dict[str, str]:
    """``{file name: sha256}`` of a ``sha256sum`` file (empty when absent); a one-line
    DataError naming it when it cannot be read (a folder, not UTF-8 text)."""
    if not path.exists() and not path.is_symlink():
        return {}
    if path.is_dir():
        raise DataError(
            f"{path}: is a folder, expected the SHA256 sums fetch records; remove it (a "
            "fetch --force records the sums again)"
        )
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: not UTF-8 text ({e.reason} at byte {e.start}), expected `sha256sum` "
            "lines; fix or remove it (a fetch --force records the sums again)"
        ) from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    pairs = (line.split(maxsplit=1) for line in text.splitlines())
    return {p[1].lstrip("*"): p[0].lower() for p in pairs if len(p) == 2}


def _write_sums_file(path: Path, sums: dict[str, str]) -> None:
    try:
        write_text(path, "".join(f"{h}  {name}\n" for name, h in sorted(sums.items())))
    except OSError as e:
        raise DataError(f"cannot write {path} ({e.strerror or e})") from None


def _check(root: Path, ds: Dataset, f: DataFile, local: dict[str, str]) -> FileCheck:
    """Compare with the pinned SHA256, else the pinned git blob id, else SHA256SUMS.local."""
    path = root / f.path
    by_blob = f.sha256 is None and f.git_blob is not None
    expected = f.sha256 or (f"git-blob:{f.git_blob}" if by_blob else local.get(f.path))
    if not path.is_file():
        return FileCheck(ds.name, f.path, path, "missing", expected, None)
    actual = f"git-blob:{git_blob_sha1(path)}" if by_blob else sha256_file(path)
    status: Status = (
        "unverified" if expected is None else ("ok" if actual == expected else "mismatch")
    )
    return FileCheck(ds.name, f.path, path, status, expected, actual)


def _mirror_base(mirror: str) -> str:
    """A mirror may be a URL or a plain folder path (turned into a ``file://`` URL)."""
    if urllib.parse.urlsplit(mirror).scheme in ("http", "https", "file", "ftp"):
        return mirror.rstrip("/")
    return Path(mirror).expanduser().resolve().as_uri()


def _source_url(f: DataFile, mirror_base: str | None) -> str:
    if mirror_base is None:
        if f.url is None:
            raise DataError(
                f"{f.path} has no upstream download (babelir's copy was rebuilt, not copied; "
                "see the shared data README); fetch it with --mirror URL-or-folder from a data "
                "dir that has it"
            )
        return f.url
    return f"{mirror_base}/{urllib.parse.quote(f.path)}"


_OFFLINE_HINT = (
    "the network may be closed; use a local copy with --data-dir /path/to/copy "
    "(or BABELIR_DATA_DIR=/path/to/copy), or a mirror with --mirror URL "
    f"(or {MIRROR_ENV}=URL)"
)


def _network_error(url: str, exc: BaseException) -> NetworkError:
    """Turn any urllib/socket failure into one actionable line."""
    if isinstance(exc, urllib.error.HTTPError):
        hint = (
            "no file at that address (a --mirror must have the data-dir layout, e.g. "
            "<mirror>/xquad-r/en.json; without one, the upstream file moved: please report it)"
            if exc.code == 404
            else _OFFLINE_HINT
        )
        return NetworkError(f"download of {url} failed (HTTP {exc.code} {exc.reason}); {hint}")
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    text = str(reason) or type(reason).__name__
    if url.startswith("file:"):
        hint = "the mirror folder must have the data-dir layout, e.g. <folder>/xquad-r/en.json"
        return NetworkError(f"copy of {url} failed ({text}); {hint}")
    return NetworkError(f"download of {url} failed ({text}); {_OFFLINE_HINT}")


def _min_rate() -> float:
    """:data:`MIN_BYTES_PER_S`, or ``$BABELIR_FETCH_MIN_BYTES_PER_S`` where set."""
    text = os.environ.get(MIN_RATE_ENV, "").strip()
    if not text:
        return float(MIN_BYTES_PER_S)
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0 <= rate < float("inf"):
        raise ConfigError(
            f"{MIN_RATE_ENV}={text!r}: not a number of bytes per second >= 0 (0: no minimum)"
        )
    return rate


class _Pace:
    """Watches a download's throughput: :meth:`slow` says why once a window of
    :data:`SLOW_WINDOW_S` seconds got fewer bytes than the minimum rate."""

    def __init__(self) -> None:
        self.rate = _min_rate()
        self.start = time.monotonic()
        self.bytes = 0

    def slow(self, n: int) -> str | None:
        self.bytes += n
        elapsed = time.monotonic() - self.start
        if not self.rate or elapsed < SLOW_WINDOW_S:
            return None
        if self.bytes < self.rate * elapsed:
            return (
                f"too slow: {self.bytes} bytes in the last {elapsed:.1f} s, below "
                f"{self.rate:g} bytes/s ({MIN_RATE_ENV}, 0 for no minimum)"
            )
        self.start, self.bytes = time.monotonic(), 0
        return None


def _read_some(stream: Any) -> bytes:
    """Up to :data:`CHUNK` bytes, returning as soon as some arrived (``read1``): a plain
    ``read`` waits for the whole chunk, so neither a slow server is noticed nor what it
    sent is written out until then."""
    return getattr(stream, "read1", stream.read)(CHUNK)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _open(url: str) -> Any:
    """Open ``url`` (an HTTPResponse, or addinfourl for file:// mirrors)."""
    request = urllib.request.Request(url, headers={"User-Agent": f"babelir/{__version__}"})
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise _network_error(url, exc) from exc
    except ValueError as exc:  # a mirror URL urllib cannot parse
        raise NetworkError(f"download of {url} failed ({exc}); check --mirror") from exc


def _download(f: DataFile, url: str, dest: Path, progress: bool) -> str:
    """Stream ``url`` into ``dest`` atomically; return the SHA256 of what was written.

    For a pinned file the hash (SHA256, or git blob id: the temporary file is read back,
    as the id needs the size first) is checked before the rename, so a mismatch leaves
    neither ``dest`` nor a temporary file behind.
    """
    h = hashlib.sha256()
    size = 0
    try:
        with _open(url) as resp, atomic_path(dest) as tmp, open(tmp, "wb") as out:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f.path,
                disable=not progress,
                leave=False,
            )
            pace = _Pace()
            with bar:
                while True:
                    try:
                        chunk = _read_some(resp)
                    except (http.client.HTTPException, OSError) as exc:  # reset, timeout
                        raise _network_error(url, exc) from exc
                    if not chunk:
                        break
                    out.write(chunk)  # an OSError here is the disk's, reported below
                    h.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
                    if why := pace.slow(len(chunk)):
                        raise NetworkError(
                            f"download of {url} failed ({why}); the file was not saved: "
                            f"rerun, or use --mirror"
                        )
            if total is not None and size != total:
                raise NetworkError(
                    f"download of {url} failed (got {size} of {total} bytes); {_OFFLINE_HINT}"
                )
            actual = h.hexdigest()
            if f.sha256 is not None and actual != f.sha256:
                raise NetworkError(
                    f"checksum mismatch for {f.path} from {url}: expected sha256 {f.sha256}, "
                    f"got {actual}; the file was not saved"
                )
            out.flush()
            os.fsync(out.fileno())
            if f.sha256 is None and f.git_blob is not None:
                blob = git_blob_sha1(Path(tmp))
                if blob != f.git_blob:
                    raise NetworkError(
                        f"git blob mismatch for {f.path} from {url}: expected {f.git_blob}, "
                        f"got {blob} (sha256 {actual}); the file was not saved"
                    )
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it 0600; data is shareable
    except OSError as exc:
        raise DataError(
            f"cannot write {dest} ({exc.strerror or exc}); choose another --data-dir"
        ) from exc
    return actual


def fetch(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    mirror: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Download dataset NAME into the data dir and check every file's SHA256.

    Files already present with the right hash are kept. Each file is streamed to a
    temporary file and renamed into place only if its hash matches, so a failed or
    corrupted download leaves nothing behind. With --mirror URL (or BABELIR_DATA_MIRROR)
    files come from ``URL/<path in the data dir>`` instead of GitHub, e.g. a web server
    or folder holding a copy of a data dir. Files pinned by git blob id (the full-size
    SQuAD-train files) have the SHA256 seen recorded in ``<dataset>/SHA256SUMS.local``;
    files with no pin at all are recorded the same way, with a warning. Returns the local
    paths of all files of the dataset. Raises DataError for an unknown NAME, a file with
    no upstream download and no mirror, or an unwritable data dir; NetworkError for a
    failed download or a checksum mismatch.
    """
    ds = registry.get(name)
    root = resolve_data_dir(data_dir)
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    base = _mirror_base(mirror) if mirror else None
    local = _read_local_sums(root, ds)
    recorded: dict[str, str] = {}
    unpinned: list[str] = []
    paths = []
    try:
        for f in ds.files:
            dest = root / f.path
            paths.append(dest)
            if not force and _check(root, ds, f, local).status == "ok":
                continue
            actual = _download(f, _source_url(f, base), dest, progress)
            if f.sha256 is None:
                recorded[f.path] = actual
                if f.git_blob is None:
                    unpinned.append(f.path)
    finally:  # keep what was recorded even if a later file fails
        if recorded:
            _write_local_sums(root, ds, {**local, **recorded})
    if unpinned:
        recorded = {p: recorded[p] for p in unpinned}
        changed = sorted(p for p, h in recorded.items() if local.get(p, h) != h)
        note = ""
        if changed:
            note = f" These differ from the hashes recorded before: {', '.join(changed)}."
        warnings.warn(
            f"{ds.name}: babelir has no pinned SHA256 for {len(recorded)} file(s) "
            f"({', '.join(sorted(recorded))}); recorded the hashes of what was downloaded "
            f"in {root / ds.directory / LOCAL_SUMS}. That only detects later changes to the "
            f"local copy: it does not prove the download is the authentic upstream file.{note}",
            UnpinnedHashWarning,
            stacklevel=2,
        )
    return paths


def verify(name: str | None = None, data_dir: str | os.PathLike[str] | None = None) -> VerifyReport:
    """Check the SHA256 of the local files of dataset NAME (or of every dataset present).

    Each registered file is reported ok, missing, mismatch (altered or corrupted), or
    unverified (present, but its hash is neither pinned by babelir nor recorded in
    SHA256SUMS.local). Files pinned by git blob id are checked against that id. Without
    NAME, datasets with no file at all in the data dir are listed as not present instead
    of missing. Raises DataError for an unknown NAME.
    """
    root = resolve_data_dir(data_dir)
    if name == "miracl-corpus":
        return verify_miracl_corpus(root)
    selected: Iterable[Dataset] = [registry.get(name)] if name else registry.datasets().values()
    checks: list[FileCheck] = []
    absent: list[str] = []
    for ds in selected:
        local = _read_local_sums(root, ds)
        results = [_check(root, ds, f, local) for f in ds.files]
        if name is None and all(c.status == "missing" for c in results):
            absent.append(ds.name)
        else:
            checks.extend(results)
    if name is None:
        corpus = verify_miracl_corpus(root)
        checks.extend(corpus.files)
        absent.extend(corpus.absent)
    return VerifyReport(root, tuple(checks), tuple(absent))


def verify_miracl_corpus(data_dir: str | os.PathLike[str] | None = None) -> VerifyReport:
    """Each language folder of ``<data dir>/miracl/corpus/``. Where a fetch recorded
    ``<lang>/SHA256SUMS.local`` or left a ``.part``: every shard the hub has
    (:data:`registry.MIRACL_CORPUS_SHARDS`) present and hashed as recorded (a shard with
    only its ``.part`` is missing). A folder laid out by hand (no record) has its
    ``*.jsonl[.gz]`` files listed ``unverified``.
    ``absent`` holds ``miracl-corpus`` when no language folder is there."""
    root = resolve_data_dir(data_dir)
    base = root / MIRACL_CORPUS_DIR
    known = registry.MIRACL_CORPUS_SHARDS
    langs = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    checks: list[FileCheck] = []
    for lang in langs:
        folder = base / lang
        sums = _read_sums_file(folder / LOCAL_SUMS)
        # a .part is a shard fetch began: the shard is missing until the fetch completes it
        parts = {p.name.removesuffix(".part") for p in folder.glob("*.part")}
        if (sums or parts) and lang in known:
            files = [miracl_shard_name(i) for i in range(known[lang])]
        else:
            laid = {p.name for p in folder.glob("*.jsonl*") if not p.name.endswith(".part")}
            files = sorted(laid | parts)
        for file in files:
            path, rel = folder / file, f"{MIRACL_CORPUS_DIR}/{lang}/{file}"
            expected = sums.get(file)
            if not path.is_file():
                checks.append(FileCheck("miracl-corpus", rel, path, "missing", expected, None))
                continue
            actual = sha256_file(path)
            status: Status = (
                "unverified" if expected is None else ("ok" if actual == expected else "mismatch")
            )
            checks.append(FileCheck("miracl-corpus", rel, path, status, expected, actual))
    return VerifyReport(root, tuple(checks), () if langs else ("miracl-corpus",))


# --------------------------------------------------------------------------- MIRACL corpus
#
# The passage corpus is not on GitHub but on the Hugging Face hub, as gzipped JSONL shards
# (registry.MIRACL_CORPUS_SHARDS, up to ~1 GB each), so it is fetched apart from the pinned
# datasets: shard by shard into ``<data dir>/miracl/corpus/<lang>/`` (the layout
# ``--corpus`` reads by default), each into ``<shard>.part`` that an interrupted fetch
# leaves behind and the next one continues (HTTP Range; a seek for a mirror folder), and
# renamed into place only once it is a complete gzip stream. Nothing pins the shards: the
# SHA256 of each is recorded in ``<lang>/SHA256SUMS.local``.

MIRACL_CORPUS_DIR = "miracl/corpus"
HF_TOKEN_ENV = "HF_TOKEN"


def miracl_corpus_languages(languages: str | Sequence[str] | None) -> list[str]:
    """The languages of ``--languages`` for ``miracl-corpus``: required, each one of MIRACL's."""
    from babelir.data.types import parse_languages

    wanted = parse_languages(languages)
    known = ", ".join(registry.MIRACL_LANGUAGES)
    if not wanted:
        raise ConfigError(
            f"miracl-corpus needs --languages (e.g. sw,yo; 'all' for the 18 languages, "
            f"{sum(registry.MIRACL_CORPUS_SHARDS.values())} shards): {known}"
        )
    if wanted == ["all"]:
        return list(registry.MIRACL_LANGUAGES)
    unknown = [x for x in wanted if x not in registry.MIRACL_CORPUS_SHARDS]
    if unknown:
        raise ConfigError(f"--languages: MIRACL has no language {', '.join(unknown)} ({known})")
    return wanted


def miracl_shard_name(shard: int) -> str:
    return f"docs-{shard}.jsonl.gz"


def _corpus_url(lang: str, shard: int, base: str | None) -> str:
    """The hub's resolve URL, or ``<mirror>/miracl-corpus-v1.0-<lang>/docs-<n>.jsonl.gz``."""
    if base is None:
        return registry.MIRACL_CORPUS_URL.format(lang=lang, shard=shard)
    return f"{base}/miracl-corpus-v1.0-{lang}/{miracl_shard_name(shard)}"


def _corpus_error(url: str, exc: BaseException) -> NetworkError:
    """One line for a failed shard download; the hint names the hub-layout ``--mirror``."""
    if isinstance(exc, urllib.error.HTTPError):
        text = f"HTTP {exc.code} {exc.reason}"
    else:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        text = str(reason) or type(reason).__name__
    return NetworkError(
        f"download of {url} failed ({text}); rerun to continue it, or use --mirror DIR-or-URL "
        f"laid out like the hub (<mirror>/miracl-corpus-v1.0-<lang>/docs-<n>.jsonl.gz)"
    )


class _Source:
    """One shard opened at a byte offset: ``stream`` yields bytes, ``total`` is the full size
    (None: unknown), ``offset`` where the bytes start (0 when the server ignored Range)."""

    def __init__(self, stream: Any, total: int | None, offset: int, url: str) -> None:
        self.stream, self.total, self.offset, self.url = stream, total, offset, url

    def read(self) -> bytes:
        try:
            return _read_some(self.stream)
        except (http.client.HTTPException, OSError) as exc:  # reset, timeout
            raise _corpus_error(self.url, exc) from exc

    def close(self) -> None:
        self.stream.close()


def _open_at(url: str, offset: int) -> _Source:
    """Open ``url`` from byte ``offset``: a seek for ``file://``, a Range request for HTTP."""
    if url.startswith("file:"):
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed by _Source.close)
            total = os.fstat(f.fileno()).st_size
        except OSError as exc:
            raise NetworkError(
                f"copy of {path} failed ({exc.strerror or exc}); a --mirror folder must be "
                f"laid out like the hub, e.g. <folder>/miracl-corpus-v1.0-yo/docs-0.jsonl.gz"
            ) from None
        offset = offset if offset <= total else 0
        f.seek(offset)
        return _Source(f, total, offset, url)
    headers = {"User-Agent": f"babelir/{__version__}"}
    token = os.environ.get(HF_TOKEN_ENV)
    if token and urllib.parse.urlsplit(url).hostname == "huggingface.co":
        headers["Authorization"] = f"Bearer {token}"
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        request = urllib.request.Request(url, headers=headers)
        resp = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part is not a prefix of this file: restart
            return _open_at(url, 0)
        raise _corpus_error(url, exc) from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise _corpus_error(url, exc) from exc
    except ValueError as exc:  # a mirror URL urllib cannot parse
        raise NetworkError(f"download of {url} failed ({exc}); check --mirror") from exc
    length = resp.headers.get("Content-Length")
    size = int(length) if length and length.isdigit() else None
    if offset and resp.status == 206:
        # Content-Range: bytes <start>-<end>/<total>
        span, _, whole = (resp.headers.get("Content-Range") or "").partition("/")
        start = span.removeprefix("bytes ").partition("-")[0]
        if start.strip() != str(offset):
            resp.close()
            raise NetworkError(
                f"download of {url} failed (asked for bytes from {offset}, got "
                f"{resp.headers.get('Content-Range')!r}); delete the .part file and retry"
            )
        total = int(whole) if whole.isdigit() else (offset + size if size is not None else None)
        return _Source(resp, total, offset, url)
    return _Source(resp, size, 0, url)  # 200: the whole file (the server ignored Range)


def _complete_gzip_sha256(path: Path) -> str:
    """SHA256 of ``path`` after reading it through as gzip (member CRCs and sizes checked):
    a shard resumed from a stale ``.part`` or cut short fails here, not at evaluation."""
    import zlib

    h = hashlib.sha256()
    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            while chunk:
                d.decompress(chunk, CHUNK)
                chunk = d.unconsumed_tail
            while d.eof and d.unused_data:  # concatenated gzip members
                rest = d.unused_data
                d = zlib.decompressobj(zlib.MAX_WBITS | 16)
                while rest:
                    d.decompress(rest, CHUNK)
                    rest = d.unconsumed_tail
    if not d.eof:
        raise zlib.error("the gzip stream ends early")
    return h.hexdigest()


def _fetch_shard(url: str, dest: Path, desc: str, progress: bool) -> str:
    """Download ``url`` into ``dest`` through ``dest.part`` (kept on failure, continued by the
    next call); return the SHA256 of the completed shard."""
    import zlib

    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    pace = _Pace()  # a bad $BABELIR_FETCH_MIN_BYTES_PER_S is named before any download
    src = _open_at(url, have)
    bar = tqdm(
        total=src.total, initial=src.offset, unit="B", unit_scale=True, unit_divisor=1024,
        desc=desc, disable=not progress, leave=False,
    )  # fmt: skip
    size = src.offset
    try:
        with (
            disk_guard(dest.parent, what=part.name, hint="; the .part file is kept: rerun"),
            bar,
            open(part, "ab" if src.offset else "wb") as out,
        ):
            while chunk := src.read():
                out.write(chunk)  # at once: an abandoned download keeps what arrived
                size += len(chunk)
                bar.update(len(chunk))
                if why := pace.slow(len(chunk)):
                    raise NetworkError(
                        f"download of {url} failed ({why}); the {size} bytes received are "
                        f"kept in {part.name}: rerun to continue, or use --mirror"
                    )
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise DataError(
            f"cannot write {part} ({exc.strerror or exc}); choose another --data-dir"
        ) from exc
    finally:
        src.close()
    if src.total is not None and size != src.total:
        raise NetworkError(
            f"download of {url} stopped at {size} of {src.total} bytes; rerun to continue "
            f"from {part.name}"
        )
    try:
        sha = _complete_gzip_sha256(part)
    except (OSError, EOFError, zlib.error) as exc:
        part.unlink(missing_ok=True)
        raise NetworkError(
            f"{url}: not a complete gzip file ({exc}); deleted {part.name}, rerun to download "
            f"it again"
        ) from None
    os.replace(part, dest)
    return sha


def fetch_miracl_corpus(
    languages: str | Sequence[str] | None,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    mirror: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Download the MIRACL corpus shards of ``languages`` into ``<data dir>/miracl/corpus``.

    Shards already in place are kept (``force`` downloads them again); a ``.part`` left by
    an interrupted fetch is continued. ``mirror`` (a folder or URL laid out like the hub:
    ``<mirror>/miracl-corpus-v1.0-<lang>/docs-<n>.jsonl.gz``) replaces the hub. Raises
    ConfigError for bad ``languages``, NetworkError for a failed or incomplete download.
    Returns the shard paths, language by language. ``$HF_TOKEN``, if set, is sent to
    huggingface.co only (for a gated copy, or the hub's higher rate limits).
    """
    from babelir.core.io import build_lock

    langs = miracl_corpus_languages(languages)
    root = resolve_data_dir(data_dir) / MIRACL_CORPUS_DIR
    base = _mirror_base(mirror) if mirror else None
    paths: list[Path] = []
    changed: list[str] = []
    try:
        for lang in langs:
            folder = root / lang
            sums_path = folder / LOCAL_SUMS
            n = registry.MIRACL_CORPUS_SHARDS[lang]
            with build_lock(folder):
                folder.mkdir(parents=True, exist_ok=True)
                sums = _read_sums_file(sums_path)  # before any download: a bad one is named
                for shard in range(n):
                    dest = folder / miracl_shard_name(shard)
                    paths.append(dest)
                    if dest.is_file() and not force:
                        continue
                    if force:
                        dest.with_name(dest.name + ".part").unlink(missing_ok=True)
                    desc = f"miracl-corpus {lang} {shard + 1}/{n}"
                    url = _corpus_url(lang, shard, base)
                    sha = _fetch_shard(url, dest, desc, progress)
                    if sums.get(dest.name, sha) != sha:
                        changed.append(f"{MIRACL_CORPUS_DIR}/{lang}/{dest.name}")
                    sums[dest.name] = sha
                    _write_sums_file(sums_path, sums)
    finally:  # a changed shard is never replaced silently, even if a later one fails
        if changed:
            warnings.warn(
                f"miracl-corpus: babelir has no pinned SHA256 for its shards; recorded the "
                f"hashes of what was downloaded in <lang>/{LOCAL_SUMS} under {root}. These "
                f"differ from the hashes recorded before: {', '.join(changed)} (the "
                "upstream files changed, or the earlier download was another file).",
                UnpinnedHashWarning,
                stacklevel=2,
            )
    return paths
