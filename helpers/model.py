"""A small GPT-2-style language model, its exact parameter count, and a ladder of sizes.

Read it top to bottom: the config, the model (attention, MLP, block, GPT), the closed-form
parameter count, the ladder of shapes a scaling sweep trains, and the bridge to Hugging Face
``transformers``. The architecture is GPT-2's (Radford et al. 2019): learned token and position
embeddings, pre-LayerNorm blocks, GELU (tanh form), biases everywhere, a final LayerNorm and an
output layer tied to the token embedding; no dropout, since our runs see each token about once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._validate import non_negative, positive, positive_int
from .session import resolve_seed

#: LayerNorm epsilon, as GPT-2 (``layer_norm_epsilon`` in ``transformers.GPT2Config``).
LN_EPS = 1e-5


def init_std(d_model: int) -> float:
    """Standard deviation of a GPT's initial weights: sqrt(2 / (5 · d_model)).

    This is the "small init" of Nguyen & Salazar (2019, "Transformers without Tears"),
    which GPT-NeoX-20B uses for all but its residual output layers (Black et al. 2022). At
    GPT-2's widths it is GPT-2's constant 0.02 (0.023 at d_model 768, 0.016 at 1,600); at
    the laptop's widths (12–72) it is 3.7–9× larger. With 0.02 at every width, how soon a
    laptop model left the character-pair plateau depended on the seed of its initial
    weights: at width 24, eight initialisations trained on the same batches ended 300 steps
    at 2.50–2.80 nats/char (a character-pair table: 2.52), and across widths 24–48 a share
    of runs stayed near that plateau for 1,000 steps or more. With this rule the same eight
    ended at 2.46–2.49, and at widths 12–48 the spread over initialisations after 300 steps
    was 0.01–0.02 nats instead of 0.03–0.10; the seed of the batches, varied with one
    initialisation, changed little. ``benchmarks/init_scale.py`` measures both rules.

    Introduced in: chapters/05_practice.ipynb
    """
    d_model = positive_int("d_model", d_model)
    return math.sqrt(2.0 / (5.0 * d_model))


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT. Sizes are counts (tokens, positions, layers, channels, heads).

    Introduced in: chapters/02_concepts.ipynb
    """

    vocab_size: int = 86  # tokens in the vocabulary (char tokenizer: 84 characters + 2 specials)
    n_ctx: int = 64  # context length: the most positions the model reads at once
    n_layer: int = 4  # number of transformer blocks (depth)
    d_model: int = 64  # width of the residual stream (channels per position)
    n_head: int = 4  # attention heads; each head has d_model / n_head channels

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_ctx", "n_layer", "d_model", "n_head"):
            positive_int(name, getattr(self, name))
        if self.d_model % self.n_head:
            raise ValueError(
                f"d_model must be divisible by n_head, got d_model={self.d_model}, "
                f"n_head={self.n_head}"
            )

    @property
    def head_dim(self) -> int:
        """Channels per attention head, d_model / n_head."""
        return self.d_model // self.n_head


