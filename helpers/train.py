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
import dataclasses
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._validate import id_array, in_range, non_negative_int, positive, positive_int
from .compute import training_flops
from .data import eval_windows as _eval_windows
from .data import get_batch
from .model import GPT, GPTConfig, count_params

#: Bump by hand whenever a change here alters what a run computes (schedule, optimizer,
#: evaluation, batching): the sweep cache keys include it, so old results are not reused.
CODE_VERSION = 1

#: AdamW's β₁, β₂ (Brown et al. 2020, App. B; Hoffmann et al. 2022, App. A).
BETAS = (0.9, 0.95)
#: Decoupled weight decay, applied to matrices (2-D weights) only, never to biases or gains.
WEIGHT_DECAY = 0.1
#: The global gradient norm is clipped to this value before every update.
GRAD_CLIP = 1.0
#: The cosine ends at this fraction of the peak learning rate (Hoffmann et al. 2022, Sec. 3).
FINAL_LR_FRACTION = 0.1
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


def lr_schedule(
    step: int,
    n_steps: int,
    peak_lr: float,
    warmup_steps: int,
    final_fraction: float = FINAL_LR_FRACTION,
) -> float:
    """Learning rate of optimizer step ``step`` (0-based) of a run of ``n_steps`` steps.

    Linear warm-up, peak_lr·(step + 1)/warmup_steps, so the last warm-up step
    (``warmup_steps - 1``) uses the peak; then a cosine from the peak down to
    ``final_fraction``·peak, reached exactly at the last step (``n_steps - 1``): the cosine
    spans the run's whole budget, as Chinchilla's does (Hoffmann et al. 2022, Sec. 3).
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
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
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
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"data is missing the keys {missing}")
        kwargs = {n: data[n] for n in names}
        try:
            kwargs["config"] = GPTConfig(**data["config"])
        except TypeError as err:
            raise ValueError(f"data['config'] is not a GPTConfig: {err}") from None
        if not isinstance(data["curve"], list):
            raise ValueError(f"data['curve'] must be a list, got {type(data['curve']).__name__}")
        return cls(**kwargs)


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
    ``device`` is where the run took place.

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

    @property
    def final_val_loss(self) -> float:
        """The validation loss at the last step, in nats per token."""
        return self.curve[-1]["val_loss"]


def train_model(
    model: torch.nn.Module,
    train_ids: np.ndarray | torch.Tensor,
    val_ids: np.ndarray | torch.Tensor,
    *,
    n_tokens: int | float,
    lr: float,
    batch_size: int = 16,
    seed: int = 0,
    schedule_tokens: int | float | None = None,
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
    - Optimizer: AdamW, β = (0.9, 0.95), weight decay 0.1 on matrices only, global gradient
      norm clipped to 1.0.
    - Schedule (:func:`lr_schedule`): linear warm-up of :func:`default_warmup` steps to the
      peak ``lr``, then a cosine to 10 % of the peak. The schedule is laid out for
      ``schedule_tokens`` (tokens; ``None``: ``n_tokens``), i.e. ``schedule_tokens //
      (batch_size · n_ctx)`` steps: a larger value trains a run cut short of a longer
      schedule, whose learning rate has not decayed when it stops.
    - Evaluation: mean loss in nats per token on a fixed slice of ``eval_tokens`` validation
      tokens (:func:`eval_slice`; ``None`` = the whole split), every ``eval_every`` steps
      (``None``: 8 times per run) and always at the last step, ``eval_batch`` windows per
      forward pass (``None``: as many as fit in 16 384 tokens).
    - Determinism: batches come from a ``torch.Generator`` seeded with ``seed``, so on the
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

    model = _check_model(model)
    n_ctx = model.config.n_ctx
    batch_size = positive_int("batch_size", batch_size)
    n_tokens = _check_tokens("n_tokens", n_tokens)
    tokens_per_step = batch_size * n_ctx
    n_steps = n_tokens // tokens_per_step
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
    peak_lr = positive("lr", lr)
    seed = non_negative_int("seed", seed)
    dev = _check_device(device)
    eval_every = _optional_positive_int("eval_every", eval_every)
    if eval_every is None:
        eval_every = math.ceil(n_steps / N_EVALS)
    eval_batch = _optional_positive_int("eval_batch", eval_batch)
    if eval_batch is None:
        eval_batch = max(1, _EVAL_CHUNK_TOKENS // n_ctx)
    if not isinstance(progress, bool):
        raise ValueError(f"progress must be True or False, got {progress!r}")
    if desc is not None and not isinstance(desc, str):
        raise ValueError(f"desc must be None or a str, got {desc!r}")
    train_ids = _check_ids("train_ids", train_ids, model.config)
    val_ids = _check_ids("val_ids", val_ids, model.config)
    eval_x, eval_y = eval_slice(val_ids, n_ctx, eval_tokens)

    warmup = default_warmup(schedule_steps)
    model.to(dev)
    model.train()
    # fused: one kernel for the whole update (3x faster than the loop on CPU for tiny models).
    # The first optimizer in a process imports torch._dynamo (seconds): not timed below.
    optimizer = torch.optim.AdamW(_param_groups(model), lr=peak_lr, betas=BETAS, fused=True)
    gen = torch.Generator().manual_seed(seed)  # batches: CPU generator, same on any device
    start = time.perf_counter()
    curve: list[dict[str, float]] = []
    loss_sum, loss_n = 0.0, 0
    eval_s = 0.0
    label = type(model).__name__ if desc is None else desc
    bar = tqdm(total=n_steps, disable=not progress, unit="step", desc=label, mininterval=0.5)
    try:
        for step in range(n_steps):
            lr_now = lr_schedule(step, schedule_steps, peak_lr, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr_now
            x, y = get_batch(train_ids, n_ctx, batch_size, gen)
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            with _autocast(dev):
                _, loss = model(x, y)  # forward: mean cross-entropy of the next token
            loss_value = loss.detach().item()
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(
                    f"the training loss became {loss_value} at step {step} of {n_steps} "
                    f"(learning rate {lr_now:.3g}, peak {peak_lr:.3g}); try a smaller lr"
                )
            loss.backward()  # backward: gradients of the loss
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP))
            if not math.isfinite(grad_norm):
                raise NonFiniteLossError(
                    f"the gradient norm became {grad_norm} at step {step} of {n_steps} "
                    f"(learning rate {lr_now:.3g}, peak {peak_lr:.3g}); try a smaller lr"
                )
            optimizer.step()  # update the weights
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss_value
            loss_n += 1
            bar.update(1)
            if (step + 1) % eval_every == 0 or step + 1 == n_steps:
                t0 = time.perf_counter()
                val = _evaluate(model, eval_x, eval_y, dev, eval_batch)
                eval_s += time.perf_counter() - t0
                curve.append(
                    {
                        "step": step + 1,
                        "tokens": (step + 1) * tokens_per_step,
                        "lr": lr_now,
                        "train_loss": loss_sum / loss_n,
                        "val_loss": val,
                    }
                )
                loss_sum, loss_n = 0.0, 0
                bar.set_postfix(train=f"{curve[-1]['train_loss']:.3f}", val=f"{val:.3f}")
    finally:
        bar.close()
    wall = time.perf_counter() - start
    model.eval()
    if not math.isfinite(curve[-1]["val_loss"]):
        raise NonFiniteLossError(
            f"the validation loss became {curve[-1]['val_loss']} at step {n_steps} of {n_steps}"
        )
    trained = n_steps * tokens_per_step
    return LoopResult(
        curve=curve,
        n_tokens=trained,
        n_steps=n_steps,
        schedule_steps=schedule_steps,
        warmup_steps=warmup,
        batch_size=batch_size,
        lr=peak_lr,
        seed=seed,
        eval_tokens=int(eval_x.numel()),
        tokens_per_s=trained / max(wall - eval_s, 1e-9),
        wall_s=wall,
        eval_s=eval_s,
        device=str(dev),
    )


def train(
    config: GPTConfig,
    train_ids: np.ndarray | torch.Tensor,
    val_ids: np.ndarray | torch.Tensor,
    *,
    n_tokens: int | float,
    batch_size: int = 16,
    lr: float | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    eval_tokens: int | None = EVAL_TOKENS,
    eval_every: int | None = None,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
) -> TrainResult:
    """Train a fresh :class:`GPT` of shape ``config`` on ``n_tokens`` tokens; return the result.

    The network is ``GPT(config, seed)``, trained by :func:`train_model` (which see for the
    recipe: AdamW, warm-up then cosine to 10 % of the peak over exactly ``n_tokens``, the
    fixed evaluation slice, NaN stop) with batches seeded with the same ``seed``, so on the
    CPU the same arguments (and the same thread count) give the same losses bit for bit.
    ``lr`` is the peak learning rate (``None``: :func:`default_lr`). The other arguments are
    :func:`train_model`'s: ``n_tokens`` and ``eval_tokens`` in tokens, ``eval_every`` in
    steps (``None``: 8 evaluations per run). ``checkpoint_dir``: write the final model and
    result there (:func:`save_checkpoint`, safetensors).

    Returns a :class:`TrainResult` (its ``model`` holds the trained network, on the CPU).

    Introduced in: chapters/05_practice.ipynb
    """
    if not isinstance(config, GPTConfig):
        raise ValueError(f"config must be a GPTConfig, got {type(config).__name__}")
    seed = non_negative_int("seed", seed)
    if checkpoint_dir is not None and (
        not isinstance(checkpoint_dir, (str, Path)) or not str(checkpoint_dir)
    ):
        raise ValueError(f"checkpoint_dir must be None or a str/Path, got {checkpoint_dir!r}")
    n_total, n_non_emb = count_params(config)
    model = GPT(config, seed=seed)
    run = train_model(
        model,
        train_ids,
        val_ids,
        n_tokens=n_tokens,
        lr=default_lr(config) if lr is None else lr,
        batch_size=batch_size,
        seed=seed,
        device=device,
        eval_tokens=eval_tokens,
        eval_every=eval_every,
        progress=progress,
        desc=f"N={n_non_emb:,}",
    )
    result = TrainResult(
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
        seed=seed,
        eval_tokens=run.eval_tokens,
        device=run.device,
        model=model.cpu(),  # train_model left it in eval mode
    )
    if checkpoint_dir is not None:
        save_checkpoint(result, checkpoint_dir)
    return result


__all__ = [
    "CODE_VERSION",
    "LoopResult",
    "NonFiniteLossError",
    "TrainResult",
    "default_lr",
    "default_warmup",
    "eval_slice",
    "load_checkpoint",
    "lr_schedule",
    "save_checkpoint",
    "train",
    "train_model",
]
