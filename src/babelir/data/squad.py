"""SQuAD v1.1-format training data (SQuAD train, its translations, ARCD, CMRC 2018, iapp).

Such files have a ``context`` per paragraph but, unlike LAReQA's, no ``sentences`` /
``sentence_breaks``, so :func:`load_squad` splits each context itself and builds the
same pairs as :func:`babelir.data.parallel.from_lareqa`: (question, the sentence holding
the answer), with the paragraph's other sentences as hard negatives (``passage=
"sentence"``), or (question, paragraph) (``passage="paragraph"``).

Sentence splitter: `sentencex <https://github.com/wikimedia/sentencex>`_ (Wikimedia,
MIT). Chosen because it is maintained, covers ~300 languages with per-language
abbreviation rules and language fallbacks (an unknown code still splits), needs no model
download, and is fast (a compiled extension with wheels; XQuAD-R's 11 languages split in
about a second). On XQuAD-R (``benchmarks/sentence_split_agreement.py``) its boundaries
match LAReQA's with F1 0.96-0.98 in ar, de, el, en, es, hi, ru, vi, zh (Chinese and
Arabic split on their own terminators ``。！？`` / ``؟``) and 0.91 in tr. Thai marks
sentence ends with a space, which a rule-based splitter cannot tell from a phrase
break: sentencex keeps a Thai paragraph mostly whole (F1 0.006 against LAReQA's Thai
breaks, which follow XQuAD's translation units); PyThaiNLP's CRF model did not do much
better there (F1 0.30), so Thai positives are long passages. pysbd (~22 languages, no
Thai, unreleased since 2021) and BlingFire (English-centred models) were the other
candidates.

Answers: translated files often carry a wrong (or 0) ``answer_start``. Each answer is
checked (``context[start:start+len(text)] == text``: ``exact``); failing that, its text's
first occurrence in the context is used (``found_by_text``); failing that, the question
is paired with its whole paragraph (``on_missing="paragraph"``) or left out
(``on_missing="drop"``). :class:`SquadStats` counts each case, plus questions with an empty
question/answer (``empty``), malformed entries (``invalid``) and repeated ids
(``duplicate``, the first is kept); it is a plain dict, ready for a JSON run record.

Inputs (the format is told by the bytes, not the name: SQuAD-train's German translation
ends in ``.json_chkp1``):

* a SQuAD JSON file, plain or gzipped: ``{"data": [{"title", "paragraphs": [{"context",
  "qas": [{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}``;
* a zip holding JSONL of flattened rows (Hugging Face's SQuAD layout, e.g. iapp-wiki-qa's
  ``data.zip``: ``data/{train,valid,test}.jsonl``, one question per line with ``context``,
  ``question``, ``question_id``/``id``, ``title``, ``article_id`` and ``answers`` as
  ``{"text": [...], "answer_start": [...]}``), or holding SQuAD JSON files.
  ``PATH.zip`` reads the zip's only data file, else its ``train`` one;
  ``PATH.zip:MEMBER`` picks one by its name in the zip or its base name
  (``data.zip:valid.jsonl``).

Items keep the question ``id`` (translations of SQuAD keep SQuAD's ids, which is how
sources are linked) and carry their article in ``ParallelItem.group`` (the article's
``article_id`` or ``title``, else ``article N``), so validation can hold out whole articles.
"""

from __future__ import annotations

import gzip
import io
import re
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

from babelir.core.errors import ConfigError, DataError
from babelir.core.io import read_input
from babelir.data.jsonl import loads, parse_object
from babelir.data.lareqa import find_sentence
from babelir.data.types import ArticleSelection, ParallelItem, ParallelQA, Side

PassageMode = Literal["sentence", "paragraph"]
OnMissing = Literal["paragraph", "drop"]

