"""Tests of helpers.train: the schedule, the loop on any model, determinism, NaN detection,
results and checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from helpers import data
from helpers.lstm import LSTMLM, LSTMConfig
from helpers.model import GPT, GPTConfig, count_params
from helpers.train import (
    LoopResult,
    NonFiniteLossError,
    TrainResult,
    decay_start,
    default_lr,
    default_warmup,
    eval_slice,
    load_checkpoint,
    lr_schedule,
    train,
    train_budgets,
    train_model,
)

CONFIG = GPTConfig(vocab_size=40, n_ctx=16, n_layer=1, d_model=16, n_head=1)
B = 4  # sequences per step: 64 tokens per step


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ids() -> tuple[np.ndarray, np.ndarray]:
    """A small learnable token stream: a noisy repeating pattern over 40 ids."""
    rng = np.random.default_rng(0)
    base = np.tile(np.arange(40), 600)
    noise = rng.integers(0, 40, base.size)
    stream = np.where(rng.random(base.size) < 0.2, noise, base).astype(np.uint16)
    return stream[:20_000], stream[20_000:]


def _run(ids, **kwargs) -> TrainResult:
    args = dict(n_tokens=64 * 60, batch_size=B, eval_tokens=512, progress=False)
    return train(CONFIG, *ids, **{**args, **kwargs})


# ----------------------------------------------------------------------------- the recipe


def test_default_lr_and_warmup() -> None:
    assert default_lr(CONFIG) == 0.03  # capped: 0.75/16 > 0.03
    wide = GPTConfig(vocab_size=40, n_ctx=16, n_layer=1, d_model=128, n_head=8)
    assert default_lr(wide) == pytest.approx(0.75 / 128)
    # max(5 %, min(50 steps, 20 %)) of the steps
    assert [default_warmup(n) for n in (1, 10, 100, 1000, 10_000)] == [1, 2, 20, 50, 500]
    with pytest.raises(ValueError, match="config"):
        default_lr("gpt")
    with pytest.raises(ValueError, match="n_steps"):
        default_warmup(0)


def test_schedule_shape() -> None:
    n, w, peak = 200, 20, 0.01
    lrs = np.array([lr_schedule(s, n, peak, w) for s in range(n)])
    assert lrs[w - 1] == pytest.approx(peak)  # warm-up ends at the peak
    assert lrs.max() == pytest.approx(peak)
    assert np.all(np.diff(lrs[:w]) > 0)  # linear rise
    assert np.diff(lrs[:w]) == pytest.approx(np.full(w - 1, peak / w))
    assert np.all(np.diff(lrs[w - 1 :]) < 0)  # then a strictly falling cosine
    assert lrs[-1] == pytest.approx(0.1 * peak)  # ends at 10 % of the peak
    mid = w - 1 + (n - w) // 2  # half way through the decay: half way down
    assert lrs[mid] == pytest.approx(0.55 * peak, rel=1e-3)
    for bad in ({"step": n}, {"step": -1}, {"warmup_steps": n + 1}, {"peak_lr": 0}):
        args = {"step": 0, "n_steps": n, "peak_lr": peak, "warmup_steps": w, **bad}
        with pytest.raises(ValueError, match=next(iter(bad))):
            lr_schedule(**args)


def test_run_follows_the_schedule(ids) -> None:
    r = _run(ids, eval_every=1, n_tokens=64 * 30)
    lrs = [p["lr"] for p in r.curve]
    assert len(lrs) == r.n_steps == 30
    assert r.warmup_steps == default_warmup(30) == 6
    assert lrs == [lr_schedule(s, 30, r.lr, 6) for s in range(30)]
    assert lrs[5] == r.lr == 0.03 and lrs[-1] == pytest.approx(0.003)


# ----------------------------------------------------------------------------- training


def test_same_seed_same_losses_bit_for_bit(ids) -> None:
    a, b = _run(ids, seed=3), _run(ids, seed=3)
    assert [p["train_loss"] for p in a.curve] == [p["train_loss"] for p in b.curve]
    assert [p["val_loss"] for p in a.curve] == [p["val_loss"] for p in b.curve]
    assert a.final_val_loss == b.final_val_loss
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    c = _run(ids, seed=4)
    assert c.final_val_loss != a.final_val_loss


def test_result_fields_and_json(ids) -> None:
    r = _run(ids, n_tokens=float(64 * 60 + 50))  # 50 tokens short of a 61st step: dropped
    total, non_emb = count_params(CONFIG)
    assert (r.n_steps, r.n_tokens) == (60, 60 * 64)
    assert (r.n_params, r.n_params_total) == (non_emb, total)
    assert r.flops == 6 * non_emb * r.n_tokens and r.flops_total == 6 * total * r.n_tokens
    assert r.eval_tokens == 512 and r.seed == 0 and r.device == "cpu"
    assert [p["step"] for p in r.curve] == [8, 16, 24, 32, 40, 48, 56, 60]  # 8 evals
    assert [p["tokens"] for p in r.curve] == [64 * p["step"] for p in r.curve]
    assert r.final_val_loss == r.curve[-1]["val_loss"]
    assert r.curve[-1]["val_loss"] < r.curve[0]["val_loss"] < math.log(40) + 0.2  # it learns
    assert r.tokens_per_s > 0 and r.wall_s > r.eval_s > 0
    d = json.loads(r.to_json())
    assert "model" not in d and d["config"]["d_model"] == 16
    back = TrainResult.from_dict(d)
    assert back == r and back.model is None
    with pytest.raises(ValueError, match="missing"):
        TrainResult.from_dict({k: v for k, v in d.items() if k != "curve"})


def test_eval_slice_is_fixed_and_spread() -> None:
    val = np.arange(1000, dtype=np.uint16) % 40
    x, y = eval_slice(val, 16, 160)
    assert x.shape == (10, 16)
    x2, _ = eval_slice(val, 16, 160)
    assert torch.equal(x, x2)
    assert torch.equal(y[:, :-1], x[:, 1:])
    all_x, _ = eval_slice(val, 16, None)
    assert all_x.shape == (62, 16)  # (1000 - 1) // 16 whole windows
    assert torch.equal(x[0], all_x[0]) and torch.equal(x[-1], all_x[-1])  # both ends covered


def test_nan_loss_names_the_step(ids, monkeypatch) -> None:
    with pytest.raises(NonFiniteLossError, match=r"at step \d+ of 60"):
        _run(ids, lr=1e6)  # far too large: the loss blows up within a few steps

    forward = GPT.forward
    calls = {"train": 0}

    def poisoned(self, idx, targets=None):
        logits, loss = forward(self, idx, targets)
        if torch.is_grad_enabled():
            calls["train"] += 1
            if calls["train"] == 8:  # the 8th training step is step 7
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(GPT, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match="at step 7 of 60"):
        _run(ids)


def test_checkpoint_round_trip(ids, tmp_path) -> None:
    r = _run(ids, checkpoint_dir=tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    back = load_checkpoint(tmp_path / "ckpt")
    assert back == r
    x = torch.from_numpy(ids[1][:32].astype(np.int64)).view(2, 16)
    with torch.no_grad():
        assert torch.equal(back.model(x)[0], r.model(x)[0])
    assert back.model.lm_head.weight is back.model.transformer.wte.weight  # still tied
    with pytest.raises(ValueError, match="checkpoint_dir"):
        load_checkpoint(tmp_path / "nothing")


def test_bad_input_names_the_argument(ids) -> None:
    cases = [
        ({"n_tokens": 63}, "n_tokens"),  # less than one step of 4 × 16 tokens
        ({"n_tokens": 0}, "n_tokens"),
        ({"n_tokens": 1000.5}, "n_tokens"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -2}, "batch_size"),
        ({"device": "tpu"}, "device"),
        ({"lr": -0.1}, "lr"),
        ({"seed": -1}, "seed"),
        ({"eval_every": 0}, "eval_every"),
        ({"eval_tokens": 8}, "eval_tokens"),  # less than one window
        ({"progress": "yes"}, "progress"),
    ]
    if not torch.cuda.is_available():
        cases.append(({"device": "cuda"}, "device"))
    for kwargs, name in cases:
        with pytest.raises(ValueError, match=name):
            _run(ids, **kwargs)
    with pytest.raises(ValueError, match="train_ids"):
        train(CONFIG, ids[0] + 40, ids[1], n_tokens=640, batch_size=B)  # ids >= vocab_size
    with pytest.raises(ValueError, match="val_ids"):
        train(CONFIG, ids[0], ids[1][:10], n_tokens=640, batch_size=B)  # shorter than n_ctx
    with pytest.raises(ValueError, match="config"):
        train("small", *ids, n_tokens=640, batch_size=B)


# ----------------------------------------------------------------------------- the loop


def _loop(model, ids, **kwargs) -> LoopResult:
    args = dict(n_tokens=64 * 40, lr=0.02, batch_size=B, eval_tokens=512, progress=False)
    return train_model(model, *ids, **{**args, **kwargs})


def test_train_is_train_model_on_a_fresh_gpt(ids) -> None:
    r = _run(ids, seed=3)
    model = GPT(CONFIG, seed=3)
    loop = _loop(model, ids, n_tokens=64 * 60, lr=default_lr(CONFIG), seed=3)
    assert loop.curve == r.curve  # step, tokens, lr, train and validation loss: bit for bit
    assert (loop.n_steps, loop.n_tokens, loop.warmup_steps) == (r.n_steps, r.n_tokens, 12)
    assert loop.schedule_steps == loop.n_steps and loop.final_val_loss == r.final_val_loss
    for a, b in zip(model.parameters(), r.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_train_model_trains_an_lstm_in_place(ids) -> None:
    cfg = LSTMConfig(vocab_size=40, n_ctx=16, n_layer=1, d_model=12)
    model = LSTMLM(cfg, seed=0)
    before = model.lstm.weight_hh_l0.detach().clone()
    r = _loop(model, ids)
    assert not torch.equal(model.lstm.weight_hh_l0, before) and not model.training
    assert (r.n_steps, r.n_tokens, r.batch_size, r.seed, r.device) == (40, 40 * 64, B, 0, "cpu")
    assert [p["step"] for p in r.curve] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert r.final_val_loss < r.curve[0]["val_loss"] < math.log(40)  # it learns
    again = _loop(LSTMLM(cfg, seed=0), ids)
    assert again.curve == r.curve  # same model, same seed: same losses


def test_schedule_tokens_ends_at_a_higher_lr(ids) -> None:
    cfg = LSTMConfig(vocab_size=40, n_ctx=16, n_layer=1, d_model=8)
    fitted = _loop(LSTMLM(cfg), ids, eval_every=1)
    cut = _loop(LSTMLM(cfg), ids, eval_every=1, schedule_tokens=4 * 64 * 40)
    assert (fitted.schedule_steps, cut.schedule_steps, cut.n_steps) == (40, 160, 40)
    assert cut.warmup_steps == default_warmup(160) == 32
    assert fitted.curve[-1]["lr"] == pytest.approx(0.1 * 0.02)  # fully decayed
    assert [p["lr"] for p in cut.curve] == [lr_schedule(s, 160, 0.02, 32) for s in range(40)]
    assert cut.curve[-1]["lr"] > 0.95 * 0.02 > fitted.curve[-1]["lr"]
    # a schedule of the run's own length changes nothing
    same = _loop(LSTMLM(cfg), ids, eval_every=1, schedule_tokens=64 * 40 + 63)
    assert same.curve == fitted.curve


def test_eval_batch_changes_only_the_chunking(ids) -> None:
    cfg = LSTMConfig(vocab_size=40, n_ctx=16, n_layer=1, d_model=8)
    a, b = LSTMLM(cfg), LSTMLM(cfg)
    ra, rb = _loop(a, ids), _loop(b, ids, eval_batch=3)
    assert [p["train_loss"] for p in ra.curve] == [p["train_loss"] for p in rb.curve]
    assert torch.equal(a.wte.weight, b.wte.weight)
    got, want = [p["val_loss"] for p in rb.curve], [p["val_loss"] for p in ra.curve]
    assert got == pytest.approx(want, rel=1e-5)


def test_train_model_bad_input_names_the_argument(ids) -> None:
    lstm = LSTMLM(LSTMConfig(vocab_size=40, n_ctx=16, n_layer=1, d_model=4))
    cases = [
        ({"model": torch.nn.Linear(2, 2)}, "model"),
        ({"model": "gpt"}, "model"),
        ({"schedule_tokens": 64 * 39}, "schedule_tokens"),  # shorter than the run
        ({"schedule_tokens": 0}, "schedule_tokens"),
        ({"lr": None}, "lr"),  # no width rule for an arbitrary model
        ({"eval_batch": 0}, "eval_batch"),
        ({"desc": 3}, "desc"),
        ({"seed": 1.5}, "seed"),
        ({"n_tokens": 10}, "n_tokens"),
    ]
    for kwargs, name in cases:
        args = {"model": lstm, **kwargs}
        with pytest.raises(ValueError, match=name):
            _loop(args.pop("model"), ids, **args)
    with pytest.raises(ValueError, match="train_ids"):
        train_model(lstm, ids[0] + 40, ids[1], n_tokens=640, lr=0.01, batch_size=B)


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def shakespeare() -> tuple[np.ndarray, np.ndarray]:
    try:
        corpus = data.load_corpus("shakespeare")
    except data.CorpusUnavailableError as err:
        pytest.skip(f"real corpus unavailable (no cache, no network): {err}")
    return data.tokenized_splits(corpus, data.char_tokenizer(corpus))


def test_learns_shakespeare(shakespeare) -> None:
    config = GPTConfig(vocab_size=86, n_ctx=32, n_layer=2, d_model=32, n_head=2)
    r = train(config, *shakespeare, n_tokens=32 * 8 * 150, batch_size=8, progress=False)
    # 150 steps take a character model from ln(86) ≈ 4.45 nats to well under 3.
    assert r.final_val_loss < 3.0
    assert r.eval_tokens == 16_384


# ----------------------------------------------------------------------------- WSD budgets


def test_wsd_schedule_is_flat_then_cools_down() -> None:
    n, warm, peak = 100, 10, 0.02
    lrs = [lr_schedule(s, n, peak, warm, schedule="wsd") for s in range(n)]
    start = decay_start(n)
    assert start == 80  # the last 20 % cool down
    assert lrs[warm - 1 : start + 1] == [peak] * (start - warm + 2)  # flat until the cool-down
    cool = np.array(lrs[start:])
    assert np.all(np.diff(cool) < 0) and cool[-1] > 0
    assert cool[5] == pytest.approx(peak * (1 - math.sqrt(5 / 20)))  # the 1 - sqrt shape
    # the same steps whatever the budget, until a budget's cool-down starts
    longer = [lr_schedule(s, 4 * n, peak, warm, schedule="wsd") for s in range(start)]
    assert longer == lrs[:start]
    with pytest.raises(ValueError, match="schedule"):
        lr_schedule(0, n, peak, warm, schedule="linear")
    with pytest.raises(ValueError, match="warmup_steps"):
        lr_schedule(0, n, peak, 90, schedule="wsd")


def test_train_budgets_equals_separate_wsd_runs_bit_for_bit(ids) -> None:
    budgets = [64 * 20, 64 * 80, 64 * 40]  # 20, 80 and 40 steps, in any order
    args = dict(batch_size=B, eval_tokens=512, progress=False, seed=3)
    seen = []
    runs = train_budgets(
        CONFIG, *ids, budgets=budgets, on_result=lambda i, r: seen.append(i), **args
    )
    assert seen == [0, 2, 1]  # the shortest first, the long run last
    warmup = default_warmup(20)
    for budget, run in zip(budgets, runs, strict=True):
        alone = train(CONFIG, *ids, n_tokens=budget, schedule="wsd", warmup_steps=warmup, **args)
        assert run.curve == alone.curve  # every evaluation, training loss and learning rate
        assert run.final_val_loss == alone.final_val_loss
        for p, q in zip(run.model.parameters(), alone.model.parameters(), strict=True):
            assert torch.equal(p, q)
        assert run.schedule == "wsd" and run.warmup_steps == warmup
    assert [r.shared_steps for r in runs] == [decay_start(20), 0, decay_start(40)]
    # a WSD run differs from the cosine run of the same budget
    assert runs[0].final_val_loss != _run(ids, n_tokens=64 * 20, seed=3).final_val_loss


def test_train_budgets_bad_input_names_the_argument(ids) -> None:
    args = dict(batch_size=B, eval_tokens=512, progress=False)
    for budgets in ([], [64 * 20, 64 * 20 + 5], "100", [10]):
        with pytest.raises(ValueError, match="budgets"):
            train_budgets(CONFIG, *ids, budgets=budgets, **args)
    with pytest.raises(ValueError, match="warmup_steps"):
        train_budgets(CONFIG, *ids, budgets=[64 * 20, 64 * 40], warmup_steps=17, **args)
    with pytest.raises(ValueError, match="on_result"):
        train_budgets(CONFIG, *ids, budgets=[64 * 20], on_result=3, **args)


def test_beta2_reaches_adamw_and_the_branches(ids) -> None:
    args = dict(batch_size=B, eval_tokens=512, progress=False, seed=2, schedule="wsd")
    base = train(CONFIG, *ids, n_tokens=64 * 30, warmup_steps=5, **args)
    slow = train(CONFIG, *ids, n_tokens=64 * 30, warmup_steps=5, beta2=0.999, **args)
    assert base.beta2 == 0.95 and slow.beta2 == 0.999
    assert slow.final_val_loss != base.final_val_loss
    del args["schedule"]
    branch, _ = train_budgets(
        CONFIG, *ids, budgets=[64 * 30, 64 * 60], warmup_steps=5, beta2=0.999, **args
    )
    assert branch.curve == slow.curve and branch.beta2 == 0.999
    for bad in (1.0, -0.1, "0.9", float("nan")):
        with pytest.raises(ValueError, match="beta2"):
            train(CONFIG, *ids, n_tokens=64 * 4, beta2=bad, progress=False)


def test_old_results_without_the_new_fields_still_load(ids) -> None:
    data = _run(ids).to_dict()
    for name in ("schedule", "shared_steps", "beta2"):
        del data[name]
    back = TrainResult.from_dict(data)
    assert back.schedule == "cosine" and back.shared_steps == 0 and back.beta2 == 0.95
