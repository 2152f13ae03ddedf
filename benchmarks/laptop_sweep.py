"""The laptop sweep, measured: wall time, fit quality, and pre-registered predictions.

Runs ``helpers.sweep.laptop_design()`` (the design the practice chapter trains) for each
seed, on every core, with a fresh run cache (or ``--cache DIR`` to reuse one: pass the
course's cache, ``~/.cache/scaling-laws-course/runs``, to share seed 0 with chapter 5; the
runs keep their weights, as the chapter's do, so it reuses them), then prints per seed:

- wall time of the sweep and of the Chinchilla fit (targets: ≤ 5 min and ≤ 20 s);
- any run whose loss is still within 0.1 nats of a character-pair table's (the early plateau
  of training: a run too short for its model);
- R² of the Chinchilla fit in log-loss on all runs, with non-embedding N as in chapter 5
  (target ≥ 0.98), and with total N; its allocation exponent a with C = 6·N·D
  (β/(α+β)) and along its frontier with the exact training FLOPs of the shapes;
- predictivity, with the held-out runs chosen by ``helpers.sweep.holdout`` from the design
  alone, before anything is fitted: the Chinchilla surface fitted on the other runs, and
  L(N) at each token budget fitted on the smaller models; median relative error of
  predicted vs measured loss (goal ≤ 2 %);

and, with two seeds or more, the seed-to-seed spread of each design point's loss (relative
standard deviation across seeds). Everything goes to ``--out`` (JSON, written atomically)
with the command line, date, PyTorch version and machine: by default, several seeds to
``results/laptop_sweep.json``, which chapter 5 reads, one seed to
``results/laptop_sweep_seed<S>.json`` (a schedule other than the design's default, or a
``--warmup``, adds ``_<schedule>`` or ``_warmup<W>`` before ``_seed``/``.json``). The last
line printed is the speed of the whole invocation: wall time of the sweeps, exact training
FLOPs of the runs it trained (not 6·N·D; cached runs count for neither, and a WSD branch's
steps shared with its long run are counted once), the matmul peak of as many single-thread
processes as the sweep has workers, measured in the same run, and the ratio FLOPs / wall /
peak.

Usage:  .venv/bin/python benchmarks/laptop_sweep.py [--cache DIR] [--workers K]
        [--seeds 0-7 | --seeds S ...] [--schedule cosine|wsd] [--warmup STEPS] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import inspect
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from helpers import data, fit, sweep
from helpers._parallel import mp_context, usable_cores
from helpers.compute import FlopsPerToken, run_flops
from helpers.train import SCHEDULES

#: The schedule laptop_design uses by default.
DEFAULT_SCHEDULE = inspect.signature(sweep.laptop_design).parameters["schedule"].default

#: Where the results go by default: several seeds to the file chapter 5 reads, one seed to
#: a file of its own (so that a quick one-seed timing run leaves the chapter's file alone).
RESULTS = Path(__file__).parent / "results"
SEEDS_FILE = RESULTS / "laptop_sweep.json"

#: The matmul that defines a core's peak: (n × n) @ (n × n) in fp32, 2·n³ FLOPs.
PEAK_N = 1024


def _one_core_matmul_rate(seconds: float) -> float:
    """FLOP/s of (PEAK_N × PEAK_N) fp32 matmuls on one thread, timed for ``seconds``."""
    import torch

    torch.set_num_threads(1)
    a, b = torch.randn(PEAK_N, PEAK_N), torch.randn(PEAK_N, PEAK_N)
    torch.mm(a, b)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        n += 1
    return 2.0 * PEAK_N**3 * n / (time.perf_counter() - t0)


def matmul_peak(workers: int, seconds: float = 3.0) -> float:
    """Matmul FLOP/s of ``workers`` single-thread processes running at once (summed): the
    peak that the sweep's single-thread workers could reach together on this machine."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=mp_context()) as pool:
        return sum(pool.map(_one_core_matmul_rate, [seconds] * workers))


