"""The lab's recipe, measured: peak learning rate, warm-up and AdamW's β₂ on the laptop design.

Stage 1, the learning rate. Every shape of ``helpers.sweep.laptop_design`` is trained at
``RATE_FACTORS`` times the lab's rule (``helpers.train.default_lr``), for each seed. Each
(shape, rate, seed) is one WSD family with the design's shortest and longest budgets (1,000
and 4,000 steps of 16 × 64 characters; warm-up 50 steps, β₂ 0.95, as the design trains
them). Per shape and budget, the best rate is the vertex of a parabola in log(rate) through
the seed-mean final loss at the best grid rate and its two neighbours ("edge" if the best
grid rate is the first or last, which the grid then failed to bracket). A power law
lr_opt = k · N^(−α), N non-embedding, is fitted across shapes in log-log space
(``helpers.fit.fit_power_law``), per budget and for each seed alone, to show the spread;
and on the mean log-loss over both budgets (``D`` = 0 in the results): the one rate that a
WSD family, whose budgets share their peak rate, should use.

Stage 2, warm-up and β₂ (``--stage all``). At each shape's best grid rate of stage 1 (the
lowest seed-mean loss over both budgets), warm-ups of ``WARMUPS`` steps (β₂ 0.95) and β₂ of
``BETA2S`` (warm-up 50) are trained, for each seed. Each setting is reported as its loss
minus the baseline's (warm-up 50, β₂ 0.95, same shape, rate, budget and seed): the median
and range over shapes and seeds, per budget; and every run still within 0.1 nats of the
character-pair plateau (the early stall of training) is counted.

Every run goes through ``helpers.sweep.run_sweep`` and its cache (``--cache``; default the
course's, so the baseline runs that chapter 5 trains are shared), so an interrupted
benchmark resumes where it stopped. Results go to ``results/recipe.json`` (atomically) with
the command that made them, the date and the machine; each stage's wall time counts only
what this invocation trained (``cached`` runs were read), while ``train_s`` sums every run's
own training time, whenever it ran (a WSD branch counts the steps it shares). Measured on
the course's 2-core machine: about 75 minutes for both stages, seeds 0 and 1.

Usage:  .venv/bin/python benchmarks/recipe.py [--seeds 0 1] [--stage lr|all] [--cache DIR]
        [--workers K] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from laptop_sweep import RESULTS, _seed_range, write_json

from helpers import data, fit, sweep
from helpers._parallel import usable_cores
from helpers.train import BETAS, default_lr

#: Peak learning rates of stage 1, as multiples of the rule, spaced ×√2. A first run with
#: 0.5–2 found the optimum of the longest budget at 0.5 (the grid's edge) for 5 of the 6
#: shapes, so the grid goes down to a quarter of the rule.
RATE_FACTORS = (0.25, 0.5**1.5, 0.5, 0.5**0.5, 1.0, 2**0.5, 2.0)
#: Warm-ups of stage 2, in steps (the design's is 50).
WARMUPS = (12, 50, 200)
#: AdamW β₂ of stage 2 (the lab's is 0.95).
BETA2S = (0.95, 0.99, 0.999)
#: The baseline of stage 2: the design's warm-up.
BASE_WARMUP = 50


def shapes() -> list:
    """The laptop design's model shapes, smallest first."""
    return sorted({s.config for s in sweep.laptop_design(seed=0)}, key=lambda c: c.d_model)


def budgets() -> list[int]:
    """The design's shortest and longest budgets, in tokens."""
    tokens = sorted({s.n_tokens for s in sweep.laptop_design(seed=0)})
    return [tokens[0], tokens[-1]]


def family(config, lr: float, seed: int, warmup: int, beta2: float) -> list[sweep.RunSpec]:
    """One WSD family: the shortest and longest budgets of one setting."""
    base = dict(config=config, batch_size=sweep.LAPTOP_BATCH, lr=lr, seed=seed)
    base.update(schedule="wsd", warmup=warmup, beta2=beta2)
    return [sweep.RunSpec(n_tokens=n, **base) for n in budgets()]


