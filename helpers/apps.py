"""Applications: trained models kept on disk, and corpora cut down to a few unique tokens.

Two pieces of plumbing for chapter 6, which uses trained models (not only their losses) and
trains on deliberately small slices of the corpus:

- :func:`trained_models` trains a list of :class:`helpers.sweep.RunSpec` once, on every core,
  and keeps each trained network as a safetensors checkpoint, so a second call only loads
  them (:func:`helpers.sweep.run_sweep` keeps losses and curves, not weights).
- :func:`subset_corpus` keeps a given number of training characters, taken as equal pieces
  spread over the whole training text, for experiments with repeated data.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import multiprocessing
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def _check_specs(specs: Iterable[RunSpec]) -> list[RunSpec]:
    from .sweep import RunSpec

    if isinstance(specs, RunSpec):
        specs = [specs]
    try:
        specs = list(specs)
    except TypeError:
        raise ValueError(f"specs must be a list of RunSpec, got {specs!r}") from None
    if not specs or not all(isinstance(s, RunSpec) for s in specs):
        raise ValueError("specs must be a non-empty list of RunSpec (from grid_design etc.)")
    for i, s in enumerate(specs):
        if s.n_steps < 1:
            raise ValueError(f"specs[{i}] has n_tokens={s.n_tokens}, less than one step")
    return specs


def _check_corpora(corpus: Any, n: int) -> list[Corpus]:
    from .data import Corpus, load_corpus

    if isinstance(corpus, str):
        corpus = load_corpus(corpus)
    if isinstance(corpus, Corpus):
        return [corpus] * n
    if isinstance(corpus, (list, tuple)) and all(isinstance(c, Corpus) for c in corpus):
        if len(corpus) != n:
            raise ValueError(f"corpus must hold one Corpus per spec ({n}), got {len(corpus)}")
        return list(corpus)
    raise ValueError(f"corpus must be a corpus name, a Corpus or a list of them, got {corpus!r}")


def _as_paths(ids: tuple[Any, Any]) -> tuple[Any, Any]:
    """Memory-mapped token arrays travel to workers as their file names, not their data."""
    train_ids, val_ids = ids
    if getattr(train_ids, "filename", None) and getattr(val_ids, "filename", None):
        return str(train_ids.filename), str(val_ids.filename)
    return ids


def _tokenizer_id(tokenizer: PreTrainedTokenizerFast) -> str:
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    return hashlib.sha256(backend.to_str().encode("utf-8")).hexdigest()


def _models_dir(cache_dir: str | Path | None) -> Path:
    if cache_dir is None:
        from .data import cache_dir as data_cache_dir

        folder = data_cache_dir() / "models"
    elif isinstance(cache_dir, (str, Path)) and str(cache_dir):
        folder = Path(cache_dir)
    else:
        raise ValueError(f"cache_dir must be None or a folder (str or Path), got {cache_dir!r}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _load(folder: Path) -> TrainResult | None:
    """The checkpoint in ``folder``, or None if it is missing or cannot be read."""
    from .train import load_checkpoint

    try:
        return load_checkpoint(folder)
    except Exception:  # a missing or damaged checkpoint is simply trained again
        return None


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # one core per process, as helpers.sweep does


def _train_one(spec_dict: dict[str, Any], train_ids: Any, val_ids: Any, folder: str) -> str:
    """Train one run and write its checkpoint to ``folder`` (runs in a worker or in-process)."""
    from .sweep import RunSpec
    from .train import train

    if isinstance(train_ids, str):  # in a worker: map the cached token files
        train_ids = np.load(train_ids, mmap_mode="r", allow_pickle=False)
        val_ids = np.load(val_ids, mmap_mode="r", allow_pickle=False)
    spec = RunSpec.from_dict(spec_dict)
    train(
        spec.config,
        train_ids,
        val_ids,
        n_tokens=spec.n_tokens,
        batch_size=spec.batch_size,
        lr=spec.lr,
        seed=spec.seed,
        eval_tokens=spec.eval_tokens,
        eval_every=spec.eval_every,
        progress=False,
        checkpoint_dir=folder,
    )
    return folder


def _usable_cores() -> int:
    """Cores this process may run on (respects ``taskset`` and container limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _mp_context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["helpers.apps", "torch._dynamo"])
        return ctx
    return multiprocessing.get_context("spawn")


