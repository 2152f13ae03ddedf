"""Tests of helpers.apps: corpus subsets, the repeated-data and inference formulas, and
trained models kept as checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import helpers.apps as apps
from helpers import data, laws
from helpers.model import GPTConfig
from helpers.sweep import grid_design

SMALL = GPTConfig(vocab_size=32, n_ctx=16, n_layer=1, d_model=16, n_head=1)
B = 4  # 64 tokens per step


pytestmark = pytest.mark.usefixtures("one_thread")


def _models(specs, **kwargs):
    return apps.trained_models(specs, **({"progress": False} | kwargs))


def _specs(steps=(20, 30)):
    budgets = [s * B * SMALL.n_ctx for s in steps]
    return grid_design([SMALL], budgets, batch_size=B, eval_tokens=256, min_steps=1)


# ----------------------------------------------------------------------------- subsets


def test_subset_corpus_takes_spread_pieces(corpus) -> None:
    sub = apps.subset_corpus(corpus, 400, n_pieces=4)
    text = corpus.train_text
    assert len(sub.train_text) == 400
    assert sub.train_text[:100] == text[:100]  # first piece at the start
    assert sub.train_text[-100:] == text[-100:]  # last piece at the end
    middle = text.index(sub.train_text[100:200])
    assert 0 < middle < len(text) - 100  # a piece from inside, not a neighbour of the first
    assert middle > 100
    assert sub.val_text == corpus.val_text
    assert sub.fingerprint != corpus.fingerprint
    assert apps.subset_corpus(corpus, 400, n_pieces=4).fingerprint == sub.fingerprint


def test_subset_corpus_bad_input_names_the_argument(corpus) -> None:
    cases = [
        (lambda: apps.subset_corpus("tiny", 400), "corpus"),
        (lambda: apps.subset_corpus(corpus, 0), "n_chars"),
        (lambda: apps.subset_corpus(corpus, 401, n_pieces=4), "n_chars"),
        (lambda: apps.subset_corpus(corpus, 10**9), "n_chars"),
        (lambda: apps.subset_corpus(corpus, 400, n_pieces=0), "n_pieces"),
    ]
    for call, name in cases:
        with pytest.raises(ValueError, match=name):
            call()


# ----------------------------------------------------------------------------- formulas


def test_effective_tokens_is_muennighoffs_formula() -> None:
    r_star = laws.MUENNIGHOFF_R_D_STAR  # R_D* of Muennighoff et al. (2023), Eq. 5
    for unique in (1.0, 1e11):
        for epochs in (1, 1.5, 2, 4, 16, 40, 64):
            repeats = epochs - 1  # R_D: passes after the first
            want = unique + unique * r_star * (1 - math.exp(-repeats / r_star))
            assert apps.effective_tokens(unique, epochs) == pytest.approx(want, rel=1e-12)
    assert apps.effective_tokens(1e9, 1) == 1e9  # one pass is the data itself
    ceiling = apps.effective_tokens(1.0, 1e6)
    assert ceiling == pytest.approx(1 + r_star, rel=1e-12)  # never more than U·(1 + R_D*)
    assert apps.effective_tokens(1.0, 2, r_star=1.0) == pytest.approx(2 - math.exp(-1))
    worth = apps.effective_tokens(np.full(3, 1e6), [2, 3, 4])
    assert isinstance(worth, np.ndarray) and np.all(np.diff(np.diff(worth)) < 0)  # fading
    assert isinstance(apps.effective_tokens(1e6, 4), float)


def test_effective_tokens_bad_input_names_the_argument() -> None:
    cases = [
        ({"unique_tokens": 0}, "unique_tokens"),
        ({"unique_tokens": "1e9"}, "unique_tokens"),
        ({"epochs": 0.5}, "epochs"),
        ({"epochs": [2, np.inf]}, "epochs"),
        ({"epochs": "4"}, "epochs"),
        ({"r_star": -1}, "r_star"),
        ({"unique_tokens": [1, 2], "epochs": [2, 3, 4]}, "broadcast"),
    ]
    for kwargs, name in cases:
        with pytest.raises(ValueError, match=name):
            apps.effective_tokens(**({"unique_tokens": 1e9, "epochs": 4} | kwargs))


def test_tokens_for_loss_inverts_the_law() -> None:
    n = np.array([1e9, 1e10, 1e11])
    for params in (laws.PLANNING, laws.HOFFMANN_UNROUNDED):
        d = apps.tokens_for_loss(n, 2.2, params)
        assert laws.chinchilla_loss(n, d, params) == pytest.approx(2.2, rel=1e-12)
    n_opt, d_opt = laws.compute_optimal(1e23)
    loss = laws.chinchilla_loss(n_opt, d_opt)
    assert apps.tokens_for_loss(n_opt, loss) == pytest.approx(d_opt, rel=1e-9)
    with pytest.raises(ValueError, match="n_params must exceed"):
        apps.tokens_for_loss(1e6, 2.0)  # too small to reach 2.0 nats on any data
    with pytest.raises(ValueError, match="loss"):
        apps.tokens_for_loss(1e9, laws.PLANNING.E)
    with pytest.raises(ValueError, match="params"):
        apps.tokens_for_loss(1e9, 2.0, params=(1, 2, 3))


def test_inference_optimal_is_the_cheapest_model() -> None:
    n_opt, d_opt = laws.compute_optimal(1e24)
    loss = laws.chinchilla_loss(n_opt, d_opt)
    n0, d0 = apps.inference_optimal(loss, 0)  # training only: the compute-optimal model
    assert (n0, d0) == (pytest.approx(n_opt, rel=1e-4), pytest.approx(d_opt, rel=1e-4))
    sizes = [apps.inference_optimal(loss, d_inf)[0] for d_inf in (1e12, 1e13, 1e14)]
    assert n_opt > sizes[0] > sizes[1] > sizes[2]  # more serving, a smaller model
    n, d = apps.inference_optimal(loss, 1e13)
    assert laws.chinchilla_loss(n, d) == pytest.approx(loss, rel=1e-12)

    def lifetime(size):
        return 6 * size * apps.tokens_for_loss(size, loss) + 2 * size * 1e13

    assert lifetime(n) < min(lifetime(0.9 * n), lifetime(1.1 * n))
    with pytest.raises(ValueError, match="d_inference"):
        apps.inference_optimal(loss, -1)
    with pytest.raises(ValueError, match="loss"):
        apps.inference_optimal(1.0, 1e12)  # below the floor E


# ----------------------------------------------------------------------------- models


def test_models_are_trained_once_then_loaded(corpus, tmp_path, count_trainings) -> None:
    specs = _specs()
    first = _models(specs, corpus=corpus, workers=1, cache_dir=tmp_path)
    assert count_trainings["runs"] == 2
    assert [r.n_tokens for r in first] == [s.n_tokens for s in specs]
    assert all(r.final_val_loss < np.log(31) for r in first)  # they learned something
    assert first[0].final_val_loss != first[1].final_val_loss

    second = _models(specs + specs[:1], corpus=corpus, workers=1, cache_dir=tmp_path)
    assert count_trainings["runs"] == 2  # nothing trained
    losses = [r.final_val_loss for r in first]
    assert [r.final_val_loss for r in second] == [*losses, losses[0]]
    for a, b in zip(first, second[:2], strict=True):
        p, q = a.model.state_dict(), b.model.state_dict()
        assert all(torch.equal(p[k], q[k]) for k in p)
    x, y = data.eval_windows(data.tokenized_splits(corpus, data.char_tokenizer(corpus))[1], 16, 4)
    with torch.no_grad():
        assert torch.isfinite(second[0].model(x, y)[1])  # the loaded model runs


def test_one_corpus_per_spec(corpus, tmp_path, count_trainings) -> None:
    specs = _specs(steps=(20,)) * 2
    tok = data.char_tokenizer(corpus)
    small = apps.subset_corpus(corpus, 640, n_pieces=4)  # 10 epochs' worth of 20 steps
    runs = _models(specs, corpus=[corpus, small], tokenizer=tok, workers=1, cache_dir=tmp_path)
    assert count_trainings["runs"] == 2  # a different corpus is a different run
    assert runs[0].final_val_loss != runs[1].final_val_loss
    with pytest.raises(ValueError, match="one Corpus per spec"):
        _models(specs, corpus=[corpus], tokenizer=tok, cache_dir=tmp_path)


def test_damaged_checkpoint_is_trained_again(corpus, tmp_path, count_trainings) -> None:
    specs = _specs(steps=(20,))
    first = _models(specs, corpus=corpus, workers=1, cache_dir=tmp_path)
    (weights,) = tmp_path.glob("*/model.safetensors")
    weights.write_bytes(weights.read_bytes()[:100])  # cut off mid-write
    with pytest.warns(UserWarning, match="damaged model checkpoint"):
        again = _models(specs, corpus=corpus, workers=1, cache_dir=tmp_path)
    assert count_trainings["runs"] == 2
    assert again[0].final_val_loss == first[0].final_val_loss  # the same run, the same number


def test_workers_give_the_same_models(corpus, tmp_path) -> None:
    specs = _specs()
    alone = _models(specs, corpus=corpus, workers=1, cache_dir=tmp_path / "one")
    pooled = _models(specs, corpus=corpus, workers=2, cache_dir=tmp_path / "two")
    assert [r.final_val_loss for r in pooled] == [r.final_val_loss for r in alone]
    p, q = pooled[1].model.state_dict(), alone[1].model.state_dict()
    assert all(torch.equal(p[k], q[k]) for k in p)


def test_trained_models_bad_input_names_the_argument(corpus, tmp_path) -> None:
    specs = _specs(steps=(20,))
    too_small = grid_design([GPTConfig(vocab_size=8, n_ctx=16, n_layer=1, d_model=16, n_head=1)],
                            [20 * 64], batch_size=B, min_steps=1)  # fmt: skip
    cases = [
        ({"specs": []}, "specs"),
        ({"specs": ["run"]}, "specs"),
        ({"workers": 0}, "workers"),
        ({"corpus": 3}, "corpus"),
        ({"tokenizer": "bpe"}, "tokenizer"),
        ({"tokenizer": object()}, "tokenizer"),
        ({"cache_dir": 3}, "cache_dir"),
        ({"progress": "yes"}, "progress"),
        ({"specs": too_small}, "vocab_size"),
    ]
    for kwargs, name in cases:
        args = {"specs": specs, "corpus": corpus, "cache_dir": tmp_path, "workers": 1} | kwargs
        with pytest.raises(ValueError, match=name):
            _models(args.pop("specs"), **args)
