"""Tests of helpers.sweep: designs, the run cache, interrupts, damaged entries, workers."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import helpers.sweep as sweep
from helpers import data
from helpers.compute import flops_per_token
from helpers.model import GPTConfig, count_params
from helpers.sweep import (
    RunSpec,
    design_table,
    grid_design,
    isoflop_design,
    load_model,
    load_run,
    run_sweep,
)
from helpers.train import NonFiniteLossError, default_lr, default_warmup, train

SMALL = GPTConfig(vocab_size=32, n_ctx=16, n_layer=1, d_model=16, n_head=1)
WIDER = GPTConfig(vocab_size=32, n_ctx=16, n_layer=1, d_model=32, n_head=2)
B = 4  # 64 tokens per step


pytestmark = pytest.mark.usefixtures("one_thread")


def _specs(steps=(30, 40, 50), seeds=(0,)) -> list[RunSpec]:
    budgets = [s * B * SMALL.n_ctx for s in steps]
    return grid_design([SMALL], budgets, batch_size=B, seeds=seeds, eval_tokens=256, min_steps=1)


def _sweep(corpus, specs, folder, **kwargs):
    return run_sweep(specs, corpus=corpus, cache_dir=folder, workers=1, progress=False, **kwargs)


# ----------------------------------------------------------------------------- designs


def test_grid_design_and_table() -> None:
    budgets = [64 * 600 + 10, 64 * 1000]
    specs = grid_design([SMALL, WIDER], budgets, batch_size=B, seeds=[0, 1])
    assert len(specs) == 2 * 2 * 2
    assert {s.n_tokens for s in specs} == {64 * 600, 64 * 1000}  # whole steps
    assert {s.lr for s in specs if s.config == WIDER} == {default_lr(WIDER)}
    table = design_table(specs)
    assert len(table) == 8
    for col in ("N", "N_total", "D", "C", "C_6ND", "C_6ND_total", "steps", "D_per_N", "lr"):
        assert col in table.columns
    n_small = count_params(SMALL)[1]
    row = table.iloc[0]
    assert (row.N, row.D, row.steps) == (n_small, 64 * 600, 600)
    assert row.C_6ND == 6 * n_small * 64 * 600
    # C is each run's exact training FLOPs: the per-token count of its shape times D
    for spec, c in zip(specs, table.C, strict=True):
        assert c == flops_per_token(spec.config, mode="train") * spec.n_tokens == spec.flops
    assert (table.C > table.C_6ND).all()  # 6ND leaves out attention and the output layer
    assert np.all(table.est_s > 0)
    custom = grid_design([SMALL], [64 * 600], batch_size=B, lr=lambda c: 1 / c.d_model)
    assert custom[0].lr == 1 / 16


def test_too_few_steps_is_rejected_unless_allowed() -> None:
    budgets = [64 * 100, 64 * 600]  # 100 steps is below the default minimum of 500
    with pytest.raises(ValueError, match="min_steps"):
        grid_design([SMALL], budgets, batch_size=B)
    kept = grid_design([SMALL], budgets, batch_size=B, too_few_steps="drop")
    assert [s.n_steps for s in kept] == [600]
    allowed = grid_design([SMALL], budgets, batch_size=B, too_few_steps="allow")
    assert [s.n_steps for s in allowed] == [100, 600]
    assert len(grid_design([SMALL], budgets, batch_size=B, min_steps=100)) == 2
    with pytest.raises(ValueError, match="budgets"):
        grid_design([SMALL], [10], batch_size=B, too_few_steps="allow")  # not one step


def test_isoflop_design() -> None:
    n_small, n_wider = count_params(SMALL)[1], count_params(WIDER)[1]
    flops = [6 * n_wider * 64 * 2000.0]
    specs = isoflop_design([SMALL, WIDER], flops, batch_size=B, compute="6N")
    assert [s.config for s in specs] == [SMALL, WIDER]
    for s, n in zip(specs, (n_small, n_wider), strict=True):
        assert s.n_tokens == int(flops[0] / (6 * n)) // 64 * 64  # C / 6N, in whole steps
    total = isoflop_design([WIDER], flops, batch_size=B, compute="6N_total")
    assert total[0].n_tokens < specs[1].n_tokens  # N_total > N: fewer tokens
    exact = isoflop_design([SMALL, WIDER], flops, batch_size=B)  # the default: exact FLOPs
    for s in exact:
        per_step = flops_per_token(s.config, mode="train") * 64
        assert flops[0] - per_step < s.flops <= flops[0]  # the budget, to within one step
    assert all(e.n_tokens < s.n_tokens for e, s in zip(exact, specs, strict=True))
    with pytest.raises(ValueError, match="min_steps"):  # the wide model gets 300 steps
        isoflop_design([SMALL, WIDER], [flops[0] * 0.15], batch_size=B)
    dropped = isoflop_design([SMALL, WIDER], [flops[0] * 0.15], batch_size=B, too_few_steps="drop")
    assert [s.config for s in dropped] == [SMALL]


def test_design_bad_input_names_the_argument() -> None:
    cases = [
        (lambda: grid_design([], [1e5]), "configs"),
        (lambda: grid_design(["big"], [1e5]), "configs"),
        (lambda: grid_design([SMALL], [-1.0]), "budgets"),
        (lambda: grid_design([SMALL], [1e5], batch_size=0), "batch_size"),
        (lambda: grid_design([SMALL], [1e5], seeds=-1), "seeds"),
        (lambda: grid_design([SMALL], [1e5], lr=0), "lr"),
        (lambda: grid_design([SMALL], [1e5], min_steps=0), "min_steps"),
        (lambda: grid_design([SMALL], [1e5], too_few_steps="maybe"), "too_few_steps"),
        (lambda: isoflop_design([SMALL], [float("nan")]), "flop_budgets"),
        (lambda: isoflop_design([SMALL], [1e12], compute="all"), "compute"),
        (lambda: design_table([]), "specs"),
        (lambda: RunSpec(SMALL, n_tokens=0), "n_tokens"),
    ]
    for call, name in cases:
        with pytest.raises(ValueError, match=name):
            call()


# ----------------------------------------------------------------------------- the cache


def test_second_sweep_trains_nothing(corpus, tmp_path, count_trainings) -> None:
    specs = _specs(seeds=(0, 1))
    first = _sweep(corpus, specs, tmp_path)
    assert count_trainings["runs"] == 6 and not first.cached.any()
    assert len(list(tmp_path.glob("*.json"))) == 6
    tail = ["loss", "tokens_per_s", "wall_s", "shared_steps", "cached", "key", "error"]
    assert list(first.columns[-7:]) == tail
    assert np.all(first.loss < math.log(31))  # they learned something
    assert first.loss.nunique() == 6

    second = _sweep(corpus, specs + specs[:1], tmp_path)  # a repeated spec is read, once
    assert count_trainings["runs"] == 6  # nothing trained
    assert second.cached.all() and len(second) == 7
    assert second.loss.tolist()[:6] == first.loss.tolist()
    assert second.loss.iloc[6] == first.loss.iloc[0]
    curve = load_run(first.key.iloc[0], tmp_path).curve
    assert curve[-1]["val_loss"] == first.loss.iloc[0]

    other = _sweep(corpus, _specs(steps=(30,), seeds=(2,)), tmp_path)  # a new seed: new key
    assert count_trainings["runs"] == 7 and not other.cached.any()


def test_damaged_entries_are_reported_and_rerun(corpus, tmp_path, count_trainings) -> None:
    specs = _specs()
    first = _sweep(corpus, specs, tmp_path)
    bad_json = tmp_path / f"{first.key.iloc[0]}.json"
    wrong_keys = tmp_path / f"{first.key.iloc[2]}.json"
    bad_json.write_text('{"format": 1, "key": ', encoding="utf-8")  # cut off mid-write
    wrong_keys.write_text(json.dumps({"key": first.key.iloc[2], "loss": 1.0}), encoding="utf-8")
    with pytest.warns(UserWarning) as caught:
        again = _sweep(corpus, specs, tmp_path)
    messages = " ".join(str(w.message) for w in caught)
    assert str(bad_json) in messages and str(wrong_keys) in messages
    assert again.cached.tolist() == [False, True, False]
    assert count_trainings["runs"] == 3 + 2
    assert again.loss.tolist() == first.loss.tolist()  # retrained: the same numbers
    json.loads(bad_json.read_text(encoding="utf-8"))  # repaired
    assert _sweep(corpus, specs, tmp_path).cached.all()


def test_diverged_run_is_reported_not_cached(corpus, tmp_path, monkeypatch) -> None:
    real = sweep.train

    def diverge_seed_1(*args, **kwargs):
        if kwargs["seed"] == 1:
            raise NonFiniteLossError("the training loss became nan at step 3 of 30")
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep, "train", diverge_seed_1)
    with pytest.warns(UserWarning, match="diverged"):
        df = _sweep(corpus, _specs(steps=(30,), seeds=(0, 1)), tmp_path)
    assert math.isfinite(df.loss.iloc[0]) and pd.isna(df.error.iloc[0])
    assert math.isnan(df.loss.iloc[1]) and "step 3" in df.error.iloc[1]
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_interrupted_sweep_keeps_finished_runs(corpus, tmp_path, count_trainings) -> None:
    specs = _specs(steps=(300, 250, 200, 150))  # about 0.5 s each
    job = tmp_path / "job.pkl"
    runs = tmp_path / "runs"
    job.write_bytes(pickle.dumps((specs, corpus, str(runs))))
    script = (
        "import pickle, sys, torch\n"
        "from helpers.sweep import run_sweep\n"
        "specs, corpus, folder = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "run_sweep(specs, corpus=corpus, cache_dir=folder, workers=1, progress=False)\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(job)], cwd=root, env=env)
    try:
        deadline = time.monotonic() + 60
        while not list(runs.glob("*.json")):  # wait for the first finished run ...
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
            assert time.monotonic() < deadline, "no run finished within 60 s"
            time.sleep(0.02)
    finally:
        proc.kill()  # ... and kill the sweep at once, mid-way through the next run
        proc.wait()
    finished = {p.stem for p in runs.glob("*.json")}
    assert 1 <= len(finished) < len(specs)

    df = _sweep(corpus, specs, runs)
    assert set(df.key[df.cached]) == finished  # nothing finished was lost
    assert count_trainings["runs"] == len(specs) - len(finished)  # only the rest trained
    assert df.loss.notna().all()


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting to be reaped counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_workers_stop_when_the_sweep_is_killed(corpus, tmp_path) -> None:
    job = tmp_path / "job.pkl"
    job.write_bytes(pickle.dumps((_specs(steps=(100_000, 90_000)), corpus, str(tmp_path))))
    script = (
        "import multiprocessing, pickle, sys, threading, time\n"
        "from helpers.sweep import run_sweep\n"
        "def report():\n"
        "    while len(multiprocessing.active_children()) < 2:\n"
        "        time.sleep(0.05)\n"
        "    print(*(p.pid for p in multiprocessing.active_children()), flush=True)\n"
        "if __name__ == '__main__':\n"
        "    specs, corpus, folder = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "    threading.Thread(target=report, daemon=True).start()\n"
        "    run_sweep(specs, corpus=corpus, cache_dir=folder, workers=2, progress=False)\n"
    )
    (tmp_path / "sweep_job.py").write_text(script, encoding="utf-8")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "sweep_job.py"), str(job)],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        workers = [int(pid) for pid in proc.stdout.readline().split()]
        assert len(workers) == 2, "the sweep did not start two workers"
        time.sleep(1.0)  # both are training (each run would take minutes)
        assert not any(_gone(pid) for pid in workers)
    finally:
        proc.kill()  # the sweep's process dies at once, as in a kernel restart
        proc.wait()
    deadline = time.monotonic() + 15
    while not all(_gone(pid) for pid in workers):
        assert time.monotonic() < deadline, "workers still running 15 s after the sweep died"
        time.sleep(0.1)


def test_workers_give_the_same_numbers(corpus, tmp_path) -> None:
    specs = _specs(steps=(30, 40)) + _wsd_specs(steps=(20, 40))
    alone = _sweep(corpus, specs, tmp_path / "one")
    pooled = run_sweep(specs, corpus=corpus, cache_dir=tmp_path / "two", workers=2, progress=False)
    assert not pooled.cached.any()
    assert pooled.loss.tolist() == alone.loss.tolist()  # single-threaded anywhere: bit for bit
    assert len(list((tmp_path / "two").glob("*.json"))) == 4


# ----------------------------------------------------------------------------- WSD families


def _wsd_specs(steps=(20, 40, 80), seeds=(0,)) -> list[RunSpec]:
    budgets = [s * B * SMALL.n_ctx for s in steps]
    return grid_design(
        [SMALL], budgets, batch_size=B, seeds=seeds, eval_tokens=256, min_steps=1, schedule="wsd"
    )


def test_wsd_sweep_gives_each_budget_its_own_run_and_resumes(corpus, tmp_path) -> None:
    specs = _wsd_specs()
    assert {s.warmup for s in specs} == {default_warmup(20)}  # the shortest run's warm-up
    df = _sweep(corpus, specs, tmp_path)
    assert df.schedule.tolist() == ["wsd"] * 3
    tok = data.char_tokenizer(corpus)
    splits = data.tokenized_splits(corpus, tok)
    for spec, loss in zip(specs, df.loss, strict=True):
        alone = train(
            spec.config,
            *splits,
            n_tokens=spec.n_tokens,
            batch_size=B,
            lr=spec.lr,
            eval_tokens=256,
            schedule="wsd",
            warmup_steps=spec.warmup,
            progress=False,
        )
        assert alone.final_val_loss == loss  # a branch is the run it stands for, bit for bit
    shared = [load_run(k, tmp_path).shared_steps for k in df.key]
    assert shared == [16, 32, 0]
    # a lost entry, long or short, is trained again with the same number; the rest are read
    for lost in (2, 0):
        (tmp_path / f"{df.key.iloc[lost]}.json").unlink()
        again = _sweep(corpus, specs, tmp_path)
        assert again.cached.tolist() == [i != lost for i in range(3)]
        assert again.loss.tolist() == df.loss.tolist()
    # other seeds, and the same budgets with cosine, are other runs
    cosine = _specs(steps=(20, 40, 80))
    assert not {s for s in cosine} & set(specs)
    both = _sweep(corpus, specs + _wsd_specs(seeds=(1,)), tmp_path)
    assert both.cached.tolist() == [True] * 3 + [False] * 3


def test_wsd_family_diverging_reports_every_unfinished_run(corpus, tmp_path, monkeypatch) -> None:
    def diverge(*args, on_result, budgets, **kwargs):
        raise NonFiniteLossError("the training loss became nan at step 7 of 80")

    monkeypatch.setattr(sweep, "train_budgets", diverge)
    with pytest.warns(UserWarning, match="3 run"):
        df = _sweep(corpus, _wsd_specs(), tmp_path)
    assert df.loss.isna().all() and df.error.str.contains("step 7").all()
    assert not list(tmp_path.glob("*.json"))


def test_default_keys_are_those_of_entries_written_before_schedules_existed() -> None:
    import hashlib

    spec = _specs()[0]
    old = {k: v for k, v in spec.to_dict().items() if k not in ("schedule", "warmup", "beta2")}
    payload = {"code_version": sweep.CODE_VERSION, "corpus": "c", "tokenizer": "t", "spec": old}
    want = hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()
    assert sweep.run_key(spec, "c", "t") == want
    wsd = dataclasses.replace(spec, schedule="wsd")
    assert sweep.run_key(wsd, "c", "t") != want
    assert sweep.run_key(dataclasses.replace(spec, beta2=0.99), "c", "t") != want


# ----------------------------------------------------------------------------- kept models


def _logits(model, corpus):
    x, _ = data.eval_windows(data.tokenized_splits(corpus, data.char_tokenizer(corpus))[1], 16, 4)
    with torch.no_grad():
        return model.eval()(x)[0]


def test_kept_models_round_trip_and_are_not_trained_twice(
    corpus, tmp_path, count_trainings
) -> None:
    specs = _specs(steps=(30, 40))
    first = _sweep(corpus, specs, tmp_path, keep_models=True)
    assert count_trainings["runs"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*first.key, *(f"{k}.json" for k in first.key)]
    )
    s = specs[1]
    ids = data.tokenized_splits(corpus, data.char_tokenizer(corpus))
    direct = train(
        s.config,
        *ids,
        n_tokens=s.n_tokens,
        batch_size=s.batch_size,
        lr=s.lr,
        seed=s.seed,
        eval_tokens=s.eval_tokens,
        progress=False,
    )
    model = load_model(first.key.iloc[1], tmp_path)
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied after loading
    assert torch.equal(_logits(model, corpus), _logits(direct.model, corpus))
    assert direct.final_val_loss == first.loss.iloc[1]

    second = _sweep(corpus, specs, tmp_path, keep_models=True)
    assert count_trainings["runs"] == 2  # nothing more trained
    assert second.cached.all() and second.loss.tolist() == first.loss.tolist()
    assert second.key.tolist() == first.key.tolist()
    plain = _sweep(corpus, specs, tmp_path)  # weights kept or not: the same key
    assert plain.cached.all() and plain.key.tolist() == first.key.tolist()


def test_weights_are_trained_for_runs_cached_without_them(
    corpus, tmp_path, count_trainings
) -> None:
    specs = _specs(steps=(30,))
    first = _sweep(corpus, specs, tmp_path)
    entry = tmp_path / f"{first.key.iloc[0]}.json"
    before = entry.read_bytes()
    with pytest.raises(ValueError, match="key"):
        load_model(first.key.iloc[0], tmp_path)  # no weights kept yet
    again = _sweep(corpus, specs, tmp_path, keep_models=True)
    assert count_trainings["runs"] == 2 and not again.cached.any()
    assert again.loss.tolist() == first.loss.tolist()
    assert entry.read_bytes() == before  # the existing entry is left as it was
    assert torch.isfinite(_logits(load_model(first.key.iloc[0], tmp_path), corpus)).all()
    assert _sweep(corpus, specs, tmp_path, keep_models=True).cached.all()
    assert count_trainings["runs"] == 2


def test_damaged_weights_are_reported_and_trained_again(corpus, tmp_path, count_trainings) -> None:
    specs = _specs(steps=(30,))
    first = _sweep(corpus, specs, tmp_path, keep_models=True)
    key = first.key.iloc[0]
    good = _logits(load_model(key, tmp_path), corpus)
    weights = tmp_path / key / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # cut off mid-write
    with pytest.raises(ValueError, match="key"):
        load_model(key, tmp_path)
    with pytest.warns(UserWarning, match="damaged model checkpoint"):
        again = _sweep(corpus, specs, tmp_path, keep_models=True)
    assert count_trainings["runs"] == 2 and not again.cached.any()
    assert again.loss.tolist() == first.loss.tolist()
    assert torch.equal(_logits(load_model(key, tmp_path), corpus), good)


def test_one_corpus_per_spec(corpus, tmp_path, count_trainings) -> None:
    specs = _specs(steps=(30,)) * 2
    half = dataclasses.replace(corpus, name="half", train_text=corpus.train_text[:5000])
    tok = data.char_tokenizer(corpus)
    df = _sweep(corpus=[corpus, half], specs=specs, folder=tmp_path, tokenizer=tok)
    assert count_trainings["runs"] == 2 and df.key.nunique() == 2
    assert df.loss.iloc[0] != df.loss.iloc[1]
    alone = _sweep(corpus, specs[:1], tmp_path, tokenizer=tok)  # the same key as on its own
    assert alone.cached.all() and alone.key.iloc[0] == df.key.iloc[0]
    with pytest.raises(ValueError, match="one Corpus per spec"):
        _sweep([corpus], specs, tmp_path)


def test_sweep_bad_input_names_the_argument(corpus, tmp_path) -> None:
    specs = _specs(steps=(30,))
    too_small = [RunSpec(GPTConfig(vocab_size=20, n_ctx=16, n_layer=1, d_model=16, n_head=1), 640)]
    cases = [
        ({"specs": []}, "specs"),
        ({"specs": ["run"]}, "specs"),
        ({"workers": 0}, "workers"),
        ({"tokenizer": "bytes"}, "tokenizer"),
        ({"tokenizer": 3.5}, "tokenizer"),
        ({"corpus": 3}, "corpus"),
        ({"cache_dir": 5}, "cache_dir"),
        ({"progress": 1}, "progress"),
        ({"keep_models": "yes"}, "keep_models"),
        ({"corpus": [corpus, 3]}, "corpus"),
        ({"specs": too_small}, "vocab_size"),
    ]
    for kwargs, name in cases:
        args = {"specs": specs, "corpus": corpus, "cache_dir": tmp_path, "workers": 1}
        with pytest.raises(ValueError, match=name):
            run_sweep(**{**args, **kwargs})
    with pytest.raises(ValueError, match="key"):
        load_run("0" * 64, tmp_path)


def test_laptop_design_meets_the_lab_targets():
    specs = sweep.laptop_design()
    table = sweep.design_table(specs)
    assert table.N.nunique() >= 6 and table.D.nunique() >= 3
    assert table.N.max() / table.N.min() >= 30
    assert table.steps.min() >= 1000
    # widths grow with N; depth never falls
    shapes = table.sort_values("N")[["n_layer", "d_model"]].drop_duplicates().values
    assert (np.diff(shapes[:, 0]) >= 0).all() and (np.diff(shapes[:, 1]) > 0).all()
    # WSD: each size is one family (one warm-up), costing 4 + 0.2 + 0.4 of 7 units
    assert (
        set(table.schedule) == {"wsd"}
        and len(sweep._families({str(i): (s, "c") for i, s in enumerate(specs)})) == 6
    )
    assert {s.warmup for s in specs} == {50}
    cool = sum(s.n_steps - sweep.decay_start(s.n_steps) for s in specs if s.n_steps < 4000)
    trained = 6 * max(sweep.LAPTOP_STEPS) + cool
    assert trained / table.steps.sum() == pytest.approx(4.6 / 7)
    cosine = sweep.laptop_design(schedule="cosine")
    assert [dataclasses.replace(s, schedule="wsd", warmup=50) for s in cosine] == specs


def test_holdout_is_decided_from_compute_alone():
    table = sweep.design_table(sweep.laptop_design())
    held = sweep.holdout(table)
    assert held.dtype == bool and held.index.equals(table.index)
    assert (table.C[held] > 0.25 * table.C.max()).all()
    assert (table.C[~held] <= 0.25 * table.C.max()).all()
    assert 0 < held.sum() < len(table) / 2
    assert sweep.holdout(table, compute_fraction=0.999).sum() == 1


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"compute_fraction": 0}, "compute_fraction"),
        ({"compute_fraction": 1.5}, "compute_fraction"),
    ],
)
def test_holdout_rejects_bad_fractions(kwargs, needle):
    table = sweep.design_table(sweep.laptop_design())
    with pytest.raises(ValueError, match=needle):
        sweep.holdout(table, **kwargs)


def test_holdout_needs_a_compute_column():
    with pytest.raises(ValueError, match="'C' column"):
        sweep.holdout(pd.DataFrame({"N": [1.0]}))
