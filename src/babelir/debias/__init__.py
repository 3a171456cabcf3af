"""Post-hoc removal of language identity from embeddings: centering, LIR and LSAR.

Contrastive training is one way to fight same-language bias; a cheaper one removes the
directions that encode *which language* a text is in, after training, from unlabeled
text. Three methods, all linear and fitted per model:

* ``center`` - per-language centering: subtract each language's mean embedding. Needs
  the language of every text at inference.
* ``lir`` - Language Information Removal (Yang, Yang, Cer, Darve: "A Simple and Effective
  Method To Eliminate the Self Language Bias in Multilingual Representations", EMNLP
  2021; reference code ``ziyi-yang/LIR``, ``lir.ipynb``). Per language, the top-``r``
  left singular vectors of that language's (uncentred, as in the reference notebook)
  embedding matrix are projected out: ``x - U_l U_l^T x``. Default ``r = 1``, the
  notebook's setting. Needs the language at inference.
* ``lsar`` - Low-rank Subspace for language-Agnostic Representations (Xie, Zhao, Zhou,
  Gu, Chen: "Discovering Low-rank Subspaces for Language-agnostic Multilingual
  Representations", EMNLP 2022; reference code ``zhxieml/LSAR``,
  ``src/alignment/_low_rank.py``). The per-language mean embeddings are stacked and the
  low-rank subspace of their spread around a common point is projected out with ONE
  matrix ``P = I - U U^T`` for every language, so no language id is needed at inference
  and ``P`` can ship as a linear layer of the model (:func:`export_lsar_model`).

  The reference finds the common point ``wc_new`` of the best rank-k fit of the means and
  takes the top-k left singular vectors of ``means - wc_new``; that point lies in the
  means' affine hull, so those vectors span the top-k principal directions of the means
  centred on their average, which is what is computed here. The reference scripts use
  ``k = number of languages`` (``lsar+11`` on XQuAD-R, ``lsar+7`` on MLQA-R); the centred
  means have rank at most ``L - 1``, and the reference's ``L``-th vector belongs to a zero
  singular value (an arbitrary direction), so the basis is capped at the numerical rank
  and both the requested and the effective rank are recorded.

Every method re-normalises rows to unit length afterwards (``normalize=True``), so inner
product stays cosine, as babelir's evaluation expects.

Usage (library; the ``babelir debias`` command wraps the same calls)::

    from babelir.debias import fit_from_texts, load_transform, save_transform
    t = fit_from_texts("lsar", {"en": emb_en, "de": emb_de, "zh": emb_zh})
    q2 = t.apply(q)                         # lsar: no languages needed
    save_transform(t, "runs/lsar-fit"); t = load_transform("runs/lsar-fit")
    c2 = fit_from_texts("center", by_lang).apply(c, langs=candidate_langs)

A fitted transform is saved as ``debias.json`` (method, rank, languages, n_texts, fit
provenance) plus ``debias.safetensors`` (the matrices and 64-bit hashes of the fit texts,
used to refuse evaluating on texts it was fitted on). No pickle anywhere.

Modules, one job each:

* :mod:`.methods` - the maths: fitting center/LIR/LSAR, :class:`DebiasTransform`
  (apply, projection, summary, fit/eval overlap check), text hashes;
* :mod:`.store` - a transform's saved form (``debias.json`` + ``debias.safetensors``);
* :mod:`.fit_data` - the unlabeled fit texts (:class:`FitTexts`) from a LAReQA
  benchmark, a JSONL file or a trained babelir run;
* :mod:`.pipeline` - with a model: encode the fit texts, fit, re-score an evaluation;
* :mod:`.export` - an LSAR model folder for plain sentence-transformers and its card.
"""

from babelir.debias.export import export_lsar_model, model_card
from babelir.debias.fit_data import FitTexts, collect_fit_texts
from babelir.debias.methods import (
    LIR_DEFAULT_RANK,
    METHODS,
    DebiasTransform,
    embeddings_fingerprint,
    fit_center,
    fit_from_texts,
    fit_lir,
    fit_lsar,
    text_hashes,
)
from babelir.debias.pipeline import (
    check_benchmark,
    check_fit_model,
    debias_result,
    embeddings_provenance,
    encode_fit_texts,
    fingerprints,
    fit_model,
    source_fingerprint,
)
from babelir.debias.store import (
    FORMAT_VERSION,
    JSON_NAME,
    MODEL_SUBDIR,
    TENSORS_NAME,
    load_transform,
    save_transform,
    write_transform,
)

__all__ = [
    "FORMAT_VERSION",
    "JSON_NAME",
    "LIR_DEFAULT_RANK",
    "METHODS",
    "MODEL_SUBDIR",
    "TENSORS_NAME",
    "DebiasTransform",
    "FitTexts",
    "check_benchmark",
    "check_fit_model",
    "collect_fit_texts",
    "debias_result",
    "embeddings_fingerprint",
    "embeddings_provenance",
    "encode_fit_texts",
    "export_lsar_model",
    "fingerprints",
    "fit_center",
    "fit_from_texts",
    "fit_lir",
    "fit_lsar",
    "fit_model",
    "load_transform",
    "model_card",
    "save_transform",
    "source_fingerprint",
    "text_hashes",
    "write_transform",
]
