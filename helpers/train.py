"""Train one GPT on a token budget: the loop every run of a scaling sweep goes through.

Read it top to bottom: the recipe's hyper-parameters (learning rate per width, warm-up,
cosine decay), the result of a run, then the loop. :func:`train_model` is the loop itself:
it trains any language model in place (a GPT, or the LSTM of :mod:`helpers.lstm`);
:func:`train` builds a fresh GPT of a given shape, runs it, and adds what a scaling sweep
records (parameter counts, FLOPs, a checkpoint). The recipe follows Chinchilla
(Hoffmann et al. 2022, Sec. 3 and App. A): AdamW, a linear warm-up, then a cosine decay to
10 % of the peak learning rate over exactly the run's budget, so every run ends with a fully
decayed schedule. The rest (β = (0.9, 0.95), weight decay 0.1 on matrices, gradient clipping
at 1.0) is the GPT-3 recipe (Brown et al. 2020, App. B). The width rule for the learning rate
and the warm-up length come from a pilot sweep on a 2-core laptop CPU (see
:func:`default_lr` and :func:`default_warmup`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._validate import below_one, id_array, in_range, one_of, positive, positive_int
from .compute import training_flops
from .data import eval_windows as _eval_windows
from .data import get_batch
from .model import GPT, GPTConfig, count_params
from .session import resolve_seed

#: Bump by hand whenever a change here alters what a run computes (schedule, optimizer,
#: evaluation, batching, the model's initialisation): the sweep cache keys include it, so
#: old results are not reused. 2: GPT weights start at ``helpers.model.init_std``, not 0.02.
CODE_VERSION = 2

#: AdamW's β₁, β₂ (Brown et al. 2020, App. B; Hoffmann et al. 2022, App. A).
BETAS = (0.9, 0.95)
#: Decoupled weight decay, applied to matrices (2-D weights) only, never to biases or gains.
WEIGHT_DECAY = 0.1
#: The global gradient norm is clipped to this value before every update.
GRAD_CLIP = 1.0
#: The cosine ends at this fraction of the peak learning rate (Hoffmann et al. 2022, Sec. 3).
FINAL_LR_FRACTION = 0.1
#: The schedules :func:`lr_schedule` lays out: cosine to a fixed budget (Chinchilla's), or
#: warm-up–stable–decay (WSD: constant peak, then a short cool-down; Hägele et al. 2024).
SCHEDULES = ("cosine", "wsd")
#: The share of a WSD run spent cooling down (Hägele et al. 2024 found 20 % matched cosine).
DECAY_FRACTION = 0.2
#: Default number of validation tokens in the fixed evaluation slice.
EVAL_TOKENS = 16_384
#: Default number of evaluations over a run (the last one at the final step).
N_EVALS = 8
#: The most tokens in one evaluation forward pass (bounds the memory of the logits).
_EVAL_CHUNK_TOKENS = 16_384


class NonFiniteLossError(FloatingPointError):
    """The training loss or gradient norm became NaN or infinite; the message names the step.

    Introduced in: chapters/05_practice.ipynb
    """


# ----------------------------------------------------------------------------- the recipe


def default_lr(config: GPTConfig) -> float:
    """Peak learning rate for a model of this width: min(0.03, 0.75 / d_model).

    The pilot rule of this course, measured on its character-level Shakespeare sweep
    (context 64, 16 sequences per step): the best rate fell with width (d_model 48 best near
    0.016, d_model 128 near 0.008) and twice the best rate was unstable. Wider models need
    smaller steps, as in μP-style scaling (Yang et al. 2021), where the rate of the hidden
    matrices falls as 1/width. Returns a learning rate (per optimizer step, no unit).

    Introduced in: chapters/05_practice.ipynb
    """
    if not isinstance(config, GPTConfig):
        raise ValueError(f"config must be a GPTConfig, got {type(config).__name__}")
    return min(0.03, 0.75 / config.d_model)


def default_warmup(n_steps: int) -> int:
    """Warm-up length in optimizer steps: max(5 %, min(50 steps, 20 %)) of ``n_steps``.

    Short runs warm up for a fifth of their steps, long runs for 50 steps, and very long
    runs for 5 % of their steps; rounded to the nearest step, at least 1 (the course's
    pilot rule). Returns a number of steps.

    A cap of 200 steps was measured against it: it let the laptop sweep's mid-size models
    leave the early plateau within 1,000 steps for seeds 0–3 (with 50, seeds 1 and 3 each left
    one run there), but it left chapter 3's 500-step run on the plateau (2.539 nats/char
    against 2.483 for the same model cut from a longer schedule). How long the plateau lasts
    depends on warm-up, learning rate and seed together; warm-up is one of the recipe details
    that move small-scale scaling fits (Porian et al. 2024).

    Introduced in: chapters/05_practice.ipynb
    """
    n_steps = positive_int("n_steps", n_steps)
    return max(1, round(max(0.05 * n_steps, min(50.0, 0.2 * n_steps))))


def decay_start(n_steps: int) -> int:
    """First cool-down step (0-based) of a WSD run of ``n_steps`` steps: the last
    ``round(DECAY_FRACTION · n_steps)`` steps (at least one) cool down.

    Introduced in: chapters/05_practice.ipynb
    """
    n_steps = positive_int("n_steps", n_steps)
    return n_steps - max(1, round(DECAY_FRACTION * n_steps))


def lr_schedule(
    step: int,
    n_steps: int,
    peak_lr: float,
    warmup_steps: int,
    final_fraction: float = FINAL_LR_FRACTION,
    *,
    schedule: str = "cosine",
) -> float:
    """Learning rate of optimizer step ``step`` (0-based) of a run of ``n_steps`` steps.

    Both schedules start with a linear warm-up, peak_lr·(step + 1)/warmup_steps, so the last
    warm-up step (``warmup_steps - 1``) uses the peak. Then:

    - ``"cosine"``: a cosine from the peak down to ``final_fraction``·peak, reached exactly
      at the last step (``n_steps - 1``): the cosine spans the run's whole budget, as
      Chinchilla's does (Hoffmann et al. 2022, Sec. 3).
    - ``"wsd"`` (warm-up–stable–decay): the peak until :func:`decay_start`, then a
      cool-down peak·(1 − √p), p = (step − start) / (n_steps − start), the "1 − sqrt" shape
      that Hägele et al. (2024) found better than a linear one (``final_fraction`` is not
      used). Every step before the cool-down is the same whatever ``n_steps`` is, so one long
      run, branched at each budget's :func:`decay_start`, gives every shorter WSD run
      (:func:`train_budgets`).

    Returns a learning rate (same unit as ``peak_lr``).

    Introduced in: chapters/05_practice.ipynb
    """
    n_steps = positive_int("n_steps", n_steps)
    peak_lr = positive("peak_lr", peak_lr)
    warmup_steps = positive_int("warmup_steps", warmup_steps)
    if warmup_steps > n_steps:
        raise ValueError(f"warmup_steps must be <= n_steps={n_steps}, got {warmup_steps}")
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 0 <= step:
        raise ValueError(f"step must be an integer in [0, {n_steps - 1}], got {step!r}")
    if step >= n_steps:
        raise ValueError(f"step must be an integer in [0, {n_steps - 1}], got {step!r}")
    in_range("final_fraction", final_fraction, 0.0, 1.0)
    one_of("schedule", schedule, SCHEDULES)
    if schedule == "wsd" and warmup_steps > decay_start(n_steps):
        raise ValueError(
            f"warmup_steps must be <= the cool-down's first step {decay_start(n_steps)} of a "
            f"{n_steps}-step WSD run, got {warmup_steps}"
        )
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    if schedule == "wsd":
        start = decay_start(n_steps)
        if step < start:
            return peak_lr
        return peak_lr * (1.0 - math.sqrt((step - start) / (n_steps - start)))
    decay_steps = n_steps - warmup_steps  # steps after the peak
    progress = (step - warmup_steps + 1) / decay_steps  # 0 at the peak, 1 at the last step
    final = final_fraction * peak_lr
    return final + (peak_lr - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------- the result


@dataclass
class TrainResult:
    """What one training run produced. Losses in nats per token; times in seconds.

    ``n_params`` is the non-embedding count N (Kaplan et al. 2020), ``n_params_total``
    includes the token and position embeddings. ``flops`` = 6·N·D with N non-embedding
    (Kaplan's C); ``flops_total`` = 6·N_total·D. ``n_tokens`` (D) is what was trained:
    n_steps · batch_size · n_ctx, which can be a little less than the budget asked for.
    ``curve`` has one point per evaluation: ``step``, ``tokens`` seen, ``lr`` of that step,
    ``train_loss`` (mean over the steps since the previous point) and ``val_loss`` (on the
    fixed validation slice). ``wall_s`` is the time from the first step to the last
    evaluation (set-up not counted), ``eval_s`` the part of it spent evaluating, and
    ``tokens_per_s`` = n_tokens / (wall_s - eval_s), the training speed.
    ``schedule`` is the learning-rate schedule (:func:`lr_schedule`); ``shared_steps`` the
    steps a WSD branch shares with the run it branched from (:func:`train_budgets`).
    ``model`` is the trained network (not part of the dict or JSON form).

    Introduced in: chapters/05_practice.ipynb
    """

    config: GPTConfig
    n_params: int
    n_params_total: int
    n_tokens: int
    n_steps: int
    batch_size: int
    flops: float
    flops_total: float
    final_val_loss: float
    curve: list[dict[str, float]]
    tokens_per_s: float
    wall_s: float
    eval_s: float
    lr: float
    warmup_steps: int
    seed: int
    eval_tokens: int
    device: str
    schedule: str = "cosine"
    shared_steps: int = 0
    beta2: float = BETAS[1]
    code_version: int = CODE_VERSION
    model: GPT | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready types (config as a dict; the model left out).

        Introduced in: chapters/05_practice.ipynb
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        out["config"] = dataclasses.asdict(self.config)
        out["curve"] = [dict(p) for p in self.curve]
        return out

    def to_json(self) -> str:
        """The result as a JSON string (see :meth:`to_dict`).

        Introduced in: chapters/05_practice.ipynb
        """
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainResult:
        """Rebuild a result from :meth:`to_dict`'s output; ValueError if keys are missing.

        Introduced in: chapters/05_practice.ipynb
        """
        if not isinstance(data, dict):
            raise ValueError(f"data must be a dict, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls) if f.name != "model"]
        missing = [n for n in names if n not in data and n not in _ADDED_LATER]
        if missing:
            raise ValueError(f"data is missing the keys {missing}")
        kwargs = {n: data[n] for n in names if n in data}
        try:
            kwargs["config"] = GPTConfig(**data["config"])
        except TypeError as err:
            raise ValueError(f"data['config'] is not a GPTConfig: {err}") from None
        if not isinstance(data["curve"], list):
            raise ValueError(f"data['curve'] must be a list, got {type(data['curve']).__name__}")
        return cls(**kwargs)


#: Fields added after the first cache entries were written: older entries may lack them.
_ADDED_LATER = ("schedule", "shared_steps", "beta2")


# ----------------------------------------------------------------------------- checks


def _check_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} asked for, but CUDA is not available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    return dev


def _check_ids(name: str, ids: Any, config: GPTConfig) -> np.ndarray:
    ids = id_array(name, ids)
    if ids.shape[0] < config.n_ctx + 1:
        raise ValueError(
            f"{name} must hold at least n_ctx + 1 = {config.n_ctx + 1} tokens, got {ids.shape[0]}"
        )
    top = int(ids.max())
    if top >= config.vocab_size or int(ids.min()) < 0:
        raise ValueError(
            f"{name} holds token id {top}, outside the model's vocabulary "
            f"(config.vocab_size={config.vocab_size}); ids must lie in [0, vocab_size)"
        )
    return ids


def _optional_positive_int(name: str, value: int | None) -> int | None:
    return None if value is None else positive_int(name, value)


def _check_tokens(name: str, value: Any) -> int:
    """A token count: an integer >= 1; a float with an integer value (1e6) is accepted."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return positive_int(name, value)


def _check_model(model: Any) -> torch.nn.Module:
    """A module whose ``config`` has positive integers ``n_ctx`` and ``vocab_size``."""
    config = getattr(model, "config", None)
    sizes = [getattr(config, name, None) for name in ("n_ctx", "vocab_size")]
    if not isinstance(model, torch.nn.Module) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes
    ):
        raise ValueError(
            "model must be an nn.Module with config.n_ctx, config.vocab_size and "
            "forward(idx, targets) -> (logits, loss), such as helpers.model.GPT or "
            f"helpers.lstm.LSTMLM; got {type(model).__name__}"
        )
    return model


