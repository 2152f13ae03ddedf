"""Applications: trained models kept on disk, and corpora cut down to a few unique tokens.

Two pieces of plumbing for chapter 6, which uses trained models (not only their losses) and
trains on deliberately small slices of the corpus:

- :func:`trained_models` trains a list of :class:`helpers.sweep.RunSpec` once, on every core,
  and returns each run's result with its trained network: a thin wrapper over
  ``helpers.sweep.run_sweep(..., keep_models=True)`` and :func:`helpers.sweep.load_model`,
  which cache runs, weights included.
- :func:`subset_corpus` keeps a given number of training characters, taken as equal pieces
  spread over the whole training text, for experiments with repeated data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._validate import positive_int

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from .data import Corpus
    from .sweep import RunSpec
    from .train import TrainResult


def subset_corpus(corpus: Corpus, n_chars: int, n_pieces: int = 16) -> Corpus:
    """``corpus`` with its training text cut to ``n_chars`` characters; validation unchanged.

    The kept text is ``n_pieces`` pieces of ``n_chars // n_pieces`` characters each, starting
    at evenly spaced points of the training text and joined end to end, so that a small
    slice still samples every part of the corpus (a single slice from the start would hold
    one work only). ``n_chars`` must be a multiple of ``n_pieces`` and at most the training
    text's length. With the character tokenizer, characters are tokens. The result has its
    own ``fingerprint``, so runs trained on it are cached apart from the full corpus.

    Introduced in: chapters/06_applications.ipynb
    """
    from .data import Corpus

    if not isinstance(corpus, Corpus):
        raise ValueError(f"corpus must be a Corpus from load_corpus(), got {type(corpus).__name__}")
    n_chars = positive_int("n_chars", n_chars)
    n_pieces = positive_int("n_pieces", n_pieces)
    if n_chars % n_pieces:
        raise ValueError(f"n_chars must be a multiple of n_pieces={n_pieces}, got {n_chars}")
    text = corpus.train_text
    if n_chars > len(text):
        raise ValueError(f"n_chars must be at most the {len(text):,} training characters")
    piece = n_chars // n_pieces
    starts = np.linspace(0, len(text) - piece, n_pieces).round().astype(int)
    kept = "".join(text[s : s + piece] for s in starts)
    return dataclasses.replace(
        corpus,
        name=f"{corpus.name}-subset{n_chars}",
        train_text=kept,
        source=f"{corpus.source}; training text cut to {n_pieces} pieces, {n_chars} chars",
    )


# ----------------------------------------------------------------------------- models


def trained_models(
    specs: Iterable[RunSpec],
    *,
    corpus: str | Corpus | Sequence[str | Corpus] = "shakespeare",
    tokenizer: str | int | PreTrainedTokenizerFast = "char",
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> list[TrainResult]:
    """Train each run of ``specs`` once and return its result *with its trained model*.

    The runs go through ``helpers.sweep.run_sweep(specs, ..., keep_models=True)``, with the
    same arguments: ``corpus`` is a name, a Corpus, or a list with one per spec (e.g. from
    :func:`subset_corpus`); ``tokenizer`` is ``"char"`` (built from the first corpus, so
    every run shares one vocabulary), a BPE size or a Hugging Face fast tokenizer; runs are
    cached, weights included, under ``cache_dir`` (default ``helpers.data.cache_dir()/runs``)
    and trained in ``workers`` single-threaded processes (default: the cores this process may
    use). Later calls only load them; a damaged checkpoint is reported and trained again.
    Scripts must call it under ``if __name__ == "__main__":`` (notebooks need nothing).

    Returns one :class:`helpers.train.TrainResult` per spec, in order (a repeated spec gives
    the same object), models on the CPU in eval mode. A run that diverged raises
    RuntimeError, since it has no model.

    Introduced in: chapters/06_applications.ipynb
    """
    from .sweep import load_model, load_run, run_sweep

    table = run_sweep(
        specs,
        corpus=corpus,
        tokenizer=tokenizer,
        workers=workers,
        cache_dir=cache_dir,
        progress=progress,
        keep_models=True,
    )
    failed = table.index[table.error.notna()]
    if len(failed):
        raise RuntimeError(f"specs[{failed[0]}] diverged: {table.error[failed[0]]}")
    results: dict[str, TrainResult] = {}
    for key in table.key:
        if key not in results:
            results[key] = load_run(key, cache_dir)
            results[key].model = load_model(key, cache_dir)
    return [results[key] for key in table.key]


__all__ = ["subset_corpus", "trained_models"]