# ----------------------------------------------------------------------------- the model


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which each position sees only itself and the past."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.d_model, 3 * config.d_model)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.d_model, config.d_model)  # back to the residual stream

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape  # (B, T, C)
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 × (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.c_proj(y)  # (B, T, C)


class MLP(nn.Module):
    """Position-wise feed-forward layer: C → 4C → GELU → C."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.d_model, 4 * config.d_model)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"
        self.c_proj = nn.Linear(4 * config.d_model, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))  # (B, T, C) → (B, T, 4C) → (B, T, C)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model, eps=LN_EPS)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model, eps=LN_EPS)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, T, C)
        x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        return x


class GPT(nn.Module):
    """GPT-2-style decoder. ``GPT(config, seed)`` is the same network for the same seed
    (``None``: :func:`helpers.session.course_seed`).

    Module names follow ``transformers.GPT2LMHeadModel`` so that weights map one to one
    (see :func:`to_hf`). Initialisation: weights normal(0, :func:`init_std`
    (d_model)), the width-aware rule that equals GPT-2's 0.02 at GPT-2's widths; biases 0;
    and, as GPT-2, the two projections that write into the residual stream scaled by
    1/sqrt(2·n_layer) (Radford et al. 2019, Sec. 2.3). The global random state is left untouched.

    Introduced in: chapters/02_concepts.ipynb
    """

    def __init__(self, config: GPTConfig, seed: int | None = None) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ValueError(f"config must be a GPTConfig, got {type(config).__name__}")
        seed = resolve_seed(seed)  # None: the course's seed
        self.config = config
        with torch.random.fork_rng(devices=[]):  # PyTorch's default init must not move it
            self.transformer = nn.ModuleDict(
                dict(
                    wte=nn.Embedding(config.vocab_size, config.d_model),  # token embedding
                    wpe=nn.Embedding(config.n_ctx, config.d_model),  # position embedding
                    h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
                    ln_f=nn.LayerNorm(config.d_model, eps=LN_EPS),
                )
            )
            self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: one matrix, used twice
        self._init_weights(seed)

    @torch.no_grad()
    def _init_weights(self, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        std = init_std(self.config.d_model)
        resid_std = std / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():  # tied weights are listed once
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, resid_std, generator=g)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)
            elif ".ln_" in name:  # LayerNorm gains
                nn.init.ones_(p)
            else:  # embeddings and the other matrices
                nn.init.normal_(p, 0.0, std, generator=g)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab) for token ids ``idx`` (B, T); loss if ``targets`` is given.

        ``targets`` holds the next token for each position, (B, T); the loss is the mean
        cross-entropy in nats per token.
        """
        B, T = idx.shape
        if T > self.config.n_ctx:
            raise ValueError(f"idx may hold at most n_ctx={self.config.n_ctx} positions, got {T}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C)
        for block in self.transformer.h:
            x = block(x)  # (B, T, C)
        x = self.transformer.ln_f(x)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T))
        return logits, loss


# ----------------------------------------------------------------------------- counting


def count_params(config: GPTConfig) -> tuple[int, int]:
    """Exact parameter count of :class:`GPT` (and of GPT-2) as ``(total, non_embedding)``.

    Per block: c_attn 3C² + 3C, c_proj C² + C, c_fc 4C² + 4C, c_proj 4C² + C, two LayerNorms
    4C, so 12C² + 13C; the final LayerNorm adds 2C. Non-embedding excludes the token
    (vocab·C) and position (n_ctx·C) embeddings (Kaplan et al. 2020, Sec. 2.1); the output
    layer is the token embedding, so it is counted once, in the total only.

    Introduced in: chapters/02_concepts.ipynb
    """
    if not isinstance(config, GPTConfig):
        raise ValueError(f"config must be a GPTConfig, got {type(config).__name__}")
    C = config.d_model
    non_embedding = config.n_layer * (12 * C * C + 13 * C) + 2 * C
    total = non_embedding + (config.vocab_size + config.n_ctx) * C
    return total, non_embedding


def kaplan_params(n_layer: int, d_model: int) -> int:
    """Kaplan's approximation of non-embedding parameters, N ≈ 12·n_layer·d_model².

    Drops biases and LayerNorms (13·d_model per layer), which matter only for narrow models
    (Kaplan et al. 2020, Eq. 2.1, with d_attn = d_model and d_ff = 4·d_model).

    Introduced in: chapters/02_concepts.ipynb
    """
    return 12 * positive_int("n_layer", n_layer) * positive_int("d_model", d_model) ** 2


# ----------------------------------------------------------------------------- the ladder