# ----------------------------------------------------------------------------- helpers


def _param_groups(model: torch.nn.Module) -> list[dict[str, Any]]:
    """Matrices (embeddings included) get weight decay; biases and LayerNorm gains do not."""
    params = [p for p in model.parameters() if p.requires_grad]  # tied weight listed once
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def _autocast(dev: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on a CUDA device that supports it; nothing (fp32) otherwise."""
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def _evaluate(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, dev: torch.device, rows: int
) -> float:
    """Mean cross-entropy (nats per token) over the windows (x, y), ``rows`` at a time.

    The model is evaluated in eval mode; its mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, x.shape[0], rows):
        xb = x[i : i + rows].to(dev, non_blocking=True)
        yb = y[i : i + rows].to(dev, non_blocking=True)
        with _autocast(dev):
            _, loss = model(xb, yb)
        total += float(loss) * xb.shape[0]  # equal-length windows: weight by rows
    model.train(was_training)
    return total / x.shape[0]


def eval_slice(
    val_ids: np.ndarray, n_ctx: int, eval_tokens: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed evaluation windows: ``eval_tokens // n_ctx`` windows spread evenly.

    The validation split is cut into non-overlapping windows of ``n_ctx`` tokens
    (:func:`helpers.data.eval_windows`) and every k-th is kept so that the slice covers the
    whole split (for Shakespeare: both held-out plays). Nothing is random: every evaluation
    and every run with the same context sees the same tokens. ``eval_tokens=None`` keeps
    every window. Returns ``(x, y)``, int64 tensors of shape (windows, n_ctx).

    Introduced in: chapters/05_practice.ipynb
    """
    n_ctx = positive_int("n_ctx", n_ctx)
    id_array("val_ids", val_ids, n_ctx + 1)
    x, y = _eval_windows(val_ids, n_ctx)  # every whole window
    if eval_tokens is None:
        return x, y
    n = positive_int("eval_tokens", eval_tokens) // n_ctx
    if n < 1:
        raise ValueError(f"eval_tokens must be at least n_ctx={n_ctx}, got {eval_tokens}")
    if n >= x.shape[0]:
        return x, y
    keep = torch.from_numpy(np.linspace(0, x.shape[0] - 1, n).round().astype(np.int64))
    return x[keep], y[keep]


def _atomic_save(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_checkpoint(result: TrainResult, checkpoint_dir: str | Path) -> Path:
    """Write ``result.model`` to ``checkpoint_dir/model.safetensors`` and the rest of the
    result to ``checkpoint_dir/result.json``, each atomically. Returns the folder.

    The tied output layer is stored once (``safetensors.torch.save_model``).

    Introduced in: chapters/05_practice.ipynb
    """
    from safetensors.torch import save_model

    if not isinstance(result, TrainResult) or result.model is None:
        raise ValueError("result must be a TrainResult that holds its model")
    if not isinstance(checkpoint_dir, (str, Path)) or not str(checkpoint_dir):
        raise ValueError(f"checkpoint_dir must be a non-empty str or Path, got {checkpoint_dir!r}")
    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"config": json.dumps(dataclasses.asdict(result.config))}
    model = result.model
    _atomic_save(folder / "model.safetensors", lambda p: save_model(model, p, metadata=meta))

    def write_json(p: str) -> None:
        Path(p).write_text(result.to_json(), encoding="utf-8")

    _atomic_save(folder / "result.json", write_json)
    return folder


def load_checkpoint(checkpoint_dir: str | Path) -> TrainResult:
    """Read a folder written by :func:`save_checkpoint`: the result, with its model (CPU).

    Introduced in: chapters/05_practice.ipynb
    """
    from safetensors.torch import load_model

    if not isinstance(checkpoint_dir, (str, Path)) or not str(checkpoint_dir):
        raise ValueError(f"checkpoint_dir must be a non-empty str or Path, got {checkpoint_dir!r}")
    folder = Path(checkpoint_dir)
    if not (folder / "result.json").is_file() or not (folder / "model.safetensors").is_file():
        raise ValueError(
            f"checkpoint_dir must hold result.json and model.safetensors, got {folder}"
        )
    result = TrainResult.from_dict(json.loads((folder / "result.json").read_text("utf-8")))
    model = GPT(result.config, seed=result.seed)
    load_model(model, folder / "model.safetensors", device="cpu")
    result.model = model.eval()
    return result


# ----------------------------------------------------------------------------- training


@dataclass
class LoopResult:
    """What :func:`train_model` produced. Losses in nats per token; times in seconds.

    ``n_tokens`` (D) were trained in ``n_steps`` optimizer steps of ``batch_size`` windows:
    n_steps · batch_size · n_ctx tokens, which can be a little less than the budget asked
    for. The learning-rate schedule was laid out for ``schedule_steps`` steps (equal to
    ``n_steps`` unless the run was cut short of a longer schedule), with ``warmup_steps``
    steps of warm-up to the peak ``lr``. ``curve`` has one point per evaluation: ``step``,
    ``tokens`` seen, ``lr`` of that step, ``train_loss`` (mean over the steps since the
    previous point) and ``val_loss`` (on the fixed slice of ``eval_tokens`` validation
    tokens). ``wall_s`` is the time from the first step to the last evaluation (set-up not
    counted), ``eval_s`` the part of it spent evaluating, and ``tokens_per_s`` =
    n_tokens / (wall_s - eval_s), the training speed. ``seed`` seeded the batches;
    ``device`` is where the run took place; ``schedule`` is :func:`lr_schedule`'s;
    ``shared_steps`` the steps a WSD branch shares with the run it branched from
    (:func:`train_budgets`; 0 for a run of its own); ``beta2`` AdamW's β₂.

    Introduced in: chapters/03_algorithm.ipynb
    """

    curve: list[dict[str, float]]
    n_tokens: int
    n_steps: int
    schedule_steps: int
    warmup_steps: int
    batch_size: int
    lr: float
    seed: int
    eval_tokens: int
    tokens_per_s: float
    wall_s: float
    eval_s: float
    device: str
    schedule: str = "cosine"
    shared_steps: int = 0
    beta2: float = BETAS[1]

    @property
    def final_val_loss(self) -> float:
        """The validation loss at the last step, in nats per token."""
        return self.curve[-1]["val_loss"]


class _Loop:
    """One run between optimizer steps: the model, its AdamW, the batch generator, and what
    the steps so far produced (each step's training loss and learning rate, the validation
    loss at each evaluated step, the time spent). :meth:`fork` copies all of it exactly, so
    a branch goes on as if it had trained from the first step on its own."""

    def __init__(
        self, model, train_ids, eval_xy, *, lr, beta2, batch_size, seed, dev, eval_batch, bar
    ):
        self.model, self.train_ids, self.eval_xy = model, train_ids, eval_xy
        self.batch_size, self.dev, self.eval_batch, self.bar = batch_size, dev, eval_batch, bar
        self.betas = (BETAS[0], beta2)
        # fused: one kernel for the whole update (3x faster than the loop on CPU for tiny
        # models). The first optimizer in a process imports torch._dynamo (seconds).
        self.optimizer = torch.optim.AdamW(
            _param_groups(model), lr=lr, betas=self.betas, fused=True
        )
        self.gen = torch.Generator().manual_seed(seed)  # batches: CPU generator, any device
        self.losses: list[float] = []  # training loss of every step so far
        self.lrs: list[float] = []  # learning rate of every step so far
        self.vals: dict[int, float] = {}  # steps done -> validation loss
        self.wall_s = self.eval_s = 0.0

    def run(self, stop: int, lr_at, eval_at: set[int], n_steps: int) -> None:
        """Train up to ``stop`` steps done, evaluating after each step count in ``eval_at``
        (``n_steps``, the run's length, only names the run in error messages)."""
        start = time.perf_counter()
        n_ctx = self.model.config.n_ctx
        for step in range(len(self.losses), stop):
            lr_now = lr_at(step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr_now
            x, y = get_batch(self.train_ids, n_ctx, self.batch_size, self.gen)
            x, y = x.to(self.dev, non_blocking=True), y.to(self.dev, non_blocking=True)
            with _autocast(self.dev):
                _, loss = self.model(x, y)  # forward: mean cross-entropy of the next token
            loss_value = loss.detach().item()
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(
                    f"the training loss became {loss_value} at step {step} of {n_steps} "
                    f"(learning rate {lr_now:.3g}); try a smaller lr"
                )
            loss.backward()  # backward: gradients of the loss
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP))
            if not math.isfinite(grad_norm):
                raise NonFiniteLossError(
                    f"the gradient norm became {grad_norm} at step {step} of {n_steps} "
                    f"(learning rate {lr_now:.3g}); try a smaller lr"
                )
            self.optimizer.step()  # update the weights
            self.optimizer.zero_grad(set_to_none=True)
            self.losses.append(loss_value)
            self.lrs.append(lr_now)
            self.bar.update(1)
            if step + 1 in eval_at:
                t0 = time.perf_counter()
                val = _evaluate(self.model, *self.eval_xy, self.dev, self.eval_batch)
                self.eval_s += time.perf_counter() - t0
                self.vals[step + 1] = val
                self.bar.set_postfix(train=f"{loss_value:.3f}", val=f"{val:.3f}")
        self.wall_s += time.perf_counter() - start

    def fork(self) -> _Loop:
        """An exact, independent copy: weights, optimizer moments, generator and history."""
        twin = copy.copy(self)
        twin.model = copy.deepcopy(self.model)
        twin.optimizer = torch.optim.AdamW(_param_groups(twin.model), betas=self.betas, fused=True)
        # a deep copy: load_state_dict would share the moment tensors with this loop
        twin.optimizer.load_state_dict(copy.deepcopy(self.optimizer.state_dict()))
        twin.gen = torch.Generator()
        twin.gen.set_state(self.gen.get_state())
        twin.losses, twin.lrs, twin.vals = list(self.losses), list(self.lrs), dict(self.vals)
        return twin

    def result(self, eval_steps: list[int], **fields: Any) -> LoopResult:
        """The run as a :class:`LoopResult`, its curve at ``eval_steps`` (step counts)."""
        tokens_per_step = self.batch_size * self.model.config.n_ctx
        curve, prev = [], 0
        for e in eval_steps:
            chunk = self.losses[prev:e]  # mean training loss since the previous point
            curve.append(
                {
                    "step": e,
                    "tokens": e * tokens_per_step,
                    "lr": self.lrs[e - 1],
                    "train_loss": sum(chunk) / len(chunk),
                    "val_loss": self.vals[e],
                }
            )
            prev = e
        n_steps = len(self.losses)
        if not math.isfinite(curve[-1]["val_loss"]):
            raise NonFiniteLossError(
                f"the validation loss became {curve[-1]['val_loss']} at step {n_steps} of {n_steps}"
            )
        trained = n_steps * tokens_per_step
        return LoopResult(
            curve=curve,
            n_tokens=trained,
            n_steps=n_steps,
            batch_size=self.batch_size,
            eval_tokens=int(self.eval_xy[0].numel()),
            tokens_per_s=trained / max(self.wall_s - self.eval_s, 1e-9),
            wall_s=self.wall_s,
            eval_s=self.eval_s,
            device=str(self.dev),
            **fields,
        )


def _eval_steps(n_steps: int, eval_every: int | None) -> list[int]:
    """Step counts after which a run of ``n_steps`` evaluates (``None``: N_EVALS times)."""
    every = math.ceil(n_steps / N_EVALS) if eval_every is None else eval_every
    return sorted({*range(every, n_steps + 1, every), n_steps})


def _check_loop_args(model, train_ids, val_ids, batch_size, lr, seed, device, eval_tokens):
    """The arguments :func:`train_model` and :func:`train_budgets` share, checked: returns
    the model, the training ids, the evaluation windows (x, y), batch size, peak learning
    rate, seed and device."""
    model = _check_model(model)
    batch_size = positive_int("batch_size", batch_size)
    peak_lr = positive("lr", lr)
    seed = resolve_seed(seed)
    dev = _check_device(device)
    train_ids = _check_ids("train_ids", train_ids, model.config)
    val_ids = _check_ids("val_ids", val_ids, model.config)
    eval_xy = eval_slice(val_ids, model.config.n_ctx, eval_tokens)
    return model, train_ids, eval_xy, batch_size, peak_lr, seed, dev


def _check_progress(progress: Any, desc: Any) -> None:
    if not isinstance(progress, bool):
        raise ValueError(f"progress must be True or False, got {progress!r}")
    if desc is not None and not isinstance(desc, str):
        raise ValueError(f"desc must be None or a str, got {desc!r}")


def train_model(
    model: torch.nn.Module,
    train_ids: np.ndarray | torch.Tensor,
    val_ids: np.ndarray | torch.Tensor,
    *,
    n_tokens: int | float,
    lr: float,
    batch_size: int = 16,
    seed: int | None = None,
    schedule_tokens: int | float | None = None,
    schedule: str = "cosine",
    warmup_steps: int | None = None,
    beta2: float = BETAS[1],
    device: str | torch.device = "cpu",
    eval_tokens: int | None = EVAL_TOKENS,
    eval_every: int | None = None,
    eval_batch: int | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> LoopResult:
    """Train ``model`` in place on ``n_tokens`` tokens with the lab's recipe; return the run.

    ``model`` is any ``nn.Module`` with ``config.n_ctx`` (training window, tokens),
    ``config.vocab_size`` and ``forward(idx, targets) -> (logits, loss)``, the loss a mean
    cross-entropy in nats per token: a :class:`helpers.model.GPT` or a
    :class:`helpers.lstm.LSTMLM`. Its weights are trained from where they are; the caller
    decides their initialisation.

    - Budget: ``n_steps = n_tokens // (batch_size · n_ctx)`` optimizer steps, each on
      ``batch_size`` random windows of ``n_ctx`` tokens from ``train_ids``
      (:func:`helpers.data.get_batch`); the trained D is n_steps · batch_size · n_ctx tokens.
    - Optimizer: AdamW, β = (0.9, ``beta2``), ``beta2`` 0.95 by default (:data:`BETAS`),
      weight decay 0.1 on matrices only, global gradient norm clipped to 1.0.
    - Schedule (:func:`lr_schedule`): linear warm-up of ``warmup_steps`` steps (``None``:
      :func:`default_warmup`) to the peak ``lr``, then ``schedule``: ``"cosine"`` to 10 % of
      the peak, or ``"wsd"`` (constant, then a cool-down over the last 20 %). The schedule is
      laid out for ``schedule_tokens`` (tokens; ``None``: ``n_tokens``), i.e.
      ``schedule_tokens // (batch_size · n_ctx)`` steps: a larger value trains a run cut
      short of a longer schedule, whose learning rate has not decayed when it stops.
    - Evaluation: mean loss in nats per token on a fixed slice of ``eval_tokens`` validation
      tokens (:func:`eval_slice`; ``None`` = the whole split), every ``eval_every`` steps
      (``None``: 8 times per run) and always at the last step, ``eval_batch`` windows per
      forward pass (``None``: as many as fit in 16 384 tokens).
    - Determinism: batches come from a ``torch.Generator`` seeded with ``seed`` (``None``:
      :func:`helpers.session.course_seed`), so on the
      CPU the same model, arguments (and thread count) give the same losses bit for bit.
      The global random state is untouched.
    - ``device="cuda"`` trains under bf16 autocast when the GPU supports it (fp32 otherwise).
    - A NaN or infinite loss or gradient norm stops the run with :class:`NonFiniteLossError`
      naming the step.
    - ``progress``: a tqdm bar over steps, labelled ``desc`` (``None``: the model's class).

    On return ``model`` is on ``device``, in eval mode. Returns a :class:`LoopResult`.

    Introduced in: chapters/03_algorithm.ipynb
    """
    from tqdm import tqdm

    model, train_ids, eval_xy, batch_size, peak_lr, seed, dev = _check_loop_args(
        model, train_ids, val_ids, batch_size, lr, seed, device, eval_tokens
    )
    beta2 = below_one("beta2", beta2)
    eval_every = _optional_positive_int("eval_every", eval_every)
    eval_batch = _optional_positive_int("eval_batch", eval_batch)
    if eval_batch is None:
        eval_batch = max(1, _EVAL_CHUNK_TOKENS // model.config.n_ctx)
    _check_progress(progress, desc)
    tokens_per_step = batch_size * model.config.n_ctx
    n_steps = _check_tokens("n_tokens", n_tokens) // tokens_per_step
    if n_steps < 1:
        raise ValueError(
            f"n_tokens must be at least one step, batch_size · n_ctx = {tokens_per_step} "
            f"tokens, got {n_tokens}"
        )
    schedule_steps = n_steps
    if schedule_tokens is not None:
        schedule_steps = _check_tokens("schedule_tokens", schedule_tokens) // tokens_per_step
        if schedule_steps < n_steps:
            raise ValueError(
                f"schedule_tokens must be >= n_tokens={n_tokens}, got {schedule_tokens}"
            )
    warmup = default_warmup(schedule_steps) if warmup_steps is None else warmup_steps
    warmup = positive_int("warmup_steps", warmup)

    def lr_at(step: int) -> float:
        return lr_schedule(step, schedule_steps, peak_lr, warmup, schedule=schedule)

    lr_at(0)  # checks schedule and warmup_steps before any training
    model.to(dev)
    model.train()
    label = type(model).__name__ if desc is None else desc
    bar = tqdm(total=n_steps, disable=not progress, unit="step", desc=label, mininterval=0.5)
    loop = _Loop(
        model,
        train_ids,
        eval_xy,
        lr=peak_lr,
        beta2=beta2,
        batch_size=batch_size,
        seed=seed,
        dev=dev,
        eval_batch=eval_batch,
        bar=bar,
    )
    eval_at = _eval_steps(n_steps, eval_every)
    try:
        loop.run(n_steps, lr_at, set(eval_at), n_steps)
    finally:
        bar.close()
    model.eval()
    return loop.result(
        eval_at,
        schedule_steps=schedule_steps,
        warmup_steps=warmup,
        lr=peak_lr,
        seed=seed,
        schedule=schedule,
        beta2=beta2,
    )


def _train_result(config: GPTConfig, run: LoopResult, model: torch.nn.Module) -> TrainResult:
    """A :class:`TrainResult` from a GPT's :class:`LoopResult` (its counts, 6·N·D FLOPs)."""
    n_total, n_non_emb = count_params(config)
    return TrainResult(
        config=config,
        n_params=n_non_emb,
        n_params_total=n_total,
        n_tokens=run.n_tokens,
        n_steps=run.n_steps,
        batch_size=run.batch_size,
        flops=training_flops(n_non_emb, run.n_tokens),
        flops_total=training_flops(n_total, run.n_tokens),
        final_val_loss=run.final_val_loss,
        curve=run.curve,
        tokens_per_s=run.tokens_per_s,
        wall_s=run.wall_s,
        eval_s=run.eval_s,
        lr=run.lr,
        warmup_steps=run.warmup_steps,
        seed=run.seed,
        eval_tokens=run.eval_tokens,
        device=run.device,
        schedule=run.schedule,
        shared_steps=run.shared_steps,
        beta2=run.beta2,
        model=model.cpu(),  # train_model left it in eval mode
    )


def _check_config_and_dir(config: Any, checkpoint_dir: Any) -> None:
    if not isinstance(config, GPTConfig):
        raise ValueError(f"config must be a GPTConfig, got {type(config).__name__}")
    if checkpoint_dir is not None and (
        not isinstance(checkpoint_dir, (str, Path)) or not str(checkpoint_dir)
    ):
        raise ValueError(f"checkpoint_dir must be None or a str/Path, got {checkpoint_dir!r}")


def train(
    config: GPTConfig,
    train_ids: np.ndarray | torch.Tensor,
    val_ids: np.ndarray | torch.Tensor,
    *,
    n_tokens: int | float,
    batch_size: int = 16,
    lr: float | None = None,
    seed: int | None = None,
    schedule: str = "cosine",
    warmup_steps: int | None = None,
    beta2: float = BETAS[1],
    device: str | torch.device = "cpu",
    eval_tokens: int | None = EVAL_TOKENS,
    eval_every: int | None = None,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
) -> TrainResult:
    """Train a fresh :class:`GPT` of shape ``config`` on ``n_tokens`` tokens; return the result.

    The network is ``GPT(config, seed)``, trained by :func:`train_model` (which see for the
    recipe: AdamW, warm-up then ``schedule``, cosine to 10 % of the peak or WSD, over exactly
    ``n_tokens``, the fixed evaluation slice, NaN stop) with batches seeded with the same
    ``seed``, so on the CPU the same arguments (and the same thread count) give the same
    losses bit for bit. ``lr`` is the peak learning rate (``None``: :func:`default_lr`);
    ``warmup_steps`` the warm-up (``None``: :func:`default_warmup`); ``beta2`` AdamW's β₂.
    The other arguments are
    :func:`train_model`'s: ``n_tokens`` and ``eval_tokens`` in tokens, ``eval_every`` in
    steps (``None``: 8 evaluations per run). ``checkpoint_dir``: write the final model and
    result there (:func:`save_checkpoint`, safetensors).

    Returns a :class:`TrainResult` (its ``model`` holds the trained network, on the CPU).

    Introduced in: chapters/05_practice.ipynb
    """
    _check_config_and_dir(config, checkpoint_dir)
    seed = resolve_seed(seed)
    model = GPT(config, seed=seed)
    run = train_model(
        model,
        train_ids,
        val_ids,
        n_tokens=n_tokens,
        lr=default_lr(config) if lr is None else lr,
        batch_size=batch_size,
        seed=seed,
        schedule=schedule,
        warmup_steps=warmup_steps,
        beta2=beta2,
        device=device,
        eval_tokens=eval_tokens,
        eval_every=eval_every,
        progress=progress,
        desc=f"N={count_params(config)[1]:,}",
    )
    result = _train_result(config, run, model)
    if checkpoint_dir is not None:
        save_checkpoint(result, checkpoint_dir)
    return result


def train_budgets(
    config: GPTConfig,
    train_ids: np.ndarray | torch.Tensor,
    val_ids: np.ndarray | torch.Tensor,
    *,
    budgets: Sequence[int | float],
    batch_size: int = 16,
    lr: float | None = None,
    seed: int | None = None,
    warmup_steps: int | None = None,
    beta2: float = BETAS[1],
    device: str | torch.device = "cpu",
    eval_tokens: int | None = EVAL_TOKENS,
    eval_every: int | None = None,
    progress: bool = True,
    on_result: Callable[[int, TrainResult], None] | None = None,
) -> list[TrainResult]:
    """Every WSD run of one shape, one per token budget, from a single long run.

    A WSD run (:func:`lr_schedule`, ``schedule="wsd"``) takes the same steps, whatever its
    budget, until its cool-down starts. So one run to the largest budget is trained, and at
    each shorter budget's :func:`decay_start` an exact copy of it (weights, AdamW moments,
    batch generator) branches off and cools down to that budget (Hägele et al. 2024). Each
    result equals ``train(config, ..., n_tokens=budget, schedule="wsd",
    warmup_steps=warmup_steps)`` bit for bit on the CPU, curve included, at a fraction of the
    cost: budgets of 1, 2 and 4 units cost 4 + 0.2 + 0.4 = 4.6 units instead of 7. Its
    ``shared_steps`` says how many of its steps it shares with the long run.

    ``budgets`` are token budgets (at least one step each, all different); ``warmup_steps``
    is shared by all (``None``: :func:`default_warmup` of the shortest, which must end before
    its cool-down). ``on_result(i, result)`` is called as soon as the run of ``budgets[i]``
    is done (the shorter ones first), e.g. to store it. The other arguments are
    :func:`train`'s. Returns the results in the order of ``budgets``, each with its model.

    Introduced in: chapters/05_practice.ipynb
    """
    from tqdm import tqdm

    _check_config_and_dir(config, None)
    if on_result is not None and not callable(on_result):
        raise ValueError(f"on_result must be None or a function (i, result), got {on_result!r}")
    seed = resolve_seed(seed)
    model = GPT(config, seed=seed)
    peak = default_lr(config) if lr is None else lr
    model, train_ids, eval_xy, batch_size, peak, seed, dev = _check_loop_args(
        model, train_ids, val_ids, batch_size, peak, seed, device, eval_tokens
    )
    beta2 = below_one("beta2", beta2)
    eval_every = _optional_positive_int("eval_every", eval_every)
    eval_batch = max(1, _EVAL_CHUNK_TOKENS // config.n_ctx)
    _check_progress(progress, None)
    tokens_per_step = batch_size * config.n_ctx
    if isinstance(budgets, (str, bytes)) or not isinstance(budgets, Sequence) or not budgets:
        raise ValueError(f"budgets must be a non-empty list of token counts, got {budgets!r}")
    steps = [_check_tokens(f"budgets[{i}]", b) // tokens_per_step for i, b in enumerate(budgets)]
    if min(steps) < 1 or len(set(steps)) < len(steps):
        raise ValueError(
            f"budgets must each be at least one step ({tokens_per_step} tokens) and give "
            f"different numbers of steps, got {list(budgets)!r} ({steps} steps)"
        )
    warmup = default_warmup(min(steps)) if warmup_steps is None else warmup_steps
    warmup = positive_int("warmup_steps", warmup)
    lr_schedule(0, min(steps), peak, warmup, schedule="wsd")  # warm-up ends before cool-downs

    def lr_of(n: int):
        return lambda step: lr_schedule(step, n, peak, warmup, schedule="wsd")

    order = sorted(range(len(steps)), key=steps.__getitem__)
    longest = order[-1]
    evals = {i: _eval_steps(steps[i], eval_every) for i in order}
    trunk_evals = set(evals[longest])  # the long run evaluates for its branches too
    for i in order[:-1]:
        trunk_evals.update(e for e in evals[i] if e <= decay_start(steps[i]))
    cooled = sum(steps[i] - decay_start(steps[i]) for i in order[:-1])
    label = f"N={count_params(config)[1]:,}, {len(steps)} budgets"
    bar = tqdm(total=steps[longest] + cooled, disable=not progress, unit="step", desc=label)
    model.to(dev)
    model.train()
    trunk = _Loop(
        model,
        train_ids,
        eval_xy,
        lr=peak,
        beta2=beta2,
        batch_size=batch_size,
        seed=seed,
        dev=dev,
        eval_batch=eval_batch,
        bar=bar,
    )
    results: list[TrainResult | None] = [None] * len(steps)

    def finish(i: int, loop: _Loop, shared: int) -> None:
        loop.model.eval()
        run = loop.result(
            evals[i],
            schedule_steps=steps[i],
            warmup_steps=warmup,
            lr=peak,
            seed=seed,
            schedule="wsd",
            shared_steps=shared,
            beta2=beta2,
        )
        results[i] = _train_result(config, run, loop.model)
        if on_result is not None:
            on_result(i, results[i])

    try:
        for i in order[:-1]:
            start = decay_start(steps[i])
            trunk.run(start, lr_of(steps[longest]), trunk_evals, steps[longest])
            branch = trunk.fork()
            branch.run(steps[i], lr_of(steps[i]), set(evals[i]), steps[i])
            finish(i, branch, shared=start)
        trunk.run(steps[longest], lr_of(steps[longest]), trunk_evals, steps[longest])
        finish(longest, trunk, shared=0)
    finally:
        bar.close()
    return results  # type: ignore[return-value]


__all__ = [
    "BETAS",
    "CODE_VERSION",
    "LoopResult",
    "NonFiniteLossError",
    "TrainResult",
    "default_lr",
    "decay_start",
    "default_warmup",
    "eval_slice",
    "load_checkpoint",
    "lr_schedule",
    "save_checkpoint",
    "train",
    "train_budgets",
    "train_model",
]
