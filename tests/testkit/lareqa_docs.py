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