_DATA_SUFFIXES = (".jsonl", ".json")
#: Zip signatures: a local file header, or the end record that is all an empty zip holds.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
#: A lone UTF-16 surrogate: valid as a JSON escape ("\\ud800"), but no text; sentencex
#: and the tokenizers fail on it with an encoding error.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class SquadStats(TypedDict):
    """Per-source counts of :func:`load_squad` (JSON-safe: str and int values only)."""

    source: str
    lang: str
    articles: int
    paragraphs: int
    sentences: int
    questions: int  # question entries seen, whatever became of them
    items: int  # items returned
    exact: int  # answer_start checked out
    found_by_text: int  # wrong offset, answer text found in the context
    paragraph: int  # answer absent, paired with the whole paragraph
    dropped: int  # answer absent, left out (on_missing="drop")
    empty: int  # empty question, context or answer list
    invalid: int  # malformed question entry (wrong types, missing fields)
    duplicate: int  # id seen before in this source (first kept)


# --------------------------------------------------------------------------- splitting


def split_sentences(text: str, lang: str) -> list[tuple[int, int]]:
    """Sentence spans ``[start, end)`` as character offsets into ``text``, whitespace trimmed.

    The spans are found by locating sentencex's segments in ``text`` in order, so they are
    offsets into the caller's string whatever unit the library counts in; segments that
    are only whitespace are left out.
    """
    import sentencex

    spans: list[tuple[int, int]] = []
    cursor = 0
    for seg in sentencex.segment(lang, text):
        piece = seg.strip()
        if not piece:
            continue
        at = text.find(piece, cursor)
        if at < 0:  # the library altered the text: keep the rest as one sentence
            rest = text[cursor:]
            start = cursor + len(rest) - len(rest.lstrip())
            end = len(text.rstrip())
            if end > start:
                spans.append((start, end))
            return spans
        spans.append((at, at + len(piece)))
        cursor = at + len(piece)
    if not spans and text.strip():  # never seen; keeps "a context has a sentence" true
        lead = len(text) - len(text.lstrip())
        spans.append((lead, len(text.rstrip())))
    return spans


# --------------------------------------------------------------------------- reading


def _split_member(path: str | Path) -> tuple[Path, str | None]:
    """``data.zip:member`` -> (``data.zip``, ``member``); any other path -> (path, None)."""
    text = str(path)
    head, sep, member = text.rpartition(".zip:")
    if sep and member and not Path(text).exists():
        return Path(head + ".zip"), member
    return Path(text), None


def _read_bytes(path: Path) -> bytes:
    return read_input(path, "a SQuAD-format file")


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _pick_member(zf: zipfile.ZipFile, path: Path, member: str | None) -> str:
    names = [
        n
        for n in zf.namelist()
        if not n.endswith("/") and not n.startswith("__MACOSX/") and "/." not in f"/{n}"
    ]
    if member is not None:
        if member in names:
            return member
        bases = (member, *(member + suffix for suffix in _DATA_SUFFIXES))
        by_base = [n for n in names if n.rsplit("/", 1)[-1] in bases]
        if len(by_base) == 1:
            return by_base[0]
        raise DataError(
            f"{path}: no member '{member}' in the zip (members: {', '.join(names) or 'none'})"
        )
    if not names:
        raise DataError(f"{path}: an empty zip (it holds no file)")
    data = [n for n in names if n.lower().endswith(_DATA_SUFFIXES)]
    if len(data) == 1:
        return data[0]
    train = [n for n in data if n.rsplit("/", 1)[-1].lower().startswith("train")]
    if len(train) == 1:
        return train[0]
    raise DataError(
        f"{path}: cannot tell which member to read ({', '.join(data) or 'no .json/.jsonl file'}); "
        f"name one as {path}:MEMBER"
    )


