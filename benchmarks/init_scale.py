"""The scale of the initial weights, measured: GPT-2's 0.02 against ``helpers.model.init_std``.

Every shape of ``helpers.sweep.laptop_design`` starts from the same random draws for each
seed, scaled two ways: GPT-2's constant standard deviation 0.02 (the lab's until code
version 2: the weights of ``GPT(config, seed)`` times 0.02 / init_std(d_model), which is
exactly that initialisation) and the lab's width-aware rule sqrt(2 / (5 · d_model)). Each
is trained for ``--steps`` steps (default 300) of the design's recipe: 16 × 64 characters
per step, the shape's default learning rate, 50 warm-up steps, then the constant rate of a
WSD run laid out for 4,000 steps; the seed also draws the batches, as in the lab. Per shape
and rule: the validation loss halfway and at the end, its mean, standard deviation and
worst over the seeds, and how many seeds are still within 0.1 nats of the character-pair
plateau (``helpers.data.bigram_loss``) at the end.

Results go to ``results/init_scale.json`` (atomically) with the command, the date and the
machine. On the course's 2-core machine: about 4 minutes for seeds 0-7.

Usage:  .venv/bin/python benchmarks/init_scale.py [--seeds 0-7] [--steps 300] [--workers K]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime
import functools
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from laptop_sweep import RESULTS, _seed_range, write_json

from helpers import data, sweep
from helpers._parallel import mp_context, usable_cores
from helpers.model import GPT, GPTConfig, init_std
from helpers.train import decay_start, default_lr, train_model

#: The two rules: GPT-2's constant and the lab's.
RULES = ("gpt2_0.02", "init_std")
#: The design's recipe: sequences per step, warm-up steps, and the WSD schedule's length.
BATCH, WARMUP, SCHEDULE_STEPS = sweep.LAPTOP_BATCH, 50, sweep.LAPTOP_STEPS[-1]
N_CTX = 64


@functools.cache  # once per worker process, not once per run
def _splits():
    corpus = data.load_corpus("shakespeare")
    tokenizer = data.char_tokenizer(corpus)
    return (*data.tokenized_splits(corpus, tokenizer), len(tokenizer))


def one_run(shape: tuple[int, int, int], rule: str, seed: int, steps: int) -> dict:
    """Train one shape from one seed's draws, scaled by ``rule``; return its two losses."""
    import torch

    torch.set_num_threads(1)
    train_ids, val_ids, vocab = _splits()
    n_layer, d_model, n_head = shape
    config = GPTConfig(
        vocab_size=vocab, n_ctx=N_CTX, n_layer=n_layer, d_model=d_model, n_head=n_head
    )
    model = GPT(config, seed=seed)
    if rule == "gpt2_0.02":
        with torch.no_grad():
            for name, p in model.named_parameters():
                if not name.endswith(".bias") and ".ln_" not in name:
                    p.mul_(0.02 / init_std(d_model))
    run = train_model(
        model, train_ids, val_ids, n_tokens=steps * BATCH * N_CTX, lr=default_lr(config),
        batch_size=BATCH, seed=seed, schedule="wsd", warmup_steps=WARMUP,
        schedule_tokens=SCHEDULE_STEPS * BATCH * N_CTX, eval_every=steps // 2, progress=False,
    )  # fmt: skip
    losses = [point["val_loss"] for point in run.curve]
    return {"d_model": d_model, "rule": rule, "seed": seed, "mid": losses[0], "end": losses[-1]}


def summarise(runs: list[dict], plateau: float) -> list[dict]:
    """Per shape and rule: mean, sd and worst end loss over seeds, and seeds near the plateau."""
    rows = []
    for d_model in sorted({r["d_model"] for r in runs}):
        for rule in RULES:
            std = 0.02 if rule == RULES[0] else init_std(d_model)
            end = np.array([r["end"] for r in runs if (r["d_model"], r["rule"]) == (d_model, rule)])
            mid = np.array([r["mid"] for r in runs if (r["d_model"], r["rule"]) == (d_model, rule)])
            rows.append(
                {
                    "d_model": d_model, "rule": rule, "std": std,
                    "n": len(end), "mid_mean": float(mid.mean()), "mid_sd": float(mid.std(ddof=1)),
                    "end_mean": float(end.mean()), "end_sd": float(end.std(ddof=1)),
                    "end_max": float(end.max()), "near_plateau": int((end > plateau - 0.1).sum()),
                }
            )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=_seed_range, default=_seed_range("0-7"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", default=str(RESULTS / "init_scale.json"))
    args = parser.parse_args()
    if not 2 <= args.steps < decay_start(SCHEDULE_STEPS):  # stop before the cool-down
        parser.error(f"--steps must be in [2, {decay_start(SCHEDULE_STEPS)})")
    train_ids, val_ids, vocab = _splits()
    plateau = data.bigram_loss(train_ids, val_ids, vocab)
    jobs = [(shape, rule, s) for shape in sweep.LAPTOP_SHAPES for rule in RULES for s in args.seeds]
    t0 = time.perf_counter()
    workers = args.workers or usable_cores()
    with cf.ProcessPoolExecutor(workers, mp_context=mp_context()) as pool:
        runs = list(pool.map(one_run, *zip(*jobs, strict=True), [args.steps] * len(jobs)))
    wall = time.perf_counter() - t0
    rows = summarise(runs, plateau)
    print(f"{'d_model':>7} {'rule':>10} {'std':>6}  mid mean  end mean   end sd  end max  near")
    for r in rows:
        print(
            f"{r['d_model']:>7} {r['rule']:>10} {r['std']:.4f}  {r['mid_mean']:8.3f}  "
            f"{r['end_mean']:8.3f}  {r['end_sd']:7.3f}  {r['end_max']:7.3f}  "
            f"{r['near_plateau']:>2}/{r['n']}"
        )
    payload = {
        "command": shlex.join(["python", *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cores": usable_cores(), "workers": workers},
        "steps": args.steps, "seeds": args.seeds, "plateau_loss": float(plateau),
        "wall_s": wall, "summary": rows, "runs": runs,
    }  # fmt: skip
    write_json(Path(args.out), payload)
    print(f"wall {wall:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