def train(specs: list, args) -> tuple[object, float]:
    """Train (or read) ``specs``; return the sweep table and its wall time."""
    t0 = time.perf_counter()
    table = sweep.run_sweep(specs, cache_dir=args.cache, workers=args.workers, progress=False)
    wall = time.perf_counter() - t0
    print(f"  {len(table)} runs ({int(table.cached.sum())} cached) in {wall:.0f} s")
    if table.loss.isna().any():
        print(f"  diverged: {int(table.loss.isna().sum())} runs (loss NaN, kept as such)")
    return table, wall


def optimum(rates: np.ndarray, losses: np.ndarray) -> tuple[float, bool]:
    """The best rate: the vertex of a parabola in log(rate) through the best grid point and
    its neighbours; (best grid rate, True) if that point is at the grid's edge or the three
    points do not curve upward. NaN losses (diverged runs) count as the worst."""
    losses = np.where(np.isfinite(losses), losses, np.inf)
    i = int(np.argmin(losses))
    if i in (0, len(rates) - 1) or not np.isfinite(losses[i - 1 : i + 2]).all():
        return float(rates[i]), True
    x, y = np.log(rates[i - 1 : i + 2]), losses[i - 1 : i + 2]
    a, b, _ = np.polyfit(x, y, 2)
    if a <= 0:
        return float(rates[i]), True
    return float(np.exp(-b / (2 * a))), False


def lr_stage(table, seeds: list[int]) -> dict:
    """Best rate per shape and budget (seed mean and each seed), and the fitted laws."""
    rows, laws = [], {}
    configs = {c.d_model: c for c in shapes()}
    both = table.assign(D=0, loss=np.log(table.loss))  # D = 0: mean log-loss over the budgets
    for d_tokens in [*budgets(), 0]:
        at = table[table.D == d_tokens] if d_tokens else both
        for label, group in [("mean", at)] + [(s, at[at.seed == s]) for s in seeds]:
            opt_n, opt_lr = [], []
            for (d_model, n), g in group.groupby(["d_model", "N"]):
                mean = g.groupby("lr").loss.agg(lambda v: v.mean(skipna=False))  # NaN: diverged
                best, edge = optimum(mean.index.to_numpy(), mean.to_numpy())
                rule = default_lr(configs[int(d_model)])
                rows.append(
                    {"D": int(d_tokens), "seed": label, "d_model": int(d_model), "N": int(n)}
                    | {"lr_opt": best, "edge": edge, "rule": rule, "opt_over_rule": best / rule}
                    | {"losses": {f"{r:.5g}": float(v) for r, v in mean.items()}}
                )
                opt_n.append(n)
                opt_lr.append(best)
            law = fit.fit_power_law(opt_n, opt_lr, offset=False)
            laws[f"{d_tokens}/{label}"] = {"k": float(law.k), "alpha": float(law.alpha)}
            laws[f"{d_tokens}/{label}"]["r2"] = float(law.r2)  # of log lr_opt on log N
    return {"optima": rows, "laws": laws}


def best_grid_rates(table) -> dict[int, float]:
    """Per width, the grid rate with the lowest mean log-loss over seeds and both budgets."""
    mean = table.assign(loss=np.log(table.loss)).groupby(["d_model", "lr"]).loss.mean()
    mean = mean.reset_index()
    mean.loss = mean.loss.fillna(np.inf)
    return {int(d): float(g.lr.iloc[int(np.argmin(g.loss))]) for d, g in mean.groupby("d_model")}


