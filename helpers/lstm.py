"""An LSTM language model, corrected from a source post, and a loop that trains any such model.

Source post 003 builds its language model as ``nn.Sequential(nn.Embedding, nn.LSTM,
nn.Linear)``. That cannot run: ``nn.LSTM`` returns a tuple ``(output, (h, c))``, not a
tensor, so the ``nn.Linear`` after it fails; ``nn.LSTM`` reads (T, B, C) unless
``batch_first=True``, so batches of shape (B, T) would silently be read time-major; and
``nn.CrossEntropyLoss`` wants the logits as (B·T, vocab), not (B, T, vocab).
:class:`LSTMLM` is that model written so that it runs, with the same interface as
:class:`helpers.model.GPT` (``forward(idx, targets) -> (logits, loss)``), its output layer
tied to its token embedding as GPT-2's is, so that the two differ only in how positions are
mixed.

Kaplan et al. (2020, Sec. 3.2.1, Fig. 7) compared LSTMs with Transformers of the same
non-embedding size: the two do equally well on the first tokens of a context, but LSTMs
plateau after fewer than 100 tokens while Transformers keep improving, so Transformers
asymptotically win. In this course's tiny character-level runs (N of 6.6 k to 57 k, 0.5 M
tokens, context 64) the LSTMs were ahead by about 0.4 nats per token, while the
Transformers were still improving faster when the budget ended.

:func:`lstm_config` picks the LSTM whose non-embedding count is nearest a target N, and
:func:`train_lm` trains *any* such model with the lab's loop,
:func:`helpers.train.train_model` (the one :func:`helpers.train.train` runs for GPTs), so
the comparison differs in the architecture only; it adds a cache of finished runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ._validate import positive, positive_int
from .session import resolve_seed
from .train import (
    CODE_VERSION,
    EVAL_TOKENS,
    N_EVALS,
    _check_ids,
    _check_model,
    _evaluate,
    train_model,
)

#: Peak learning rate of the LSTMs, for any width. Measured on this course's character-level
#: Shakespeare runs (2 layers, context 64, 16 sequences, 0.5 M tokens): with hidden sizes 24,
#: 48 and 96, 0.04 beat 0.02 by 0.01–0.04 nats; 0.08 was no better than 0.04 in a trial at
#: hidden size 48 (with a smaller embedding initialisation).
LSTM_LR = 0.04

#: Bump by hand whenever a change here alters what :func:`train_lm` computes: cached runs
#: are keyed by it (and by ``helpers.train.CODE_VERSION``), so old results are not reused.
LM_CODE_VERSION = 1

#: Validation windows per evaluation forward pass in :func:`train_lm` and
#: :func:`evaluate_lm` (its value since the first version: a different chunking changes the
#: validation losses in their last digits, so it is part of what a cached run computed).
EVAL_CHUNK = 256


@dataclass(frozen=True)
class LSTMConfig:
    """Shape of an LSTM language model. Sizes are counts (tokens, positions, layers, channels).

    Introduced in: chapters/03_algorithm.ipynb
    """

    vocab_size: int = 84  # tokens in the vocabulary
    n_ctx: int = 64  # length of the training windows (an LSTM itself has no position limit)
    n_layer: int = 2  # stacked LSTM layers
    d_model: int = 64  # hidden size, also the embedding size (the output layer is tied)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_ctx", "n_layer", "d_model"):
            positive_int(name, getattr(self, name))


class LSTMLM(nn.Module):
    """Embedding → stacked LSTM → output layer tied to the embedding. Same seed, same network.

    Initialisation is PyTorch's default for each layer, as post 003's code would get it:
    embedding normal(0, 1), LSTM weights and biases uniform(±1/√d_model), drawn after seeding
    with ``seed`` inside a forked random state, so the global random state is left untouched.
    (The embedding's larger scale, not GPT-2's 0.02, is what an LSTM without LayerNorm
    needs: with 0.02 it learned markedly slower in this course's runs.)

    Introduced in: chapters/03_algorithm.ipynb
    """

    def __init__(self, config: LSTMConfig, seed: int | None = None) -> None:
        super().__init__()
        if not isinstance(config, LSTMConfig):
            raise ValueError(f"config must be an LSTMConfig, got {type(config).__name__}")
        seed = resolve_seed(seed)  # None: the course's seed
        self.config = config
        C = config.d_model
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.wte = nn.Embedding(config.vocab_size, C)  # token embedding (vocab, C)
            # batch_first: read (B, T, C), as every batch of the lab is shaped
            self.lstm = nn.LSTM(C, C, num_layers=config.n_layer, batch_first=True)
            self.lm_head = nn.Linear(C, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as in GPT-2: one matrix, used twice

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab) for token ids ``idx`` (B, T); loss if ``targets`` is given.

        ``targets`` holds the next token for each position, (B, T); the loss is the mean
        cross-entropy in nats per token.
        """
        B, T = idx.shape
        x = self.wte(idx)  # (B, T, C)
        x, _ = self.lstm(x)  # nn.LSTM returns (output, (h_n, c_n)); keep the output (B, T, C)
        logits = self.lm_head(x)  # (B, T, vocab)
        loss = None
        if targets is not None:  # cross_entropy wants (B·T, vocab) scores and (B·T,) labels
            loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T))
        return logits, loss


