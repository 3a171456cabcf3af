"""One entry point for every encoder babelir trains or evaluates.

``load_model`` takes the default offline model, a local folder or a hub id and returns a
sentence-transformers model, turning the many ways loading fails (missing folder, closed
network, corrupt files) into one-line :class:`~babelir.core.errors.ModelError` messages. Remote
code is never trusted. ``resolve_prefixes`` decides the query/passage prefixes (E5-style
models need them), and ``model_fingerprint`` (``memo_fingerprint`` for a model in memory)
gives a short stable id for cache keys.

sentence-transformers and torch are imported lazily: they cost ~10 s to import, and the
cheap paths here (errors, prefixes, folder fingerprints) should not pay for that.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from babelir.core.errors import ConfigError, ModelError
from babelir.models.offline_e5 import MARKER, build_offline_e5

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL = "multilingual-e5-small"
#: The shortest ``max_seq_length``: one token leaves room for no text beside a special
#: token, and fast tokenizers refuse to truncate a pair to it.
MIN_SEQ_LENGTH = 2
_DEFAULT_ALIASES = frozenset({DEFAULT_MODEL, "default"})
_E5_NAME = re.compile(r"(?<![a-z0-9])e5(?![a-z0-9])")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?$")
_FINGERPRINT_CHARS = 16
_POOLER_KEY = re.compile(r"(^|\.)pooler\.")
# Files that never change what a model computes; skipped so notes/trainer state don't matter.
_FINGERPRINT_SKIP = frozenset(
    {
        "README.md",
        MARKER,
        "NOTICE",
        "LICENSE",
        "training_args.bin",
        "trainer_state.json",
        "optimizer.pt",
        "scheduler.pt",
    }
)
_VERSION_KEYS = frozenset({"__version__", "transformers_version"})
_digest_memo: dict[tuple[str, int, int, int], str] = {}
_fingerprint_memo: weakref.WeakKeyDictionary[Any, tuple[tuple[int, ...], str]] = (
    weakref.WeakKeyDictionary()
)


def _looks_like_path(name: str) -> bool:
    """True for strings a user meant as a path; hub ids look like ``org/name``."""
    if name.startswith((".", "~", os.sep)) or name.endswith(os.sep):
        return True
    if (os.altsep and os.altsep in name) or name.count("/") > 1:
        return True
    head = name.split("/", 1)[0]
    return "/" in name and Path(head).exists()  # exists partially: ./head is a local folder


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Probe the hub endpoint quickly so a closed network fails in seconds, not minutes."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true"}:
        return False
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a proxy may reach what a direct connection cannot; let the hub client try
    url = urlparse(constants.ENDPOINT)
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
        socket.create_connection((url.hostname or "", port), timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


def _hub_candidates(model_id: str) -> list[str]:
    # SentenceTransformer prefixes bare names with its hub organization.
    return [model_id] if "/" in model_id else [model_id, f"sentence-transformers/{model_id}"]


def _cached_snapshot(model_id: str) -> Path | None:
    """The local hub-cache snapshot folder holding ``model_id``'s config, if any."""
    from huggingface_hub import try_to_load_from_cache

    for repo in _hub_candidates(model_id):
        for filename in ("modules.json", "config.json"):
            found = try_to_load_from_cache(repo, filename)
            if isinstance(found, str):
                return Path(found).parent
    return None


