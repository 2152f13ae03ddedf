"""Tests of helpers.lstm: the corrected LSTM language model and the generic training loop."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from helpers import lstm
from helpers.model import GPT, GPTConfig
from helpers.train import default_warmup, lr_schedule, train

torch.set_num_threads(1)

VOCAB = 11


def _ids(n: int, seed: int = 0) -> np.ndarray:
    """A learnable token stream: a repeating pattern with 10 % random tokens mixed in."""
    rng = np.random.default_rng(seed)
    ids = np.tile(np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0]), n // 11 + 1)[:n]
    noise = rng.random(n) < 0.1
    ids[noise] = rng.integers(0, VOCAB, noise.sum())
    return ids.astype(np.uint16)


def test_forward_shapes_and_initial_loss():
    cfg = lstm.LSTMConfig(vocab_size=VOCAB, n_ctx=16, n_layer=2, d_model=12)
    model = lstm.LSTMLM(cfg, seed=0)
    idx = torch.randint(0, VOCAB, (3, 16))
    with torch.no_grad():
        logits, loss = model(idx, torch.roll(idx, -1, dims=1))
    assert logits.shape == (3, 16, VOCAB)
    assert model(idx)[1] is None
    # near-uniform predictions at initialisation: loss close to ln(vocab)
    assert abs(loss.item() - math.log(VOCAB)) < 0.5


def test_count_params_matches_modules_and_output_is_tied():
    for n_layer, d in [(1, 8), (2, 20), (3, 33)]:
        cfg = lstm.LSTMConfig(vocab_size=86, n_ctx=64, n_layer=n_layer, d_model=d)
        model = lstm.LSTMLM(cfg)
        total, non_emb = lstm.lstm_count_params(cfg)
        assert total == sum(p.numel() for p in model.parameters())  # tied: listed once
        assert non_emb == sum(p.numel() for p in model.lstm.parameters())
    assert model.lm_head.weight is model.wte.weight


def test_same_seed_same_network_and_global_rng_untouched():
    cfg = lstm.LSTMConfig(vocab_size=VOCAB, n_ctx=8, n_layer=1, d_model=6)
    state = torch.random.get_rng_state()
    a, b, c = lstm.LSTMLM(cfg, seed=3), lstm.LSTMLM(cfg, seed=3), lstm.LSTMLM(cfg, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.lstm.weight_hh_l0, c.lstm.weight_hh_l0)
    # PyTorch's default scales: embedding normal(0, 1), LSTM uniform(±1/sqrt(6))
    assert 0.5 < float(a.wte.weight.detach().std()) < 1.5
    assert float(a.lstm.weight_hh_l0.detach().abs().max()) <= 6**-0.5


def test_causal_future_tokens_do_not_change_earlier_logits():
    cfg = lstm.LSTMConfig(vocab_size=VOCAB, n_ctx=10, n_layer=2, d_model=8)
    model = lstm.LSTMLM(cfg).eval()
    idx = torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(0))
    changed = idx.clone()
    changed[:, 6] = (changed[:, 6] + 1) % VOCAB
    with torch.no_grad():
        a, b = model(idx)[0], model(changed)[0]
    assert torch.equal(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_batch_items_are_independent():
    """batch_first=True: changing one sequence leaves the others' logits alone."""
    model = lstm.LSTMLM(lstm.LSTMConfig(vocab_size=VOCAB, n_ctx=8, n_layer=1, d_model=8)).eval()
    idx = torch.randint(0, VOCAB, (3, 8), generator=torch.Generator().manual_seed(1))
    changed = idx.clone()
    changed[1] = (changed[1] + 1) % VOCAB
    with torch.no_grad():
        a, b = model(idx)[0], model(changed)[0]
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])


def test_post_003_form_fails_as_the_module_says():
    post = nn.Sequential(nn.Embedding(VOCAB, 8), nn.LSTM(8, 8, 1), nn.Linear(8, VOCAB))
    with pytest.raises(TypeError):
        post(torch.zeros(2, 5, dtype=torch.long))


def test_lstm_config_is_nearest_to_target():
    for target in [5e3, 4e4, 1.5e5]:
        cfg = lstm.lstm_config(target, vocab_size=86)
        n = lstm.lstm_count_params(cfg)[1]
        for d in (cfg.d_model - 1, cfg.d_model + 1):
            other = lstm.lstm_count_params(lstm.LSTMConfig(86, 64, 2, d))[1]
            assert abs(math.log(n / target)) <= abs(math.log(other / target))
        assert abs(n / target - 1) < 0.1
    assert lstm.lstm_config(1e4, n_layer=1).n_layer == 1


def test_train_lm_reproduces_the_lab_train_for_a_gpt():
    cfg = GPTConfig(vocab_size=VOCAB, n_ctx=16, n_layer=1, d_model=16, n_head=2)
    ids, val = _ids(4000), _ids(1000, seed=1)
    kw = dict(n_tokens=40 * 4 * 16, batch_size=4, lr=0.01, seed=2)
    ours = lstm.train_lm(GPT(cfg, seed=2), ids, val, **kw, eval_tokens=256)
    lab = train(cfg, ids, val, **kw, eval_tokens=256, progress=False)
    assert ours.n_steps == lab.n_steps == 40
    # one loop (helpers.train.train_model) runs both; 16 evaluation windows fit in one
    # forward pass either way, so even the validation losses agree bit for bit
    assert ours.curve == lab.curve
    assert ours.final_val_loss == lab.final_val_loss


