"""Edit LAReQA paragraphs in tests without breaking what the loader checks.

A paragraph's ``sentences``, ``sentence_breaks`` and ``context`` describe the same text
(babelir refuses a file where they disagree), so a test that changes a sentence's text
must change the context, the spans after it and the answer offsets with it.
"""

from __future__ import annotations

from typing import Any


def append_to_sentences(para: dict[str, Any], suffix: str) -> None:
    """Append ``suffix`` to every sentence of ``para`` (in place), in the context too.

    An offset ``i`` of the old context moves by ``len(suffix)`` times the number of
    sentences ending at or before it, so spans, answers and shared boundaries (zh) stay
    where they were relative to their sentence.
    """
    context: str = para["context"]
    breaks = [list(b) for b in para["sentence_breaks"]]
    pieces, previous = [], 0
    for _, end in breaks:
        pieces += [context[previous:end], suffix]
        previous = end
    pieces.append(context[previous:])

    def moved(i: int) -> int:
        return i + len(suffix) * sum(end <= i for _, end in breaks)

    para["context"] = "".join(pieces)
    para["sentence_breaks"] = [[moved(s), moved(e)] for s, e in breaks]  # e: its own too
    para["sentences"] = [s + suffix for s in para["sentences"]]
    for qa in para.get("qas", []):
        for answer in qa.get("answers", []):
            answer["answer_start"] = moved(answer["answer_start"])


def lang_doc(
    lang: str, articles: int = 2, paragraphs: int = 2, sentences: int = 3, topic: Any = None
) -> dict[str, Any]:
    """A LAReQA file whose breaks, sentences and contexts agree; two questions a paragraph,
    their ids shared across languages (translations). ``topic(a, p)`` names a paragraph's
    topic (default ``f"{a}{p}"``)."""
    data = []
    for a in range(articles):
        paras = []
        for p in range(paragraphs):
            name = topic(a, p) if topic is not None else f"{a}{p}"
            sents = [f"{lang} sentence {a}.{p}.{k} about topic {name}." for k in range(sentences)]
            breaks, pos = [], 0
            for text in sents:
                breaks.append([pos, pos + len(text)])
                pos += len(text) + 1
            qas = [
                {
                    "id": f"q{a}-{p}-{k}",
                    "question": f"{lang} question {a}.{p}.{k}?",
                    "answers": [{"text": sents[k], "answer_start": breaks[k][0]}],
                }
                for k in range(2)
            ]
            paras.append(
                {"context": " ".join(sents), "sentences": sents, "sentence_breaks": breaks,
                 "qas": qas}
            )  # fmt: skip
        data.append({"title": f"article {a}", "paragraphs": paras})
    return {"version": "1.1", "data": data}
