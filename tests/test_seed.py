"""Tests of the course's seed: SCALING_COURSE_SEED reaches every training helper's default."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import helpers as h
from helpers import lstm, sweep, train
from helpers.model import GPT, GPTConfig
from helpers.session import SEED_VARIABLE, course_seed

CONFIG = GPTConfig(vocab_size=40, n_ctx=16, n_layer=1, d_model=16, n_head=1)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_unset_is_zero(monkeypatch) -> None:
    monkeypatch.delenv(SEED_VARIABLE, raising=False)
    assert course_seed() == 0
    assert _same_weights(GPT(CONFIG), GPT(CONFIG, seed=0))
    assert {s.seed for s in sweep.laptop_design()} == {0}


def test_the_variable_reaches_every_default(monkeypatch) -> None:
    monkeypatch.setenv(SEED_VARIABLE, "3")
    assert course_seed() == 3
    assert _same_weights(GPT(CONFIG), GPT(CONFIG, seed=3))
    assert not _same_weights(GPT(CONFIG), GPT(CONFIG, seed=0))
    lstm_config = lstm.LSTMConfig(vocab_size=40, n_ctx=16, n_layer=1, d_model=8)
    assert _same_weights(lstm.LSTMLM(lstm_config), lstm.LSTMLM(lstm_config, seed=3))
    assert {s.seed for s in sweep.laptop_design()} == {3}
    assert sweep.RunSpec(CONFIG, n_tokens=64 * 4, batch_size=4).seed == 3
    budgets = [64 * 10, 64 * 20]
    assert {s.seed for s in sweep.grid_design([CONFIG], budgets, batch_size=4, min_steps=1)} == {3}
    explicit = sweep.grid_design([CONFIG], budgets, batch_size=4, min_steps=1, seeds=[0, 1])
    assert [s.seed for s in explicit] == [0, 1, 0, 1]  # a seed given is a seed used
    ids = np.tile(np.arange(40, dtype=np.uint16), 50)
    run = train.train(
        CONFIG, ids, ids, n_tokens=64 * 4, batch_size=4, eval_tokens=64, progress=False
    )
    alone = train.train(
        CONFIG, ids, ids, n_tokens=64 * 4, batch_size=4, eval_tokens=64, progress=False, seed=3
    )
    assert run.seed == 3 and run.final_val_loss == alone.final_val_loss
    h.setup()
    first = np.random.rand()
    np.random.seed(3)
    assert first == np.random.rand()


@pytest.mark.parametrize("text", ["x", "-1", "1.5", "2e3"])
def test_a_bad_value_names_the_variable(monkeypatch, text) -> None:
    monkeypatch.setenv(SEED_VARIABLE, text)
    with pytest.raises(ValueError, match=SEED_VARIABLE):
        course_seed()
    with pytest.raises(ValueError, match=SEED_VARIABLE):
        GPT(CONFIG)