def trained_models(
    specs: Iterable[RunSpec],
    *,
    corpus: str | Corpus | Sequence[Corpus] = "shakespeare",
    tokenizer: str | PreTrainedTokenizerFast = "char",
    workers: int | None = None,
    cache_dir: str | Path | None = None,
) -> list[TrainResult]:
    """Train each run of ``specs`` once and return its result *with its trained model*.

    Each run is trained by :func:`helpers.train.train` on ``corpus`` (a name, a Corpus, or
    a list of Corpus objects, one per spec, e.g. from :func:`subset_corpus`) tokenized by
    ``tokenizer`` (``"char"`` or a Hugging Face fast tokenizer; ``"char"`` is built from the
    first corpus, so every run shares one vocabulary), and saved with
    :func:`helpers.train.save_checkpoint` under ``cache_dir`` (default
    ``helpers.data.cache_dir()/models``) in a folder named by :func:`helpers.sweep.run_key`.
    Later calls load the checkpoint instead of training; a missing or damaged one is trained
    again. Missing runs train in ``workers`` processes (default: the cores this process may
    use), one thread each, largest first; with one worker or one run, in this process on
    one thread.
    Scripts must call it under ``if __name__ == "__main__":`` (notebooks need nothing).

    Returns one :class:`helpers.train.TrainResult` per spec, in order, models on the CPU in
    eval mode.

    Introduced in: chapters/06_applications.ipynb
    """
    import torch

    from .data import char_tokenizer, tokenized_splits
    from .sweep import run_key

    specs = _check_specs(specs)
    workers = positive_int("workers", _usable_cores() if workers is None else workers)
    corpora = _check_corpora(corpus, len(specs))
    if isinstance(tokenizer, str):
        if tokenizer != "char":
            raise ValueError(f"tokenizer must be 'char' or a fast tokenizer, got {tokenizer!r}")
        tokenizer = char_tokenizer(corpora[0])
    elif getattr(tokenizer, "backend_tokenizer", None) is None:
        raise ValueError(f"tokenizer must be 'char' or a fast tokenizer, got {tokenizer!r}")
    folder = _models_dir(cache_dir)
    tokenizer_id = _tokenizer_id(tokenizer)
    splits: dict[str, tuple[Any, Any]] = {}  # corpus id -> (train ids, val ids)
    paths, data = [], []
    for i, (spec, c) in enumerate(zip(specs, corpora, strict=True)):
        corpus_id = f"{c.name}:{c.fingerprint}"
        if corpus_id not in splits:
            splits[corpus_id] = tokenized_splits(c, tokenizer)
        train_ids, val_ids = splits[corpus_id]
        top = max(int(train_ids.max()), int(val_ids.max()))
        if spec.config.vocab_size <= top:
            raise ValueError(
                f"specs[{i}].config.vocab_size={spec.config.vocab_size} is too small for this "
                f"tokenizer, whose ids reach {top}; use vocab_size >= {top + 1}"
            )
        paths.append(folder / run_key(spec, corpus_id, tokenizer_id))
        data.append(splits[corpus_id])
    loaded: dict[Path, TrainResult] = {}
    todo: dict[Path, tuple[RunSpec, tuple[Any, Any]]] = {}
    for path, spec, ids in zip(paths, specs, data, strict=True):
        if path in loaded or path in todo:
            continue
        result = _load(path)
        if result is None:
            todo[path] = (spec, ids)
        else:
            loaded[path] = result
    order = sorted(todo, key=lambda p: todo[p][0].n_params * todo[p][0].n_tokens, reverse=True)
    n_workers = min(workers, len(order))
    if n_workers == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for path in order:
                spec, (train_ids, val_ids) = todo[path]
                _train_one(spec.to_dict(), train_ids, val_ids, str(path))
        finally:
            torch.set_num_threads(threads)
    elif n_workers > 1:
        with cf.ProcessPoolExecutor(n_workers, _mp_context(), _one_thread) as pool:
            jobs = [
                pool.submit(_train_one, todo[p][0].to_dict(), *_as_paths(todo[p][1]), str(p))
                for p in order
            ]
            for job in cf.as_completed(jobs):
                job.result()
    for path in todo:
        result = _load(path)
        if result is None:
            raise OSError(f"could not read back the checkpoint written to {path}")
        loaded[path] = result
    return [loaded[path] for path in paths]


__all__ = ["subset_corpus", "trained_models"]