def _jsonl_document(text: str, where: str) -> dict[str, Any]:
    """Flattened rows (one question per line) -> a SQuAD document, grouped by article."""
    articles: dict[str, dict[str, Any]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row_where = f"{where}:{lineno}"
        row = parse_object(line, row_where)
        context = row.get("context")
        if not isinstance(context, str):
            raise DataError(f"{row_where}: missing field 'context' (a string)")
        key = str(row.get("article_id") or row.get("title") or "")
        article = articles.setdefault(
            key, {"title": row.get("title"), "article_id": row.get("article_id"), "_p": {}}
        )
        para = article["_p"].setdefault(context, {"context": context, "qas": []})
        answers = row.get("answers")
        if isinstance(answers, dict):  # {"text": [...], "answer_start": [...]}
            texts, starts = answers.get("text"), answers.get("answer_start")
            if isinstance(texts, list) and isinstance(starts, list) and len(texts) == len(starts):
                pairs = zip(texts, starts, strict=True)
                answers = [{"text": t, "answer_start": s} for t, s in pairs]
            else:
                answers = None  # counted as invalid
        qid = row.get("question_id", row.get("id"))
        para["qas"].append({"id": qid, "question": row.get("question"), "answers": answers})
    data = []
    for article in articles.values():
        paragraphs = list(article.pop("_p").values())
        data.append({**article, "paragraphs": paragraphs})
    return {"data": data}


def is_squad_file(path: Path) -> bool:
    """Whether ``path`` is what :func:`load_squad` reads (judged by its bytes, as it is):
    a zip, or plain / gzipped JSON opening with a ``data`` or ``version`` key."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
        if head[:4] in _ZIP_MAGIC:
            return True
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as g:
                head = g.read(4096)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")  # a BOM is fine
    return bool(re.match(r'\s*\{\s*"(data|version)"\s*:', text))


def _read_document(path: Path, member: str | None) -> tuple[dict[str, Any], str]:
    """The SQuAD document in ``path`` (plain / gzip JSON, or a zip member) and its label."""
    raw = _read_bytes(path)
    where = str(path)
    if raw[:4] in _ZIP_MAGIC or (member is not None and zipfile.is_zipfile(path)):
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                name = _pick_member(zf, path, member)
                data = zf.read(name)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
            raise DataError(f"{path}: not a readable zip ({e})") from None
        where = f"{path}:{name}"
        if name.lower().endswith(".jsonl"):
            return _jsonl_document(_decode(data, where), where), where
        raw = data
    elif member is not None:
        raise DataError(f"{path}: not a zip, so it has no member '{member}'")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{where}: not a readable gzip file ({e})") from None
    doc = loads(_decode(raw, where), where)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        got = type(doc).__name__ if not isinstance(doc, dict) else f"keys {sorted(doc)[:5]}"
        raise DataError(
            f"{where}: not SQuAD v1.1 format (expected an object with a 'data' list of "
            f"articles, got {got})"
        )
    return doc, where


# --------------------------------------------------------------------------- loading


@dataclass
class _Resolved:
    """One answer located in its context."""

    start: int
    case: Literal["exact", "found_by_text"]


def _resolve(answers: Sequence[Any], context: str) -> tuple[list[_Resolved], bool]:
    """Locate each well-formed answer; second value: whether any entry was malformed."""
    exact: list[_Resolved] = []
    by_text: list[_Resolved] = []
    malformed = False
    for ans in answers:
        text = ans.get("text") if isinstance(ans, dict) else None
        start = ans.get("answer_start") if isinstance(ans, dict) else None
        if not isinstance(text, str):
            malformed = True
            continue
        if not text.strip():
            continue
        if isinstance(start, bool) or not isinstance(start, int):
            start = -1  # a missing or non-integer offset counts as a wrong one
        if start >= 0 and context[start : start + len(text)] == text:
            exact.append(_Resolved(start, "exact"))
            continue
        at = context.find(text)
        if at >= 0:
            by_text.append(_Resolved(at, "found_by_text"))
    return exact + by_text, malformed


def _group(article: dict[str, Any], index: int) -> str:
    for key in ("article_id", "title"):
        value = article.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value)
    return f"article {index}"


def load_squad(
    path: str | Path,
    lang: str,
    *,
    passage: PassageMode = "sentence",
    on_missing: OnMissing = "paragraph",
    articles: ArticleSelection | str | None = None,
) -> tuple[ParallelQA, SquadStats]:
    """Training items of one SQuAD-format file in language ``lang`` and its counts.

    See the module docstring for the accepted inputs (``PATH.zip:MEMBER`` included), the
    answer checks and the counts. ``articles`` keeps the articles at those positions of
    ``data`` (``0-9``: the first ten; the syntax of ``--articles``). Raises DataError
    naming the file (and article / paragraph) for an unreadable or malformed file, or one
    without a usable question.
    """
    selection = ArticleSelection.parse(articles)
    if passage not in ("sentence", "paragraph"):
        raise ConfigError(f"passage mode '{passage}' is not 'sentence' or 'paragraph'")
    if on_missing not in ("paragraph", "drop"):
        raise ConfigError(f"on_missing '{on_missing}' is not 'paragraph' or 'drop'")
    if not isinstance(lang, str) or not lang.strip():
        raise ConfigError(f"{path}: a SQuAD-format file needs a language code")
    lang = lang.strip()
    file_path, member = _split_member(path)
    doc, where = _read_document(file_path, member)
    stats: SquadStats = {
        "source": where,
        "lang": lang,
        "articles": 0,
        "paragraphs": 0,
        "sentences": 0,
        "questions": 0,
        "items": 0,
        "exact": 0,
        "found_by_text": 0,
        "paragraph": 0,
        "dropped": 0,
        "empty": 0,
        "invalid": 0,
        "duplicate": 0,
    }
    items: list[ParallelItem] = []
    seen: set[str] = set()
    for a, article in enumerate(doc["data"]):
        if not selection.selects(a):
            continue
        awhere = f"{where}: data[{a}]"
        title = article.get("title") if isinstance(article, dict) else None
        if isinstance(title, str) and title:
            awhere += f" ({_SURROGATE.sub(chr(0xFFFD), title[:60])})"  # printable
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DataError(f"{awhere}: missing field 'paragraphs' (a list)")
        group = _group(article, a)
        stats["articles"] += 1
        for p, para in enumerate(article["paragraphs"]):
            pwhere = f"{awhere}.paragraphs[{p}]"
            if not isinstance(para, dict):
                raise DataError(f"{pwhere}: not an object")
            for key, kind in (("context", str), ("qas", list)):
                if not isinstance(para.get(key), kind):
                    raise DataError(f"{pwhere}: missing field '{key}' (a {kind.__name__})")
            stats["paragraphs"] += 1
            context: str = para["context"]
            _refuse_surrogates(context, f"{pwhere}: field 'context'")
            spans = split_sentences(context, lang) if context.strip() else []
            stats["sentences"] += len(spans)
            sentences = [context[s:e] for s, e in spans]
            for q, qa in enumerate(para["qas"]):
                stats["questions"] += 1
                kind, qid, query, resolved = _classify(qa, context)
                for name, value in (("id", qid), ("question", query)):
                    _refuse_surrogates(value, f"{pwhere}.qas[{q}] (id {qid}): field '{name}'")
                if kind in ("invalid", "empty"):
                    stats[kind] += 1
                    continue
                if qid in seen:
                    stats["duplicate"] += 1
                    continue
                if not resolved:
                    if on_missing == "drop":
                        stats["dropped"] += 1
                        continue
                    stats["paragraph"] += 1
                    side = Side(query, context.strip(), ())
                else:
                    stats[resolved[0].case] += 1
                    side = _side(query, context, resolved, spans, sentences, passage)
                seen.add(qid)
                items.append(ParallelItem(qid, {lang: side}, group=group))
    stats["items"] = len(items)
    if selection.spec != "all":
        where += f" (articles {selection.spec})"
        if not stats["articles"]:
            raise DataError(
                f"{where}: the selection holds no article (the file has {len(doc['data'])})"
            )
    if not items:
        counts = ", ".join(f"{k} {v}" for k, v in stats.items() if isinstance(v, int) and v)
        raise DataError(f"{where}: no usable question ({counts or 'empty file'})")
    return ParallelQA(items, source=where), stats


def _refuse_surrogates(text: str, where: str) -> None:
    """A one-line DataError for a lone surrogate in ``text`` (see :data:`_SURROGATE`)."""
    m = _SURROGATE.search(text)
    if m:
        where = _SURROGATE.sub("\ufffd", where)  # the message itself must print
        raise DataError(
            f"{where} holds a lone surrogate escape (\\u{ord(m.group()):04x} at character "
            f"{m.start()}), which is no text; fix or remove it in the file"
        )


def _classify(qa: Any, context: str) -> tuple[str, str, str, list[_Resolved]]:
    """(``invalid`` | ``empty`` | ``ok``, id, question, located answers) of one entry."""
    if not isinstance(qa, dict):
        return "invalid", "", "", []
    qid, question, answers = qa.get("id"), qa.get("question"), qa.get("answers")
    if (
        isinstance(qid, bool)
        or not isinstance(qid, str | int)
        or not isinstance(question, str)
        or not isinstance(answers, list)
    ):
        return "invalid", "", "", []
    qid, query = str(qid).strip(), question.strip()
    texts = [a.get("text") for a in answers if isinstance(a, dict)]
    if not qid or not query or not context.strip() or not any(
        isinstance(t, str) and t.strip() for t in texts
    ):
        return "empty", qid, query, []
    resolved, malformed = _resolve(answers, context)
    if not resolved and malformed:
        return "invalid", qid, query, []
    return "ok", qid, query, resolved


def _side(
    query: str,
    context: str,
    resolved: list[_Resolved],
    spans: list[tuple[int, int]],
    sentences: list[str],
    passage: PassageMode,
) -> Side:
    """(question, answer sentence, other sentences) or (question, paragraph)."""
    if passage == "paragraph":
        return Side(query, context.strip(), ())
    holding: list[int] = []
    for r in resolved:
        k = find_sentence(spans, r.start)
        if k is None:  # an answer starting in trailing whitespace: the last sentence
            k = 0 if r.start < spans[0][0] else len(spans) - 1
        if k not in holding:
            holding.append(k)
    positive = sentences[holding[0]]
    negatives = tuple(t for k, t in enumerate(sentences) if k not in holding and t != positive)
    return Side(query, positive, negatives)


# --------------------------------------------------------------------------- agreement


def split_agreement(path: str | Path, lang: str) -> dict[str, Any]:
    """How :func:`split_sentences` agrees with a LAReQA file's own ``sentence_breaks``.

    Per file: ``paragraphs``; ``exact`` (share of paragraphs split identically, spans
    compared whitespace-trimmed); boundary ``precision`` / ``recall`` / ``f1`` (a boundary
    is the start of every sentence but the first); ``questions`` and ``same_positive``
    (share of questions whose answer sentence, by ``answer_start``, has the same text
    under both splits). Raises DataError for a file LAReQA's parser refuses.
    """
    from babelir.data.lareqa import parse_language_file

    path = Path(path)
    parse_language_file(path, lang)  # validates the breaks, names any bad field
    doc = loads(_decode(_read_bytes(path), str(path)), str(path))
    paragraphs = exact = tp = n_ours = n_ref = questions = same = 0
    sentences_ref = sentences_ours = 0
    for article in doc["data"]:
        for para in article["paragraphs"]:
            context = para["context"]
            ref = [_trim(context, s, e) for s, e in para["sentence_breaks"]]
            ours = split_sentences(context, lang)
            paragraphs += 1
            sentences_ref += len(ref)
            sentences_ours += len(ours)
            exact += ours == ref
            mine, theirs = {s for s, _ in ours[1:]}, {s for s, _ in ref[1:]}
            tp += len(mine & theirs)
            n_ours += len(mine)
            n_ref += len(theirs)
            for qa in para["qas"]:
                start = qa["answers"][0]["answer_start"]
                questions += 1
                k_ref = find_sentence(para["sentence_breaks"], start)
                k_ours = find_sentence(ours, start) if ours else None
                same += (
                    k_ref is not None
                    and k_ours is not None
                    and context[slice(*ref[k_ref])] == context[slice(*ours[k_ours])]
                )
    precision = tp / n_ours if n_ours else 1.0
    recall = tp / n_ref if n_ref else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "lang": lang,
        "paragraphs": paragraphs,
        "exact": exact / max(paragraphs, 1),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "questions": questions,
        "same_positive": same / max(questions, 1),
        "sentences_ref": sentences_ref,
        "sentences_ours": sentences_ours,
    }


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """A span without its leading and trailing whitespace."""
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip())
    return start + lead, start + lead + len(piece.strip())