def setting_effects(table, name: str, values, baseline) -> list[dict]:
    """Each setting's loss minus the baseline's, same shape, budget and seed."""
    key = ["d_model", "D", "seed"]
    base = table[table[name] == baseline].set_index(key).loss
    out = []
    for value in values:
        if value == baseline:
            continue
        diff = (table[table[name] == value].set_index(key).loss - base).dropna()
        for d_tokens, g in diff.groupby(level="D"):
            per = g.groupby(level="d_model").mean()
            out.append(
                {name: value, "D": int(d_tokens), "median": float(g.median())}
                | {"min": float(g.min()), "max": float(g.max()), "n": len(g)}
                | {"mean_by_width": {int(k): float(v) for k, v in per.items()}}
            )
            print(
                f"  {name} {value} vs {baseline}, {d_tokens:,} tokens: loss change median "
                f"{g.median():+.4f} (range {g.min():+.4f} … {g.max():+.4f}, {len(g)} runs)"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", default=["0", "1"], help="e.g. 0 1 or 0-3")
    parser.add_argument("--stage", choices=("lr", "all"), default="all")
    parser.add_argument("--cache", help="run cache folder (default: the course's)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    parser.add_argument("--out", type=Path, default=RESULTS / "recipe.json")
    args = parser.parse_args()
    try:
        seeds = sorted({s for text in args.seeds for s in _seed_range(text)})
    except ValueError:
        parser.error(f"--seeds takes integers >= 0 or ranges like 0-3, got {args.seeds}")
    corpus = data.load_corpus("shakespeare")
    tokenizer = data.char_tokenizer(corpus)
    plateau = data.bigram_loss(*data.tokenized_splits(corpus, tokenizer), len(tokenizer))

    print(f"stage 1: {len(shapes())} shapes × {len(RATE_FACTORS)} rates × seeds {seeds}")
    specs = [
        spec
        for config in shapes()
        for factor in RATE_FACTORS
        for seed in seeds
        for spec in family(config, factor * default_lr(config), seed, BASE_WARMUP, BETAS[1])
    ]
    lr_table, lr_wall = train(specs, args)
    lr = lr_stage(lr_table, seeds)
    for name, law in lr["laws"].items():
        print(f"  lr_opt = {law['k']:.3g} · N^(−{law['alpha']:.3f}), R² {law['r2']:.2f}  [{name}]")
    for r in lr["optima"]:
        if r["seed"] == "mean":
            print(
                f"  d_model {r['d_model']:3d}, {r['D']:,} tokens: best {r['lr_opt']:.4f} "
                f"= {r['opt_over_rule']:.2f} × rule{' (edge of the grid)' if r['edge'] else ''}"
            )
    payload = {"rate_factors": list(RATE_FACTORS), "stage1": lr, "stage1_wall_s": lr_wall}
    payload["stage1_cached"] = int(lr_table.cached.sum())  # wall_s covers only the rest
    payload["stage1_train_s"] = float(lr_table.wall_s.sum())  # each run's own training time
    tables = [lr_table]

    if args.stage == "all":
        best = best_grid_rates(lr_table)
        print(f"stage 2 at the best grid rates {best}")
        specs = [
            spec
            for config in shapes()
            for seed in seeds
            for warmup, beta2 in [(w, BETAS[1]) for w in WARMUPS] + [(50, b) for b in BETA2S]
            for spec in family(config, best[config.d_model], seed, warmup, beta2)
        ]
        specs = list(dict.fromkeys(specs))  # the baseline appears in both lists
        table, wall = train(specs, args)
        payload["stage2"] = {
            "best_grid_rates": best,
            "warmup": setting_effects(table[table.beta2 == BETAS[1]], "warmup", WARMUPS, 50),
            "beta2": setting_effects(table[table.warmup == 50], "beta2", BETA2S, BETAS[1]),
            "wall_s": wall,
            "cached": int(table.cached.sum()),
            "train_s": float(table.wall_s.sum()),
        }
        tables.append(table)

    everything = pd.concat(tables, ignore_index=True)
    stuck = everything[everything.loss >= plateau - 0.1].drop_duplicates("key")
    columns = ["d_model", "N", "D", "lr", "warmup", "beta2", "seed", "loss"]
    payload |= {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cores": usable_cores()},
        "seeds": seeds,
        "plateau_loss": plateau,
        "near_plateau": stuck[columns].to_dict("records"),
        "runs": everything.drop_duplicates("key")[columns].to_dict("records"),
    }
    print(f"runs within 0.1 nats of the plateau ({plateau:.3f}): {len(stuck)}")
    write_json(args.out, payload)
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
