"""Tests of helpers.compute: C ≈ 6·N·D, PF-days, FLOPs per token, and their measurement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.compute import (
    FlopsPerToken,
    flops_per_token,
    measure_flops,
    pf_days,
    run_flops,
    training_flops,
)
from helpers.model import GPT, GPTConfig, count_params, default_ladder

torch.set_num_threads(1)

CONFIG = GPTConfig(vocab_size=40, n_ctx=16, n_layer=2, d_model=32, n_head=2)


def test_training_flops_and_pf_days() -> None:
    assert training_flops(1e9, 2e10) == pytest.approx(1.2e20)
    assert pf_days(8.64e19) == pytest.approx(1.0)
    # GPT-3: 175 B parameters on 300 B tokens is about 3.14e23 FLOPs (Brown et al. 2020).
    assert training_flops(175e9, 300e9) == pytest.approx(3.14e23, rel=0.01)
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="n_params"):
            training_flops(bad, 1e9)
        with pytest.raises(ValueError, match="n_tokens"):
            training_flops(1e9, bad)
        with pytest.raises(ValueError, match="flops"):
            pf_days(bad)


def test_flops_per_token_by_hand() -> None:
    _, n = count_params(CONFIG)
    L, T, C, V = 2, 16, 32, 40
    kaplan = flops_per_token(CONFIG, attention="causal", unembedding=False)
    assert kaplan == 2 * n + 2 * L * T * C  # Kaplan et al. 2020, Table 1
    full = flops_per_token(CONFIG)  # defaults: causal attention, with the output layer
    assert full == kaplan + 2 * C * V
    dense = flops_per_token(CONFIG, attention="dense")
    assert dense - full == 2 * L * T * C
    assert flops_per_token(CONFIG, mode="train") == 3 * full
    assert flops_per_token(CONFIG, context=8) == full - 2 * L * 8 * C


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(mode="backward"), "mode"),
        (dict(attention="flash"), "attention"),
        (dict(unembedding=1), "unembedding"),
        (dict(context=0), "context"),
    ],
)
def test_flops_per_token_rejects_bad_input(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        flops_per_token(CONFIG, **kwargs)
    with pytest.raises(ValueError, match="config"):
        flops_per_token((2, 32))  # type: ignore[arg-type]


def test_measure_flops_counts_the_cpu_attention_kernel() -> None:
    model = GPT(CONFIG)
    B, T, L, C = 2, 16, 2, 32
    full = measure_flops(model, B, T)
    half = measure_flops(model, B, T // 2)
    # Everything but attention is linear in tokens; attention over T positions costs
    # 4·T·C per token and layer forward (QKᵀ and AV, full T×T), 10·T·C for the backward.
    attn_per_token = (full["forward"] / (B * T)) - (half["forward"] / (B * T // 2))
    assert attn_per_token == 4 * L * (T - T // 2) * C
    train_attn = (full["train"] / (B * T)) - (half["train"] / (B * T // 2))
    assert train_attn == 14 * L * (T - T // 2) * C
    assert model.transformer.wte.weight.grad is None  # measuring leaves .grad alone


@pytest.mark.parametrize("config", default_ladder(), ids=str)
def test_formula_within_5_percent_of_measurement(config: GPTConfig) -> None:
    model = GPT(config)
    B, T = 1, config.n_ctx
    measured = measure_flops(model, B, T)
    for mode in ("forward", "train"):
        formula = flops_per_token(config, mode=mode, attention="dense")
        assert measured[mode] / (B * T) == pytest.approx(formula, rel=0.05), mode


def test_measure_flops_rejects_bad_input() -> None:
    model = GPT(CONFIG)
    for kwargs, name in [
        (dict(batch_size=0, context=8), "batch_size"),
        (dict(batch_size=1, context=0), "context"),
        (dict(batch_size=1, context=CONFIG.n_ctx + 1), "context"),
        (dict(batch_size=1, context=8, seed=-1), "seed"),
    ]:
        with pytest.raises(ValueError, match=name):
            measure_flops(model, **kwargs)
    with pytest.raises(ValueError, match="model"):
        measure_flops(torch.nn.Linear(2, 2), 1, 8)  # type: ignore[arg-type]


def test_run_flops_and_the_cost_of_a_family_of_shapes() -> None:
    shapes = [
        GPTConfig(vocab_size=86, n_ctx=64, n_layer=2, d_model=d, n_head=1) for d in (12, 24, 48)
    ]
    per_token = [flops_per_token(c, mode="train") for c in shapes]
    assert run_flops(shapes[0], 1000) == per_token[0] * 1000
    assert run_flops(shapes[0], 1000) > training_flops(count_params(shapes[0])[1], 1000)
    cost = FlopsPerToken(shapes)
    n = np.array([count_params(c)[1] for c in shapes], dtype=float)
    np.testing.assert_allclose(cost(n), per_token, rtol=1e-12)  # exact at the shapes
    assert cost(float(n[0])) == pytest.approx(per_token[0], rel=1e-12)
    mid = float(np.sqrt(n[0] * n[1]))  # between two shapes: between their costs
    assert per_token[0] < cost(mid) < per_token[1]
    middle = GPTConfig(vocab_size=86, n_ctx=64, n_layer=2, d_model=18, n_head=1)
    n_mid = count_params(middle)[1]  # a shape between two 4x apart in N: within 2 %
    assert cost(n_mid) == pytest.approx(flops_per_token(middle, mode="train"), rel=0.02)
    beyond = cost(np.array([n[0] / 4, n[-1] * 4]))  # extended along the end segments
    assert beyond[0] < per_token[0] and beyond[1] > per_token[-1]
    for bad in ([shapes[0]], shapes[0], "shapes", [shapes[0], shapes[0]]):
        with pytest.raises(ValueError, match="configs"):
            FlopsPerToken(bad)
    with pytest.raises(ValueError, match="n_params"):
        cost(-1.0)
    with pytest.raises(ValueError, match="n_tokens"):
        run_flops(shapes[0], 0)