def lstm_count_params(config: LSTMConfig) -> tuple[int, int]:
    """Exact parameter count of :class:`LSTMLM` as ``(total, non_embedding)``.

    Each layer has four gates, each with an input matrix C×C, a recurrent matrix C×C and two
    bias vectors of C (PyTorch keeps ``bias_ih`` and ``bias_hh``): 8C² + 8C per layer. The
    token embedding (vocab·C), which is also the output layer, is the only embedding; it is
    left out of the non-embedding count as Kaplan et al. (2020, Sec. 2.1) do.

    Introduced in: chapters/03_algorithm.ipynb
    """
    if not isinstance(config, LSTMConfig):
        raise ValueError(f"config must be an LSTMConfig, got {type(config).__name__}")
    C = config.d_model
    non_embedding = config.n_layer * (8 * C * C + 8 * C)
    return non_embedding + config.vocab_size * C, non_embedding


def lstm_config(
    n_params_target: float, *, n_layer: int = 2, vocab_size: int = 84, n_ctx: int = 64
) -> LSTMConfig:
    """The ``n_layer``-layer LSTM whose non-embedding count is nearest ``n_params_target``.

    The hidden size is chosen to minimise |ln(N / target)|, N from :func:`lstm_count_params`
    (parameters). Use it to build an LSTM as large as a given GPT.

    Introduced in: chapters/03_algorithm.ipynb
    """
    target = positive("n_params_target", n_params_target)
    n_layer = positive_int("n_layer", n_layer)
    positive_int("vocab_size", vocab_size)
    positive_int("n_ctx", n_ctx)
    c = max(1, round(math.sqrt(target / (8 * n_layer))))
    candidates = [LSTMConfig(vocab_size, n_ctx, n_layer, d) for d in range(max(1, c - 2), c + 3)]
    return min(candidates, key=lambda cf: abs(math.log(lstm_count_params(cf)[1] / target)))


# ----------------------------------------------------------------------------- training


@dataclass
class LMRun:
    """What :func:`train_lm` produced. Losses in nats per token, times in seconds.

    ``n_tokens`` were trained in ``n_steps`` steps; the learning-rate schedule was laid out
    for ``schedule_steps`` steps (equal to ``n_steps`` unless the run was cut short).
    ``curve`` has one point per evaluation: ``step``, ``tokens``, ``lr``, ``train_loss``
    (mean since the previous point) and ``val_loss``. ``model`` is the trained network;
    ``cached`` is True when the run was read from the cache (times are the original run's).

    Introduced in: chapters/03_algorithm.ipynb
    """

    final_val_loss: float
    curve: list[dict[str, float]]
    n_steps: int
    schedule_steps: int
    n_tokens: int
    batch_size: int
    lr: float
    seed: int
    tokens_per_s: float
    wall_s: float
    cached: bool = False
    model: nn.Module | None = field(default=None, repr=False, compare=False)