def test_train_lm_learns_and_is_deterministic():
    cfg = lstm.LSTMConfig(vocab_size=VOCAB, n_ctx=16, n_layer=1, d_model=16)
    ids, val = _ids(4000), _ids(1000, seed=1)
    runs = [
        lstm.train_lm(lstm.LSTMLM(cfg, seed=0), ids, val, n_tokens=80 * 8 * 16, batch_size=8,
                      lr=0.02, eval_tokens=512)
        for _ in range(2)
    ]  # fmt: skip
    assert runs[0].final_val_loss == runs[1].final_val_loss
    assert runs[0].final_val_loss < 0.6 * math.log(VOCAB)  # the pattern is predictable
    assert len(runs[0].curve) == 8 and runs[0].curve[-1]["step"] == 80
    assert runs[0].n_tokens == 80 * 8 * 16 and runs[0].tokens_per_s > 0
    assert not runs[0].model.training


def test_schedule_tokens_cuts_a_longer_schedule_short():
    cfg = lstm.LSTMConfig(vocab_size=VOCAB, n_ctx=8, n_layer=1, d_model=8)
    ids = _ids(2000)
    fitted = lstm.train_lm(lstm.LSTMLM(cfg), ids, ids, n_tokens=40 * 64, batch_size=8, lr=0.01)
    cut = lstm.train_lm(
        lstm.LSTMLM(cfg),
        ids,
        ids,
        n_tokens=40 * 64,
        batch_size=8,
        lr=0.01,
        schedule_tokens=160 * 64,
    )
    assert fitted.schedule_steps == 40 and cut.schedule_steps == 160 and cut.n_steps == 40
    assert fitted.curve[-1]["lr"] == pytest.approx(0.001)  # decayed to 10 % of the peak
    assert cut.curve[-1]["lr"] == pytest.approx(lr_schedule(39, 160, 0.01, default_warmup(160)))
    assert cut.curve[-1]["lr"] > 0.009


def test_evaluate_lm_restores_mode():
    model = lstm.LSTMLM(lstm.LSTMConfig(vocab_size=VOCAB, n_ctx=8, n_layer=1, d_model=8))
    model.train()
    x = torch.randint(0, VOCAB, (5, 8))
    loss = lstm.evaluate_lm(model, x, torch.roll(x, -1, 1), chunk=2)
    assert model.training and math.isfinite(loss)


@pytest.mark.parametrize(
    "call, word",
    [
        (lambda: lstm.LSTMConfig(vocab_size=0), "vocab_size"),
        (lambda: lstm.LSTMConfig(d_model=2.5), "d_model"),
        (lambda: lstm.LSTMLM(GPTConfig()), "config"),
        (lambda: lstm.LSTMLM(lstm.LSTMConfig(), seed=-1), "seed"),
        (lambda: lstm.lstm_count_params(GPTConfig()), "config"),
        (lambda: lstm.lstm_config(-5), "n_params_target"),
        (lambda: lstm.lstm_config(1e4, n_layer=0), "n_layer"),
        (
            lambda: lstm.train_lm(nn.Linear(2, 2), _ids(500), _ids(500), n_tokens=64, lr=0.1),
            "model",
        ),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, word):
    with pytest.raises(ValueError, match=word):
        call()


def test_train_lm_rejects_bad_budgets_and_ids():
    model = lstm.LSTMLM(lstm.LSTMConfig(vocab_size=VOCAB, n_ctx=8, n_layer=1, d_model=4))
    ids = _ids(500)
    with pytest.raises(ValueError, match="schedule_tokens"):
        lstm.train_lm(model, ids, ids, n_tokens=640, lr=0.01, batch_size=8, schedule_tokens=64)
    with pytest.raises(ValueError, match="n_tokens"):
        lstm.train_lm(model, ids, ids, n_tokens=10, lr=0.01, batch_size=8)
    with pytest.raises(ValueError, match="lr"):
        lstm.train_lm(model, ids, ids, n_tokens=640, lr=0.0)
    with pytest.raises(ValueError, match="train_ids"):
        lstm.train_lm(model, ids + VOCAB, ids, n_tokens=640, lr=0.01)
    with pytest.raises(ValueError, match="val_ids"):
        lstm.train_lm(model, ids, ids[:5], n_tokens=640, lr=0.01)


def test_cache_returns_the_same_run_and_weights(tmp_path):
    cfg = lstm.LSTMConfig(vocab_size=VOCAB, n_ctx=8, n_layer=1, d_model=8)
    ids = _ids(2000)
    kw = dict(n_tokens=30 * 64, batch_size=8, lr=0.02, cache_dir=tmp_path)
    first = lstm.train_lm(lstm.LSTMLM(cfg, seed=1), ids, ids, **kw)
    again = lstm.train_lm(lstm.LSTMLM(cfg, seed=1), ids, ids, **kw)
    assert not first.cached and again.cached
    assert again.final_val_loss == first.final_val_loss and again.curve == first.curve
    for a, b in zip(first.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert again.model.lm_head.weight is again.model.wte.weight  # still tied after loading
    # anything that changes the run changes the key: here the seed of the weights
    other = lstm.train_lm(lstm.LSTMLM(cfg, seed=2), ids, ids, **kw)
    assert not other.cached and len(list(tmp_path.glob("*.safetensors"))) == 2
    # a damaged file is trained again
    for f in tmp_path.glob("*.safetensors"):
        f.write_bytes(b"garbage")
    assert not lstm.train_lm(lstm.LSTMLM(cfg, seed=1), ids, ids, **kw).cached