def default_device() -> str:
    """``cuda`` when available, else ``cpu``: where a model loads unless told."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> str:
    """``device`` if torch can place a model there, else a one-line ConfigError.

    Without this, ``cuda`` on a machine without CUDA fails deep inside the model load
    (``AssertionError: Torch not compiled with CUDA enabled``) and a typo as a
    ModelError blaming the model.
    """
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"--device {device!r}: not a torch device (use cpu, cuda, cuda:1, mps ...)"
        ) from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = "torch was built without CUDA" if torch.version.cuda is None else "no GPU visible"
            raise ConfigError(f"--device {device}: CUDA is not available here ({why}); use cpu")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(
                f"--device {device}: only {count} CUDA device(s) here (cuda:0 to cuda:{count - 1})"
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: MPS is not available here; use cpu")
    return device


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def _weight_folders(folder: Path) -> list[Path]:
    """The folder and the module folders that modules.json names (where weights live)."""
    out = [folder]
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        out += [folder / m["path"] for m in modules if isinstance(m, dict) and m.get("path")]
    except (OSError, ValueError, TypeError, KeyError):
        pass  # no or bad modules.json: sentence-transformers reports it when loading
    return [d for d in out if d.is_dir()]


def _check_weights(folder: Path) -> bool:
    """True when the folder holds safetensors weights; refuse a folder of pickles only.

    Checked per module folder (the model's and each that modules.json names): safetensors
    in one module do not make another module's ``pytorch_model.bin`` safe to load.
    """
    found = False
    for d in {d.resolve(): d for d in reversed(_weight_folders(folder))}.values():
        if any(d.glob("*.safetensors")) or any(d.glob("*.safetensors.index.json")):
            found = True
            continue
        pickles = sorted({p.name for pat in _PICKLE_WEIGHTS for p in d.glob(pat)})
        pickles = [x for x in pickles if x not in _FINGERPRINT_SKIP]
        if pickles:
            raise ModelError(
                f"cannot load model from {folder}: only pickle weights found in {d} "
                f"({', '.join(pickles)}); babelir loads safetensors (convert with "
                f"transformers' save_pretrained(safe_serialization=True))"
            )
    return found


def _load_local(folder: Path, device: str) -> SentenceTransformer:
    from safetensors import SafetensorError
    from sentence_transformers import SentenceTransformer

    model_kwargs: dict[str, Any] = {}
    if _check_weights(folder):
        model_kwargs["use_safetensors"] = True  # never fall back to a pickled .bin next to it
    try:
        return SentenceTransformer(
            str(folder),
            device=device,
            local_files_only=True,
            trust_remote_code=False,
            model_kwargs=model_kwargs,
        )
    except SafetensorError as exc:
        raise ModelError(
            f"cannot load model from {folder}: a .safetensors file is corrupt ({_first_line(exc)})"
        ) from exc
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"cannot load model from {folder}: {_first_line(exc)}") from exc


def _load_hub(model_id: str, device: str) -> SentenceTransformer:
    offline = not _hub_reachable()
    if offline and _cached_snapshot(model_id) is None:
        raise ModelError(
            f"cannot load {model_id}: the Hugging Face hub is unreachable and the model is not "
            f"cached; pass a local model folder or use the default offline model ({DEFAULT_MODEL})"
        )
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(
            model_id, device=device, local_files_only=offline, trust_remote_code=False
        )
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise ModelError(
            f"model {model_id} was not found on the Hugging Face hub or needs a token"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load {model_id} from the Hugging Face hub ({_first_line(exc)}); pass a local "
            f"model folder or use the default offline model ({DEFAULT_MODEL})"
        ) from exc


def _resolve_local(name: str) -> Path | None:
    """Map a model argument to a local folder, None for a hub id, or raise ModelError."""
    if name in _DEFAULT_ALIASES:
        return build_offline_e5()
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelError(f"model path {name} is not a folder")
    if _looks_like_path(name):
        raise ModelError(f"model path {name} does not exist")
    if not _REPO_ID.match(name) or "--" in name or ".." in name:
        raise ModelError(f"model {name!r} is neither a local folder nor a valid hub id")
    return None


def _max_positions(model: SentenceTransformer) -> int | None:
    limits = []
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None and 0 < getattr(tokenizer, "model_max_length", 0) < 1_000_000:
        limits.append(int(tokenizer.model_max_length))
    auto_model = getattr(model[0], "auto_model", None) if len(model) else None
    config_limit = getattr(getattr(auto_model, "config", None), "max_position_embeddings", None)
    if isinstance(config_limit, int) and config_limit > 0:
        limits.append(config_limit)
    return min(limits) if limits else None


def load_model(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    device: str | None = None,
    max_seq_length: int | None = None,
) -> SentenceTransformer:
    """Load an encoder: the offline default, a local folder, or a hub id.

    Args:
        name_or_path: ``None``, ``"multilingual-e5-small"`` or ``"default"`` build (once)
            and load the offline multilingual-e5-small; an existing folder is loaded from
            disk only (safetensors, no remote code); anything else is a Hugging Face id
            (a sentence-transformers or plain transformers model), fetched when first used.
        device: ``cuda`` when available, else ``cpu``, unless given.
        max_seq_length: truncate inputs at this many tokens (None: the model's own).

    Returns:
        A ``SentenceTransformer``.

    Example:
        >>> import babelir
        >>> model = babelir.load_model("runs/hybrid", max_seq_length=128)
    """
    if max_seq_length is not None and (
        isinstance(max_seq_length, bool)
        or not isinstance(max_seq_length, int)
        or max_seq_length < MIN_SEQ_LENGTH
    ):
        raise ConfigError(
            f"max_seq_length must be an integer >= {MIN_SEQ_LENGTH}, got {max_seq_length!r}"
        )
    device = check_device(device) if device else default_device()  # before any model work
    name = DEFAULT_MODEL if name_or_path is None else os.fspath(name_or_path)
    folder = _resolve_local(name)
    model = _load_local(folder, device) if folder is not None else _load_hub(name, device)
    if max_seq_length is not None:
        limit = _max_positions(model)
        if limit is not None and max_seq_length > limit:
            raise ConfigError(f"max_seq_length {max_seq_length} exceeds {name}'s limit of {limit}")
        model.max_seq_length = max_seq_length
    return model


def resolve_prefixes(
    name_or_path: str | os.PathLike[str] | None,
    model: Any = None,
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
) -> tuple[str, str]:
    """Return the (query, passage) text prefixes to use with a model.

    Per side, the first that applies: an explicit override (``""`` included); the model's
    saved prompts (``query``; ``passage``/``document``/``corpus``); ``"query: "`` /
    ``"passage: "`` when the name mentions E5 (E5 models degrade without them); else ``""``.
    """
    prompts: dict[str, str] = dict(getattr(model, "prompts", None) or {})
    name = (DEFAULT_MODEL if name_or_path is None else os.fspath(name_or_path)).lower()
    is_e5 = bool(_E5_NAME.search(name))

    def pick(override: str | None, keys: tuple[str, ...], e5_default: str) -> str:
        if override is not None:
            return override
        for key in keys:
            if prompts.get(key):
                return prompts[key]
        return e5_default if is_e5 else ""

    return (
        pick(query_prefix, ("query",), "query: "),
        pick(passage_prefix, ("passage", "document", "corpus"), "passage: "),
    )


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _digest_memo:
        if path.suffix == ".json":
            # Library version stamps change on every re-save without changing the model.
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                data = None
            if isinstance(data, dict):
                data = {k: v for k, v in data.items() if k not in _VERSION_KEYS}
                canonical = json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
                _digest_memo[key] = hashlib.sha256(canonical).hexdigest()
                return _digest_memo[key]
        with open(path, "rb") as f:
            _digest_memo[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return _digest_memo[key]


def _folder_fingerprint(folder: Path) -> str:
    """Hash the files that define the model: top level plus the module folders it names."""
    subdirs: list[str] = []
    modules_file = folder / "modules.json"
    if modules_file.is_file():
        try:
            modules = json.loads(modules_file.read_text(encoding="utf-8"))
            subdirs = [m["path"] for m in modules if isinstance(m, dict) and m.get("path")]
        except (ValueError, TypeError, KeyError):
            raise ModelError(f"{modules_file}: not valid modules.json") from None
    files = sorted(
        f
        for d in ["", *subdirs]
        if (folder / d).is_dir()
        for f in (folder / d).iterdir()
        if f.is_file() and not f.name.startswith(".") and f.name not in _FINGERPRINT_SKIP
    )
    if not files:
        raise ModelError(f"model folder {folder} holds no model files")
    h = hashlib.sha256(b"babelir-folder-v1\0")
    for f in files:
        h.update(f"{f.relative_to(folder).as_posix()}\0{_file_digest(f)}\0".encode())
    return h.hexdigest()[:_FINGERPRINT_CHARS]


def _model_fingerprint(model: SentenceTransformer) -> str:
    """Hash an in-memory model's modules, prompts and tensors (so it reflects training)."""
    import torch

    h = hashlib.sha256(b"babelir-model-v1\0")
    for module in model:
        config = module.get_config_dict() if hasattr(module, "get_config_dict") else {}
        h.update(type(module).__name__.encode())
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
    h.update(json.dumps(getattr(model, "prompts", {}) or {}, sort_keys=True).encode())
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if _POOLER_KEY.search(key):
                continue  # the HF pooler never feeds sentence embeddings; it may be random-init
            t = tensor.detach().to("cpu").contiguous()
            h.update(f"{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()[:_FINGERPRINT_CHARS]


def model_fingerprint(model_or_path: Any) -> str:
    """A short stable hash identifying a model's weights, for cache keys.

    A folder hashes its weight, config and tokenizer files (ignoring notes and library
    version stamps), so rebuilding or copying it keeps the id. A hub id uses the cached
    commit (``id@commit``) or just the id when uncached. An in-memory model hashes its
    tensors, so training changes it; it differs from its folder's id, so use one form
    consistently for a given cache.
    """
    if not isinstance(model_or_path, str | os.PathLike):
        return _model_fingerprint(model_or_path)
    name = os.fspath(model_or_path)
    folder = _resolve_local(name)
    if folder is not None:
        return _folder_fingerprint(folder)
    snapshot = _cached_snapshot(name)
    ident = f"hub:{name}@{snapshot.name}" if snapshot is not None else f"hub:{name}"
    return hashlib.sha256(ident.encode()).hexdigest()[:_FINGERPRINT_CHARS]


def memo_fingerprint(model: Any) -> str:
    """``model_fingerprint`` of an in-memory model, recomputed only after its weights change.

    Hashing every weight costs ~1 s for e5-small; tensors' version counters (bumped by
    every in-place update: optimizer steps, ``load_state_dict``) tell when to redo it.
    """
    try:
        versions = tuple(t._version for t in model.state_dict(keep_vars=True).values())
    except RuntimeError:  # inference tensors carry no version counter: never memoise
        return model_fingerprint(model)
    memo = _fingerprint_memo.get(model)
    if memo is None or memo[0] != versions:
        memo = (versions, model_fingerprint(model))
        _fingerprint_memo[model] = memo
    return memo[1]