def evaluate_lm(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = EVAL_CHUNK
) -> float:
    """Mean cross-entropy (nats per token) of ``model`` on windows ``x`` → ``y``, (n, T) each.

    Evaluated ``chunk`` windows at a time, in eval mode (the mode is restored afterwards), on
    the device ``x`` is on, the way :func:`helpers.train.train_model` evaluates.

    Introduced in: chapters/03_algorithm.ipynb
    """
    _check_model(model)
    chunk = positive_int("chunk", chunk)
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise ValueError(f"x and y must be (n, T) tensors of token ids, got {x!r}, {y!r}")
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"x and y must be (n, T) tensors of one shape, got {x.shape}, {y.shape}")
    return _evaluate(model, x, y, x.device, chunk)


def _run_key(model: nn.Module, train_ids: np.ndarray, val_ids: np.ndarray, settings: dict) -> str:
    """SHA-256 of everything that decides a run: code, settings, initial weights and data."""
    h = hashlib.sha256()
    head = {
        "code": [LM_CODE_VERSION, CODE_VERSION],
        "torch": torch.__version__,
        "model": type(model).__name__,
        "config": repr(model.config),
        "settings": settings,
    }
    h.update(json.dumps(head, sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for ids in (train_ids, val_ids):
        h.update(f"{ids.dtype} {ids.shape}".encode())
        h.update(np.ascontiguousarray(ids).tobytes())
    return h.hexdigest()[:32]


def _read_cached(path: Path, model: nn.Module) -> dict[str, Any] | None:
    """The stored run, with its weights loaded into ``model``; None if missing or damaged."""
    from safetensors import safe_open
    from safetensors.torch import load_model

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            data = json.loads(f.metadata()["run"])
        load_model(model, str(path), device="cpu")
    except Exception:  # a damaged or foreign file is simply trained again
        return None
    return data


def _write_cached(path: Path, model: nn.Module, data: dict[str, Any]) -> None:
    """Weights and run in one safetensors file, written atomically (temporary file, rename)."""
    from safetensors.torch import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_model(model, tmp, metadata={"run": json.dumps(data)})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def train_lm(
    model: nn.Module,
    train_ids: np.ndarray | torch.Tensor,
    val_ids: np.ndarray | torch.Tensor,
    *,
    n_tokens: int,
    lr: float,
    batch_size: int = 16,
    seed: int | None = None,
    schedule_tokens: int | None = None,
    eval_tokens: int | None = EVAL_TOKENS,
    n_evals: int = N_EVALS,
    progress: bool = False,
    cache_dir: str | Path | None = None,
    n_threads: int | None = 1,
) -> LMRun:
    """Train ``model`` in place on ``n_tokens`` tokens with the lab's recipe; return the run.

    ``model`` is any ``nn.Module`` with ``config.n_ctx``, ``config.vocab_size`` and
    ``forward(idx, targets) -> (logits, loss)``: an :class:`LSTMLM` or a
    :class:`helpers.model.GPT`. The run is :func:`helpers.train.train_model`'s (batches seeded
    with ``seed``; AdamW, clipping, warm-up then cosine to 10 % of the peak ``lr``; the fixed
    validation slice), so ``train_lm(GPT(config, seed), ..., seed=seed)`` trains exactly as
    ``helpers.train.train(config, ..., seed=seed)`` does. Its validation losses are the same
    too when the context is 64 tokens; with another context they can differ in the last
    digits, because ``train_lm`` evaluates :data:`EVAL_CHUNK` windows per forward pass.

    ``schedule_tokens`` (tokens, default ``n_tokens``) is the budget the schedule is laid out
    for: a larger value trains a run cut short of a longer schedule, whose learning rate has
    not decayed when it stops. ``n_evals`` evaluations are spread over the run (the last at
    the final step). CPU only. ``n_threads``: torch threads during the run (restored afterwards;
    ``None`` keeps the current setting). One is the default because small models, an LSTM's
    64 sequential small steps above all, run faster on one thread than on two shared ones
    (an LSTM of 37 k parameters was 8x slower with two threads on a busy 2-core machine).

    ``cache_dir``: if given, the finished run (weights and results) is stored there as one
    safetensors file, keyed by a hash of the code version, the settings, ``model``'s class,
    config and initial weights, and both token arrays; a later call with the same inputs
    loads it into ``model`` instead of training (``cached=True``).

    Introduced in: chapters/03_algorithm.ipynb
    """
    _check_model(model)
    n_ctx = model.config.n_ctx
    n_tokens = positive_int("n_tokens", n_tokens)
    peak_lr = positive("lr", lr)
    batch_size = positive_int("batch_size", batch_size)
    seed = resolve_seed(seed)  # None: the course's seed
    per_step = batch_size * n_ctx
    n_steps = n_tokens // per_step
    if n_steps < 1:
        raise ValueError(f"n_tokens must be at least one step, {per_step} tokens, got {n_tokens}")
    schedule_steps = n_steps
    if schedule_tokens is not None:
        schedule_steps = positive_int("schedule_tokens", schedule_tokens) // per_step
        if schedule_steps < n_steps:
            raise ValueError(
                f"schedule_tokens must be >= n_tokens={n_tokens}, got {schedule_tokens}"
            )
    n_evals = positive_int("n_evals", n_evals)
    if eval_tokens is not None:
        eval_tokens = positive_int("eval_tokens", eval_tokens)
    if not isinstance(progress, bool):
        raise ValueError(f"progress must be True or False, got {progress!r}")
    if n_threads is not None:
        n_threads = positive_int("n_threads", n_threads)
    if cache_dir is not None and (not isinstance(cache_dir, (str, Path)) or not str(cache_dir)):
        raise ValueError(f"cache_dir must be None or a str/Path, got {cache_dir!r}")
    train_ids = _check_ids("train_ids", train_ids, model.config)
    val_ids = _check_ids("val_ids", val_ids, model.config)
    path = None
    if cache_dir is not None:
        settings = dict(
            n_tokens=n_tokens, lr=peak_lr, batch_size=batch_size, seed=seed,
            schedule_steps=schedule_steps, eval_tokens=eval_tokens, n_evals=n_evals,
        )  # fmt: skip
        path = Path(cache_dir) / f"{_run_key(model, train_ids, val_ids, settings)}.safetensors"
        data = _read_cached(path, model)
        if data is not None:
            model.eval()
            return LMRun(**{**data, "cached": True}, model=model)
    threads = torch.get_num_threads()
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    try:
        loop = train_model(
            model,
            train_ids,
            val_ids,
            n_tokens=n_tokens,
            lr=peak_lr,
            batch_size=batch_size,
            seed=seed,
            schedule_tokens=schedule_tokens,
            eval_tokens=eval_tokens,
            eval_every=math.ceil(n_steps / n_evals),
            eval_batch=EVAL_CHUNK,
            progress=progress,
        )
    finally:
        torch.set_num_threads(threads)
    run = LMRun(
        final_val_loss=loop.final_val_loss,
        curve=loop.curve,
        n_steps=loop.n_steps,
        schedule_steps=loop.schedule_steps,
        n_tokens=loop.n_tokens,
        batch_size=loop.batch_size,
        lr=loop.lr,
        seed=loop.seed,
        tokens_per_s=loop.tokens_per_s,
        wall_s=loop.wall_s,
        model=model,
    )
    if path is not None:
        data = {f.name: getattr(run, f.name) for f in dataclasses.fields(run)}
        _write_cached(path, model, {k: v for k, v in data.items() if k not in ("model", "cached")})
    return run


__all__ = [
    "EVAL_CHUNK",
    "LM_CODE_VERSION",
    "LSTM_LR",
    "LMRun",
    "LSTMConfig",
    "LSTMLM",
    "evaluate_lm",
    "lstm_config",
    "lstm_count_params",
    "train_lm",
]