def exact_flops(specs: list, shared_steps: list[int] | None = None) -> float:
    """Training FLOPs of ``specs`` counted exactly for each shape (attention and output
    layer included: ``run_flops``), not 6·N·D; the steps a WSD branch
    shares with its long run (``shared_steps``) are not trained twice, so not counted."""
    shared = shared_steps or [0] * len(specs)
    return sum(
        run_flops(s.config, (s.n_steps - k) * s.batch_size * s.config.n_ctx)
        for s, k in zip(specs, shared, strict=True)
    )


def design(seed: int, schedule: str, warmup: int | None) -> list:
    """The laptop design for one seed and schedule; ``warmup`` (steps) replaces every run's
    warm-up if given (the design's own rule otherwise)."""
    specs = sweep.laptop_design(seed=seed, schedule=schedule)
    if warmup is not None:
        specs = [dataclasses.replace(s, warmup=warmup) for s in specs]
    return specs


def measure(seed: int, cache: str, workers: int | None, plateau: float, args) -> dict:
    """Train (or read) one seed's sweep, fit it, and return its results (also printed)."""
    schedule = args.schedule
    specs = design(seed, schedule, args.warmup)
    held = sweep.holdout(sweep.design_table(specs))
    t0 = time.perf_counter()
    runs = sweep.run_sweep(specs, cache_dir=cache, workers=workers, keep_models=True)
    wall = time.perf_counter() - t0
    print(f"seed {seed}: sweep wall time {wall:.0f} s ({runs.cached.sum()} of {len(runs)} cached)")

    stuck = runs[runs.loss >= plateau - 0.1]
    print(f"  runs within 0.1 nats of the plateau ({plateau:.3f}): {len(stuck)}")
    t0 = time.perf_counter()
    full = fit.fit_chinchilla(runs.N, runs.D, runs.loss)  # non-embedding N, as chapter 5
    fit_s = time.perf_counter() - t0
    total = fit.fit_chinchilla(runs.N_total, runs.D, runs.loss)
    cost = FlopsPerToken({s.config for s in specs})  # the exact compute of the shapes
    a_exact = full.frontier(np.geomspace(runs.C.min(), runs.C.max(), 20), cost).a
    print(
        f"  Chinchilla fit on all runs: R² {full.r2:.4f}, {fit_s:.2f} s; E {full.E:.3f} "
        f"A {full.A:.3g} B {full.B:.3g} α {full.alpha:.3f} β {full.beta:.3f} → a {full.a:.3f}"
        f" with C = 6ND, {a_exact:.3f} with exact C (total N: R² {total.r2:.4f}, a {total.a:.3f})"
    )

    train, test = runs[~held.values], runs[held.values]
    surface = fit.fit_chinchilla(train.N, train.D, train.loss)
    pred = surface.predict(test.N.to_numpy(), test.D.to_numpy())
    err = pred / test.loss.values - 1
    print(
        f"  surface on {len(train)} runs → {len(test)} held out: median error "
        f"{np.median(err):+.2%} (range {err.min():+.2%} … {err.max():+.2%})"
    )

    largest, by_n = runs.N.max(), []
    for d, group in runs.groupby("D"):
        small, big = group[group.N < largest], group[group.N == largest]
        law = fit.fit_power_law(small.N, small.loss, offset=True)
        p, m = float(law.predict(big.N.values)[0]), float(big.loss.values[0])
        by_n.append({"D": int(d), "predicted": p, "measured": m, "error": p / m - 1})
    n_err = [r["error"] for r in by_n]
    print(f"  L(N), largest model held out: median error {np.median(n_err):+.2%}")

    point = lambda r: {"N": int(r.N), "N_total": int(r.N_total), "D": int(r.D)}  # noqa: E731
    fresh = ~runs.cached.to_numpy()
    trained = [spec for spec, new in zip(specs, fresh, strict=True) if new]
    shared = [int(k) for k, new in zip(runs.shared_steps, fresh, strict=True) if new]
    return {
        "seed": seed,
        "schedule": schedule,
        "warmup_steps": sorted({s.warmup_steps for s in specs}),
        "sweep_wall_s": wall,
        "cached": int(runs.cached.sum()),
        "exact_flops_trained": exact_flops(trained, shared),  # what this invocation trained
        "train_s": float(runs.wall_s.sum()),  # each run's own time (a branch's shared too)
        "runs": [
            point(r) | {"loss": float(r.loss), "wall_s": float(r.wall_s)} for r in runs.itertuples()
        ],
        "stalled": [point(r) | {"loss": float(r.loss)} for r in stuck.itertuples()],
        "fit": {k: float(getattr(full, k)) for k in ("E", "A", "B", "alpha", "beta", "a", "r2")}
        | {"fit_s": fit_s, "rms_residual": float(np.sqrt(np.mean(full.residuals**2)))}
        | {"a_exact_compute": float(a_exact)},
        "fit_total_n": {k: float(getattr(total, k)) for k in ("alpha", "beta", "a", "r2")},
        "holdout": {
            "n_fit": len(train),
            "runs": [
                point(r) | {"predicted": float(p), "measured": float(r.loss), "error": float(e)}
                for r, p, e in zip(test.itertuples(), pred, err, strict=True)
            ],
            "median_error": float(np.median(err)),
            "median_abs_error": float(np.median(np.abs(err))),
            "min_error": float(err.min()),
            "max_error": float(err.max()),
        },
        "l_of_n": {
            "runs": by_n,
            "median_error": float(np.median(n_err)),
        },
    }


