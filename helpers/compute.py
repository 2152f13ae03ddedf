"""Compute: FLOPs of training and inference.

C ≈ 6·N·D and PF-days; the per-token count of our GPT after Kaplan et al. (2020, Table 1),
the exact training FLOPs of a run and of a family of shapes, and PyTorch's own count of a
real forward and backward pass to check it against.

Introduced in: chapters/01_background.ipynb (C ≈ 6·N·D); measured in chapters/02_concepts.ipynb.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from ._validate import non_negative_int, one_of, positive, positive_array, positive_int
from .laws import PF_DAY

if TYPE_CHECKING:  # the model module imports torch; compute stays light to import
    from .model import GPT, GPTConfig


def training_flops(n_params: float, n_tokens: float) -> float:
    """C ≈ 6·N·D: FLOPs to train ``n_params`` parameters on ``n_tokens`` tokens.

    2 FLOPs per parameter per token in the forward pass, 4 in the backward pass
    (Kaplan et al. 2020, Sec. 2.1). Returns FLOPs.

    Introduced in: chapters/01_background.ipynb
    """
    return 6.0 * positive("n_params", n_params) * positive("n_tokens", n_tokens)


def pf_days(flops: float) -> float:
    """Convert FLOPs to petaflop/s-days (1 PF-day = 8.64e19 FLOPs).

    Introduced in: chapters/01_background.ipynb
    """
    return positive("flops", flops) / PF_DAY


# ----------------------------------------------------------------------------- per token

#: Attention conventions of :func:`flops_per_token` (FLOPs per token per layer, / (n_ctx·C)).
ATTENTION_FACTORS = {"causal": 2, "dense": 4}


def flops_per_token(
    config: GPTConfig,
    *,
    mode: str = "forward",
    attention: str = "causal",
    unembedding: bool = True,
    context: int | None = None,
) -> float:
    """FLOPs per token of a :class:`helpers.model.GPT` of shape ``config``.

    Forward pass (Kaplan et al. 2020, Table 1): 2·N for the weight matmuls, N the exact
    non-embedding parameter count, plus attention over a context of T = ``context``
    positions (default ``config.n_ctx``):

    - ``attention="causal"``: 2·n_layer·T·d_model, Kaplan's term. Scores QKᵀ and the
      weighted sum of V cost 2·T·d_model FLOPs each per token and layer if every position
      attends to all T; with the causal mask a token attends to (T+1)/2 on average, so the
      useful work is about half, 2·T·d_model.
    - ``attention="dense"``: 4·n_layer·T·d_model, the full T×T score matrix including the
      masked half. This is what a fused kernel computes and what ``measure_flops`` counts.

    ``unembedding=True`` adds the output layer, 2·d_model·vocab_size. Kaplan et al. list it
    in Table 1 but leave it out of C_forward. For the course's default ladder it is 13 % of the
    forward FLOPs of the smallest model and 0.6 % of the largest; leaving it out is one of the
    reasons Porian et al. (2024) give for the gap between Kaplan's and Chinchilla's laws.
    Kaplan's C_forward is ``unembedding=False, attention="causal"``.

    ``mode="train"`` returns 3× the forward FLOPs: the backward pass costs two matmuls per
    forward matmul (gradients for inputs and weights). Embedding look-ups, LayerNorm, GELU
    and softmax are left out (a few FLOPs per channel, not per parameter). Returns FLOPs.

    Introduced in: chapters/02_concepts.ipynb
    """
    from .model import GPTConfig, count_params

    if not isinstance(config, GPTConfig):
        raise ValueError(f"config must be a GPTConfig, got {type(config).__name__}")
    one_of("mode", mode, ["forward", "train"])
    one_of("attention", attention, list(ATTENTION_FACTORS))
    if not isinstance(unembedding, bool):
        raise ValueError(f"unembedding must be True or False, got {unembedding!r}")
    T = config.n_ctx if context is None else positive_int("context", context)
    _, n_non_embedding = count_params(config)
    forward = 2.0 * n_non_embedding
    forward += ATTENTION_FACTORS[attention] * config.n_layer * T * config.d_model
    if unembedding:
        forward += 2.0 * config.d_model * config.vocab_size
    return forward if mode == "forward" else 3.0 * forward


def run_flops(config: GPTConfig, n_tokens: float) -> float:
    """Exact training FLOPs of a run: ``flops_per_token(config, mode="train")`` × ``n_tokens``.

    Attention and the output layer included, unlike 6·N·D (:func:`training_flops`), which
    undercounts small models: by 1.68× for the laptop design's smallest shape and 1.12× for
    its largest. This is the C of the lab's design tables and fits. Returns FLOPs.

    Introduced in: chapters/05_practice.ipynb
    """
    return flops_per_token(config, mode="train") * positive("n_tokens", n_tokens)


class FlopsPerToken:
    """Training FLOPs per token as a function of non-embedding N, for a family of shapes.

    Built from ``configs`` (two or more shapes of one family, e.g. a sweep's, with different
    N): the exact count :func:`flops_per_token` (``mode="train"``) of each, joined by
    straight lines in log-log space and extended beyond the smallest and largest shape along
    the end segments. Call it with N (a number or an array) to get FLOPs per token; the
    compute of N parameters trained on D tokens is then ``cost(N) · D``. Fits use it where
    the compute-optimal N falls between the shapes (:func:`helpers.fit.fit_isoflop`,
    :meth:`helpers.fit.ChinchillaFit.frontier`). ``n_params`` and ``per_token`` hold the
    shapes' N and FLOPs per token, smallest first.

    Introduced in: chapters/05_practice.ipynb
    """

    def __init__(self, configs: Iterable[GPTConfig]) -> None:
        from .model import GPTConfig, count_params

        if isinstance(configs, GPTConfig) or not isinstance(configs, Iterable):
            raise ValueError(f"configs must be a list of GPTConfig, got {configs!r:.60}")
        configs = list(configs)
        if not all(isinstance(c, GPTConfig) for c in configs):
            raise ValueError("configs must be a list of GPTConfig")
        points = {count_params(c)[1]: flops_per_token(c, mode="train") for c in configs}
        if len(points) < 2:
            raise ValueError(f"configs must hold at least 2 shapes of different N, got {points}")
        self.n_params = np.array(sorted(points), dtype=float)
        self.per_token = np.array([points[n] for n in sorted(points)])
        self._x, self._y = np.log(self.n_params), np.log(self.per_token)

    def __call__(self, n_params: float | np.ndarray) -> float | np.ndarray:
        x = np.log(positive_array("n_params", n_params))
        y = np.interp(x, self._x, self._y)
        for end, (i, j) in ((x < self._x[0], (0, 1)), (x > self._x[-1], (-2, -1))):
            slope = (self._y[j] - self._y[i]) / (self._x[j] - self._x[i])
            y = np.where(end, self._y[j] + slope * (x - self._x[j]), y)
        out = np.exp(y)
        return out if np.ndim(n_params) else float(out[0])

    def __repr__(self) -> str:
        low, high = self.n_params[0], self.n_params[-1]
        return f"FlopsPerToken({self.n_params.size} shapes, N {low:,.0f}–{high:,.0f})"


def _sdpa_cpu_forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward(grad_shape, query_shape, key_shape, value_shape, *args, **kwargs):
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_shape, query_shape, key_shape, value_shape)


def measure_flops(model: GPT, batch_size: int, context: int, *, seed: int = 0) -> dict[str, float]:
    """FLOPs of one forward and one forward + backward pass, counted by PyTorch.

    Runs ``model`` on a random batch of ``batch_size`` × ``context`` tokens inside
    ``torch.utils.flop_counter.FlopCounterMode`` and returns ``{"forward": ..., "train":
    ...}`` in FLOPs for the whole batch (divide by batch_size·context for per token).
    The counter counts matrix products only (2 FLOPs per multiply-add; bias adds, LayerNorm,
    GELU and softmax are not counted). PyTorch (2.13) has no formula for the CPU
    attention kernel (``_scaled_dot_product_flash_attention_for_cpu``) and would count it
    as 0, so we register its own GPU-kernel formulas for it: forward QKᵀ and AV over the
    full T×T matrix, masked half included (4·T²·d_model per layer and sequence); backward
    the same five products the GPU flash kernel counts (the scores are recomputed).
    Gradients are taken with ``torch.autograd.grad``: ``.grad`` of the model is untouched.

    Introduced in: chapters/02_concepts.ipynb
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .model import GPT

    if not isinstance(model, GPT):
        raise ValueError(f"model must be a helpers.model.GPT, got {type(model).__name__}")
    B = positive_int("batch_size", batch_size)
    T = positive_int("context", context)
    if T > model.config.n_ctx:
        raise ValueError(f"context must be <= n_ctx={model.config.n_ctx}, got {context}")
    seed = non_negative_int("seed", seed)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(model.config.vocab_size, (B, T + 1), generator=g)
    aten = torch.ops.aten
    mapping = {
        aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward,
    }
    params = [p for p in model.parameters() if p.requires_grad]
    counts = {}
    for name in ("forward", "train"):
        counter = FlopCounterMode(display=False, custom_mapping=mapping)
        with counter, torch.set_grad_enabled(name == "train"):
            _, loss = model(idx[:, :-1], idx[:, 1:])
            if name == "train":
                torch.autograd.grad(loss, params)
        counts[name] = float(counter.get_total_flops())
    return counts
