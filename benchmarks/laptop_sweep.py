"""The laptop sweep, measured: wall time, fit quality, and pre-registered predictions.

Runs ``helpers.sweep.laptop_design()`` (the design the practice chapter trains) on every
core with a fresh run cache (or ``--cache DIR`` to reuse one), then prints:

- wall time of the sweep and of the Chinchilla fit (targets: ≤ 5 min and ≤ 20 s);
- any run whose loss is still within 0.1 nats of a character-pair table's (the early plateau
  of training: a run too short for its model, as seed 1 shows for the 25 k model);
- R² of the Chinchilla fit in log-loss on all runs (target ≥ 0.98);
- predictivity, with the held-out runs chosen by ``helpers.sweep.holdout`` from the design
  alone, before anything is fitted: the Chinchilla surface fitted on the other runs, and
  L(N) at each token budget fitted on the smaller models; median relative error of
  predicted vs measured loss (goal ≤ 2 %).

Usage:  .venv/bin/python benchmarks/laptop_sweep.py [--cache DIR] [--workers K] [--seed S]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from helpers import data, fit, sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", help="run cache folder to (re)use; default: a fresh one")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")
    args = parser.parse_args()

    specs = sweep.laptop_design(seed=args.seed)
    table = sweep.design_table(specs)
    held = sweep.holdout(table)
    budgets = sorted(int(d) for d in table.D.unique())
    print(
        f"design: {len(specs)} runs, {table.N.nunique()} sizes "
        f"({table.N.min():,}–{table.N.max():,} non-embedding, "
        f"{table.N.max() / table.N.min():.0f}x), budgets {budgets} tokens, "
        f"min steps {table.steps.min()}; held out before fitting: {int(held.sum())} runs"
    )

    cache = args.cache or tempfile.mkdtemp(prefix="laptop-sweep-")
    t0 = time.perf_counter()
    runs = sweep.run_sweep(specs, cache_dir=cache, workers=args.workers, progress=True)
    wall = time.perf_counter() - t0
    print(f"sweep wall time: {wall:.0f} s ({runs.cached.sum()} of {len(runs)} runs cached)")

    corpus = data.load_corpus("shakespeare")
    tokenizer = data.char_tokenizer(corpus)
    plateau = data.bigram_loss(*data.tokenized_splits(corpus, tokenizer), len(tokenizer))
    stuck = runs[runs.loss >= plateau - 0.1]
    print(
        f"runs still near the plateau (character-pair table {plateau:.3f} nats/char, within "
        f"0.1): {len(stuck)}"
        + "".join(f"\n  N = {r.N:,}, D = {r.D:,}: {r.loss:.4f}" for r in stuck.itertuples())
    )

    t0 = time.perf_counter()
    full = fit.fit_chinchilla(runs.N_total, runs.D, runs.loss)
    fit_s = time.perf_counter() - t0
    print(
        f"Chinchilla fit on all runs: R² {full.r2:.4f} in log-loss, {fit_s:.2f} s; "
        f"E {full.E:.3f} A {full.A:.3g} B {full.B:.3g} α {full.alpha:.3f} β {full.beta:.3f} "
        f"→ a {full.a:.3f}"
    )

    train, test = runs[~held.values], runs[held.values]
    surface = fit.fit_chinchilla(train.N_total, train.D, train.loss)
    err = surface.predict(test.N_total, test.D) / test.loss.values - 1
    print(
        f"surface fitted on {len(train)} runs, predicting {len(test)} held-out runs: "
        f"median relative error {np.median(err):+.2%} (median |err| "
        f"{np.median(np.abs(err)):.2%}, range {err.min():+.2%} … {err.max():+.2%})"
    )

    largest = runs.N.max()
    errs = []
    for d, group in runs.groupby("D"):
        small, big = group[group.N < largest], group[group.N == largest]
        law = fit.fit_power_law(small.N, small.loss, offset=True)
        e = float(law.predict(big.N.values)[0] / big.loss.values[0] - 1)
        errs.append(e)
        print(
            f"  L(N) at D = {d:,}: predicted {law.predict(big.N.values)[0]:.4f}, "
            f"measured {big.loss.values[0]:.4f} ({e:+.2%})"
        )
    print(f"L(N) at fixed D, largest model held out: median relative error {np.median(errs):+.2%}")


if __name__ == "__main__":
    main()