#: The lab's targets for one seed's sweep (issue "A lab you can trust").
TARGETS = {"r2": 0.98, "held_out": 0.02, "l_of_n": 0.02}


def l_of_n_abs_error(result: dict) -> float:
    """Median |error| of one seed's L(N) predictions (from its runs: older files lack it)."""
    return float(np.median(np.abs([r["error"] for r in result["l_of_n"]["runs"]])))


def passes(result: dict) -> bool:
    """Whether one seed's sweep meets every target: Chinchilla R² ≥ 0.98 in log-loss,
    pre-registered held-out and L(N) median |error| ≤ 2 %, no run near the plateau."""
    return (
        result["fit"]["r2"] >= TARGETS["r2"]
        and result["holdout"]["median_abs_error"] <= TARGETS["held_out"]
        and l_of_n_abs_error(result) <= TARGETS["l_of_n"]
        and not result["stalled"]
    )


def seed_spread(per_seed: list[dict]) -> dict:
    """Relative standard deviation (ddof 1) of each design point's loss across seeds."""
    losses: dict[tuple[int, int], list[float]] = {}
    for result in per_seed:
        for r in result["runs"]:
            losses.setdefault((r["N"], r["D"]), []).append(r["loss"])
    stalled = {(r["N"], r["D"]) for result in per_seed for r in result["stalled"]}
    points = [
        {"N": n, "D": d, "losses": v, "rel_sd": float(np.std(v, ddof=1) / np.mean(v)),
         "stalled_in_a_seed": (n, d) in stalled}
        for (n, d), v in sorted(losses.items())
    ]  # fmt: skip
    sd = [p["rel_sd"] for p in points]
    clean = [p["rel_sd"] for p in points if not p["stalled_in_a_seed"]] or [float("nan")]
    print(
        f"seed-to-seed spread of a design point's loss ({len(per_seed)} seeds): relative sd "
        f"{min(sd):.2%} … {max(sd):.2%}, median {np.median(sd):.2%}; without the points a "
        f"seed left on the plateau: {min(clean):.2%} … {max(clean):.2%}"
    )
    return {
        "points": points,
        "min": min(sd),
        "max": max(sd),
        "median": float(np.median(sd)),
        "min_never_stalled": min(clean),
        "max_never_stalled": max(clean),
        "median_never_stalled": float(np.median(clean)),
    }


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` through a temporary file, so an interruption leaves none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1, ensure_ascii=False)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a results file is for everyone
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _seed_range(text: str) -> list[int]:
    """'3' -> [3]; '0-7' -> [0, 1, ..., 7]."""
    low, _, high = text.partition("-")
    first, last = int(low), int(high or low)
    if first < 0 or last < first:
        raise ValueError(text)
    return list(range(first, last + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", help="run cache folder to (re)use; default: a fresh one")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    parser.add_argument("--seed", type=int, default=0, help="one seed (default 0)")
    parser.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=DEFAULT_SCHEDULE,
        help=f"learning-rate schedule of the design (default {DEFAULT_SCHEDULE})",
    )
    parser.add_argument(
        "--seeds", nargs="+", help="several seeds, e.g. 0 1 2 or 0-7 (overrides --seed)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="warm-up steps of every run (default: the rule)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"JSON file (default {SEEDS_FILE} for several seeds, "
        f"{RESULTS}/laptop_sweep_seed<S>.json for one)",
    )
    args = parser.parse_args()
    try:
        seeds = [s for text in args.seeds for s in _seed_range(text)] if args.seeds else [args.seed]
    except ValueError:
        parser.error(f"--seeds takes integers >= 0 or ranges like 0-7, got {args.seeds}")
    if len(set(seeds)) != len(seeds):
        parser.error(f"--seeds must be distinct, got {seeds}")

    table = sweep.design_table(design(0, args.schedule, args.warmup))
    budgets = sorted(int(d) for d in table.D.unique())
    print(
        f"design: {len(table)} runs, {table.N.nunique()} sizes ({table.N.min():,}–"
        f"{table.N.max():,} non-embedding), budgets {budgets} tokens, "
        f"held out before fitting: {int(sweep.holdout(table).sum())} runs; seeds {seeds}"
    )
    corpus = data.load_corpus("shakespeare")
    tokenizer = data.char_tokenizer(corpus)
    plateau = data.bigram_loss(*data.tokenized_splits(corpus, tokenizer), len(tokenizer))
    cache = args.cache or tempfile.mkdtemp(prefix="laptop-sweep-")
    workers = args.workers or usable_cores()
    peak = matmul_peak(workers)  # measured in this run, before the sweep loads the cores
    per_seed = [measure(s, cache, args.workers, plateau, args) for s in seeds]
    wall = sum(r["sweep_wall_s"] for r in per_seed)
    flops = sum(r["exact_flops_trained"] for r in per_seed)
    import torch

    payload = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cores": usable_cores(),
            "workers": args.workers or usable_cores(),
        },
        "speed": {
            "sweep_wall_s": wall,
            "exact_flops_trained": flops,
            "matmul_peak_flops_per_s": peak,
            "matmul_peak_workers": workers,
            "ratio": flops / wall / peak,
        },
        "plateau_loss": plateau,
        "seeds": per_seed,
        "seed_spread": seed_spread(per_seed) if len(seeds) > 1 else None,
    }
    tag = "" if args.schedule == DEFAULT_SCHEDULE else f"_{args.schedule}"
    tag += "" if args.warmup is None else f"_warmup{args.warmup}"
    out = args.out or (
        RESULTS / f"laptop_sweep{tag}.json"
        if len(seeds) > 1
        else RESULTS / f"laptop_sweep{tag}_seed{seeds[0]}.json"
    )
    write_json(out, payload)
    print(f"results written to {out}")
    for r in per_seed:
        print(
            f"seed {r['seed']}: R² {r['fit']['r2']:.4f}, held-out median |error| "
            f"{r['holdout']['median_abs_error']:.2%}, L(N) median |error| "
            f"{l_of_n_abs_error(r):.2%}, "
            f"{len(r['stalled'])} near the plateau: {'pass' if passes(r) else 'FAIL'}"
        )
    passing = sum(passes(r) for r in per_seed)
    print(  # one last line for both issues' figures: the seeds that pass, and the speed
        f"seeds passing: {passing}/{len(per_seed)}; wall {wall:.0f} s; exact FLOPs "
        f"{flops:.3g}; {workers}-core matmul peak {peak / 1e9:.0f} GFLOP/s; "
        f"ratio {flops / wall / peak:.0%}"
    )


if __name__ == "__main__":
    main()