def ladder(
    n_params_target: float,
    *,
    vocab_size: int = 86,
    n_ctx: int = 64,
    head_dim: int = 16,
    aspect: float = 16.0,
    aspect_range: tuple[float, float] = (8.0, 64.0),
    min_layers: int = 2,
    shape_weight: float = 0.5,
) -> GPTConfig:
    """The GPT shape whose non-embedding parameter count is near ``n_params_target``.

    The rule: heads have a fixed size of ``head_dim`` channels, so d_model is a multiple of
    it and n_head = d_model / head_dim. Among all shapes with at least ``min_layers`` blocks
    and an aspect ratio d_model / n_layer inside ``aspect_range``, take the one that
    minimises |ln(N / target)| + shape_weight·|ln(aspect ratio / aspect)|, N the exact
    non-embedding count. With the default weight 0.5, doubling the distance to the preferred
    aspect ratio costs as much as missing the target N by a factor √2.

    Why a band and not one shape: Kaplan et al. (2020, Sec. 3.1, Fig. 5) found the loss at
    fixed N changes by only a few percent over a wide range of aspect ratios, so size can be
    varied while shape stays in a band. The band reaches down to 8 because tiny models cannot
    be both deep and wide; at least 2 blocks because one block cannot compose attention heads
    (an induction head needs two layers; Olsson et al. 2022).

    Introduced in: chapters/03_algorithm.ipynb
    """
    target = positive("n_params_target", n_params_target)
    positive_int("vocab_size", vocab_size)
    positive_int("n_ctx", n_ctx)
    positive_int("head_dim", head_dim)
    positive_int("min_layers", min_layers)
    positive("aspect", aspect)
    non_negative("shape_weight", shape_weight)
    if not isinstance(aspect_range, (tuple, list)) or len(aspect_range) != 2:
        raise ValueError(f"aspect_range must be (low, high), got {aspect_range!r}")
    lo = positive("aspect_range[0]", aspect_range[0])
    hi = positive("aspect_range[1]", aspect_range[1])
    if not lo <= aspect <= hi:
        raise ValueError(f"aspect must lie in aspect_range {aspect_range}, got {aspect}")

    def non_embedding(n_layer: int, d_model: int) -> int:
        return count_params(GPTConfig(1, 1, n_layer, d_model, 1))[1]

    best, best_cost = None, math.inf
    n_layer = min_layers
    # Deeper shapes in the band only grow; stop once the narrowest is 8x too big.
    while non_embedding(n_layer, head_dim * math.ceil(lo * n_layer / head_dim)) < 8 * target:
        d_min = head_dim * math.ceil(lo * n_layer / head_dim)
        for d_model in range(d_min, math.floor(hi * n_layer) + 1, head_dim):
            cost = abs(math.log(non_embedding(n_layer, d_model) / target))
            cost += shape_weight * abs(math.log(d_model / n_layer / aspect))
            if cost < best_cost:
                best, best_cost = (n_layer, d_model), cost
        n_layer += 1
    if best is None:
        raise ValueError(
            f"n_params_target={n_params_target} is too small: with head_dim={head_dim}, "
            f"min_layers={min_layers} and aspect_range={aspect_range} the smallest shape has "
            f"{non_embedding(min_layers, head_dim * math.ceil(lo * min_layers / head_dim))} "
            "non-embedding parameters"
        )
    n_layer, d_model = best
    return GPTConfig(vocab_size, n_ctx, n_layer, d_model, d_model // head_dim)


def default_ladder(
    n_sizes: int = 7,
    n_min: float = 6e3,
    n_max: float = 1.6e6,
    *,
    vocab_size: int = 86,
    n_ctx: int = 64,
    head_dim: int = 16,
) -> list[GPTConfig]:
    """The course's model sizes: ``n_sizes`` shapes with non-embedding N spaced evenly on a
    log scale from ``n_min`` to ``n_max`` parameters, each chosen by :func:`ladder`.

    The default spans about 6.6 k to 1.6 M non-embedding parameters (≈ 240×): the smallest
    trains at ~0.3 M tokens/s on one laptop core, the largest at ~10 k tokens/s. Shapes that
    come out the same are kept once, so the list may be shorter than ``n_sizes``.

    Introduced in: chapters/03_algorithm.ipynb
    """
    positive_int("n_sizes", n_sizes)
    lo, hi = positive("n_min", n_min), positive("n_max", n_max)
    if hi < lo:
        raise ValueError(f"n_max must be >= n_min, got n_min={n_min}, n_max={n_max}")
    targets = (
        [lo] if n_sizes == 1 else [lo * (hi / lo) ** (i / (n_sizes - 1)) for i in range(n_sizes)]
    )
    configs: list[GPTConfig] = []
    for t in targets:
        c = ladder(t, vocab_size=vocab_size, n_ctx=n_ctx, head_dim=head_dim)
        if c not in configs:
            configs.append(c)
    return configs


# ----------------------------------------------------------------------------- transformers


def _hf_config(config: GPTConfig) -> Any:
    from transformers import GPT2Config

    c = config
    return GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.n_ctx, n_embd=c.d_model, n_layer=c.n_layer,
        n_head=c.n_head, n_inner=None,  # None: 4·n_embd
        activation_function="gelu_new",  # GELU, tanh approximation
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # no dropout
        layer_norm_epsilon=LN_EPS, initializer_range=init_std(c.d_model), tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=None,  # GPT-2's 50256 lies outside a small vocabulary
    )  # fmt: skip


