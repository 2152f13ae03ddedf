"""Applications: trained models kept on disk, and corpora cut down to a few unique tokens.

Two pieces of plumbing for chapter 6, which uses trained models (not only their losses) and
trains on deliberately small slices of the corpus:

- :func:`trained_models` trains a list of :class:`helpers.sweep.RunSpec` once, on every core,
  and returns each run's result with its trained network: a thin wrapper over
  ``helpers.sweep.run_sweep(..., keep_models=True)`` and :func:`helpers.sweep.load_model`,
  which cache runs, weights included.
- :func:`subset_corpus` keeps a given number of training characters, taken as equal pieces
  spread over the whole training text, for experiments with repeated data.

And three small formulas the chapter teaches and chapter 8 reuses:

- :func:`effective_tokens`: what repeated data is worth in fresh tokens (Muennighoff et al.).
- :func:`tokens_for_loss` and :func:`inference_optimal`: the Chinchilla law inverted, and the
  model size that reaches a loss most cheaply once inference is paid for (Sardana et al.).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._validate import non_negative, number_array, positive, positive_array, positive_int
from .laws import MUENNIGHOFF_R_D_STAR, PLANNING, ChinchillaParams

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


# ----------------------------------------------------------------------------- formulas


def effective_tokens(
    unique_tokens: float | np.ndarray,
    epochs: float | np.ndarray,
    r_star: float = MUENNIGHOFF_R_D_STAR,
) -> float | np.ndarray:
    """D' = U + U·R_D*·(1 − exp(−R/R_D*)): the fresh tokens that repeated data is worth.

    Muennighoff et al. (2023, Eq. 5): ``epochs`` passes over ``unique_tokens`` unique tokens
    U, that is R = epochs − 1 repetitions after the first pass, are worth as much as D'
    fresh tokens. ``epochs`` must be at least 1 (fractions are allowed); ``r_star`` is the
    fitted decay constant R_D* (default ``helpers.laws.MUENNIGHOFF_R_D_STAR``, 15.4). Each
    repetition is worth less than the one before, and no amount of repetition is worth more
    than U·(1 + R_D*). Arrays broadcast against each other. Tokens in, tokens out.

    Introduced in: chapters/06_applications.ipynb
    """
    u = positive_array("unique_tokens", unique_tokens)
    e = number_array("epochs", epochs, what="finite numbers >= 1")
    bad = ~np.isfinite(e) | (e < 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"epochs must hold finite numbers >= 1; entry {i} is {e[i]!r}")
    r_star = positive("r_star", r_star)
    if u.size != e.size and 1 not in (u.size, e.size):
        raise ValueError(f"unique_tokens ({u.size} values) and epochs ({e.size}) do not broadcast")
    out = u + u * r_star * (1 - np.exp(-(e - 1) / r_star))
    return out if np.ndim(unique_tokens) or np.ndim(epochs) else float(out[0])


def _law(params: ChinchillaParams, loss: float) -> tuple[ChinchillaParams, float]:
    """Check a law and a target loss for it; return both (the loss as a float)."""
    if not isinstance(params, ChinchillaParams):
        raise ValueError(f"params must be a ChinchillaParams, got {type(params).__name__}")
    target = positive("loss", loss)
    if target <= params.E:
        raise ValueError(f"loss must be above the law's floor E = {params.E}, got {loss!r}")
    return params, target


def tokens_for_loss(
    n_params: float | np.ndarray, loss: float, params: ChinchillaParams = PLANNING
) -> float | np.ndarray:
    """The training tokens D at which a model of ``n_params`` parameters reaches ``loss``.

    Chinchilla's law L = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, Eq. 2) solved for
    D: D = (B / (loss − E − A/N^alpha))^(1/beta). It exists only for models large enough
    that A/N^alpha < loss − E; a smaller one raises ValueError. ``n_params`` in parameters
    (an array is fine), ``loss`` in nats per token; returns tokens. ``params`` defaults to
    the planning law (``helpers.laws.PLANNING``).

    Introduced in: chapters/06_applications.ipynb
    """
    n = positive_array("n_params", n_params)
    p, target = _law(params, loss)
    gap = target - p.E - p.A / n**p.alpha  # the loss the data term must still bring down
    if np.any(gap <= 0):
        smallest = (p.A / (target - p.E)) ** (1 / p.alpha)
        got = n[np.flatnonzero(gap <= 0)[0]]
        raise ValueError(
            f"n_params must exceed {smallest:.4g}, the smallest model that can reach loss "
            f"{target} at all; got {got:.4g}"
        )
    out = (p.B / gap) ** (1 / p.beta)
    return out if np.ndim(n_params) else float(out[0])


def inference_optimal(
    loss: float, d_inference: float, params: ChinchillaParams = PLANNING
) -> tuple[float, float]:
    """The (N, D_train) that reach ``loss`` with the fewest lifetime FLOPs.

    Sardana et al. (2023)'s cost: C(N) = 6·N·D_train(N) + 2·N·D_inf, training to ``loss``
    (D_train from :func:`tokens_for_loss`) plus one forward pass, about 2·N FLOPs, for each
    of the ``d_inference`` tokens the model will process in its life (prompt and generated
    tokens alike). Minimised numerically over log N, from just above the smallest model that
    can reach ``loss`` to e^20 times that size. With ``d_inference = 0`` it is the
    compute-optimal model for that loss. ``loss`` in nats per token, ``d_inference`` in
    tokens (>= 0); returns parameters and tokens.

    Introduced in: chapters/06_applications.ipynb
    """
    from scipy.optimize import minimize_scalar

    p, target = _law(params, loss)
    d_inf = non_negative("d_inference", d_inference)
    log_min = np.log(p.A / (target - p.E)) / p.alpha  # log N of the smallest model that can

    def log_lifetime_flops(log_n: float) -> float:
        n = np.exp(log_n)
        return np.log(6 * n * tokens_for_loss(n, target, p) + 2 * n * d_inf)

    res = minimize_scalar(
        log_lifetime_flops,
        bounds=(log_min + 1e-9, log_min + 20),
        method="bounded",
        options={"xatol": 1e-10},
    )
    n = float(np.exp(res.x))
    return n, float(tokens_for_loss(n, target, p))


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


__all__ = [
    "effective_tokens",
    "inference_optimal",
    "subset_corpus",
    "tokens_for_loss",
    "trained_models",
]