#: Weights that ``transformers`` stores as Conv1D, (in, out): the transpose of nn.Linear's.
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _transposed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.t().contiguous() if k.endswith(_CONV1D) else v for k, v in state.items()}


def to_hf(model: GPT) -> Any:
    """The same network as a ``transformers.GPT2LMHeadModel`` in eval mode (weights copied).

    Its logits equal ours, and ``generate()``, ``save_pretrained()`` and the rest of
    ``transformers`` work on it.

    Introduced in: chapters/05_practice.ipynb
    """
    if not isinstance(model, GPT):
        raise ValueError(f"model must be a GPT, got {type(model).__name__}")
    from transformers import GPT2LMHeadModel

    with torch.random.fork_rng(devices=[]):
        hf = GPT2LMHeadModel(_hf_config(model.config))
    hf.load_state_dict(_transposed(model.state_dict()), strict=True)
    return hf.eval()


def from_hf(hf_model: Any) -> GPT:
    """Our :class:`GPT` holding the weights of a GPT-2 ``transformers`` model.

    The model must have GPT-2's layout as :func:`to_hf` writes it: tanh GELU, MLP width 4·C,
    LayerNorm eps 1e-5, tied output layer; anything else raises ValueError.

    Introduced in: chapters/05_practice.ipynb
    """
    cfg = getattr(hf_model, "config", None)
    if getattr(cfg, "model_type", None) != "gpt2":
        raise ValueError(f"hf_model must be a GPT-2 transformers model, got {type(hf_model)}")
    want = dict(activation_function="gelu_new", layer_norm_epsilon=LN_EPS, tie_word_embeddings=True)
    got = {k: getattr(cfg, k) for k in want}
    if got != want or cfg.n_inner not in (None, 4 * cfg.n_embd):
        raise ValueError(
            f"hf_model must have {want} and n_inner 4·n_embd, got {got}, {cfg.n_inner}"
        )
    config = GPTConfig(cfg.vocab_size, cfg.n_positions, cfg.n_layer, cfg.n_embd, cfg.n_head)
    model = GPT(config)
    state = {k: v for k, v in hf_model.state_dict().items() if k in model.state_dict()}
    model.load_state_dict(_transposed(state), strict=True)
    return model


def save_pretrained(model: GPT, tokenizer: Any, path: str | Path) -> Path:
    """Write ``model`` (and ``tokenizer``) to folder ``path`` in Hugging Face format.

    Weights go to ``model.safetensors``; ``AutoModelForCausalLM.from_pretrained(path)`` loads
    them back. ``tokenizer`` may be ``None``, a ``tokenizers.Tokenizer`` (wrapped in a
    ``PreTrainedTokenizerFast``) or anything with a ``save_pretrained`` method. Returns the
    folder.

    Introduced in: chapters/05_practice.ipynb
    """
    if not isinstance(path, (str, Path)) or not str(path):
        raise ValueError(f"path must be a non-empty str or Path, got {path!r}")
    hf = to_hf(model)
    path = Path(path)
    if tokenizer is not None:
        import tokenizers
        from transformers import PreTrainedTokenizerFast

        if isinstance(tokenizer, tokenizers.Tokenizer):
            tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer)
        if not hasattr(tokenizer, "save_pretrained"):
            raise ValueError(
                "tokenizer must be None, a tokenizers.Tokenizer or have save_pretrained(), "
                f"got {type(tokenizer).__name__}"
            )
        if len(tokenizer) > model.config.vocab_size:
            raise ValueError(f"tokenizer has more tokens than vocab_size={model.config.vocab_size}")
        tokenizer.save_pretrained(path)
    hf.save_pretrained(path)
    return path
