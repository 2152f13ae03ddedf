"""The speed levers of the laptop lab, each measured against the lab as it is, in one run.

For the laptop design's widths, one step of the lab's training loop (16 × 64 characters,
forward, backward, clipping, fused AdamW; one thread, as a sweep worker runs) is timed for
each variant of a lever. Variants of one width take turns in blocks of steps, so that the
machine's drift hits all of them alike; the figure per variant is the median of its
blocks, and each ratio is variant time / baseline time measured in the same run (below 1:
faster).

- ``gelu``: GPT-2's tanh GELU (the lab's, "gelu_new") against the exact erf GELU;
- ``heads``: fewer, larger attention heads at the same width (the same parameters N);
- ``attention``: PyTorch's flash attention kernel on the CPU against its math kernel;
- ``compile``: ``torch.compile`` of the model (time to compile reported apart);
- ``eval``: the share of a run's time spent on its evaluations (8 per run, 16,384 tokens);

and, once per width, the cost of a step with everything else fixed. The WSD lever (one long
run per size instead of three) is measured on the whole sweep by ``laptop_sweep.py
--schedule wsd``. Results go to ``results/levers.json`` with the command that made them.

Usage:  .venv/bin/python benchmarks/levers.py [--rounds R] [--block S] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from helpers import data, sweep, train
from helpers.model import GPT, GPTConfig, count_params

RESULTS = Path(__file__).parent / "results"


def _config(d_model: int, n_head: int) -> GPTConfig:
    return GPTConfig(vocab_size=86, n_ctx=64, n_layer=2, d_model=d_model, n_head=n_head)


class Stepper:
    """One model in the lab's own training loop (``helpers.train._Loop``, the loop every
    run goes through): ``steps(k)`` trains ``k`` more steps, with no evaluation."""

    def __init__(self, config, ids, *, gelu="tanh", attention=None, compiled=False):
        from tqdm import tqdm

        model = GPT(config, seed=0).train()
        if gelu != "tanh":
            for module in model.modules():
                if isinstance(module, torch.nn.GELU):
                    module.approximate = "none"
        self.attention = attention
        self.loop = train._Loop(
            torch.compile(model) if compiled else model,
            ids,
            None,  # no evaluation windows: nothing is evaluated
            lr=1e-3,
            beta2=train.BETAS[1],
            batch_size=sweep.LAPTOP_BATCH,
            seed=0,
            dev=torch.device("cpu"),
            eval_batch=1,
            bar=tqdm(disable=True),
        )

    def steps(self, k: int) -> None:
        context = contextlib.nullcontext()
        if self.attention is not None:
            from torch.nn.attention import sdpa_kernel

            context = sdpa_kernel(self.attention)
        with context:
            stop = len(self.loop.losses) + k
            self.loop.run(stop, lambda step: 1e-3, set(), stop)


def race(variants: dict[str, Stepper], rounds: int, block: int) -> dict[str, float]:
    """Median seconds per step of each variant, the variants taking turns in blocks."""
    for s in variants.values():  # warm-up (and compilation) outside the timing
        s.steps(10)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, s in variants.items():
            t0 = time.perf_counter()
            s.steps(block)
            times[name].append((time.perf_counter() - t0) / block)
    return {name: float(np.median(t)) for name, t in times.items()}


def lever(name, width, baseline_heads, variants, ids, rounds, block) -> dict:
    """Time the baseline and its variants at one width; print and return the ratios."""
    steppers = {"baseline": Stepper(_config(width, baseline_heads), ids)}
    compile_s = None
    for label, kwargs in variants.items():
        kwargs = dict(kwargs)
        heads = kwargs.pop("n_head", baseline_heads)
        t0 = time.perf_counter()
        steppers[label] = Stepper(_config(width, heads), ids, **kwargs)
        if kwargs.get("compiled"):
            steppers[label].steps(1)  # the first step compiles
            compile_s = time.perf_counter() - t0
    med = race(steppers, rounds, block)
    base = med["baseline"]
    out = {
        "lever": name,
        "d_model": width,
        "N": count_params(_config(width, baseline_heads))[1],
        "baseline_n_head": baseline_heads,
        "baseline_ms": base * 1e3,
        "variants": {
            k: {"ms": v * 1e3, "ratio": v / base} for k, v in med.items() if k != "baseline"
        },
    }
    if compile_s is not None:
        out["compile_s"] = compile_s
    text = ", ".join(
        f"{k} {v['ms']:.2f} ms ({v['ratio']:.2f}×)" for k, v in out["variants"].items()
    )
    print(
        f"{name:9s} width {width:2d} ({heads_label(baseline_heads)}): "
        f"baseline {base * 1e3:.2f} ms; {text}"
    )
    return out


def heads_label(n: int) -> str:
    return f"{n} head" + ("s" if n > 1 else "")


def eval_share(ids_train, ids_val) -> list[dict]:
    """Evaluation's share of the time of the design's shortest and longest runs, per size
    (from one 1,000-step run per size; an evaluation costs the same whatever the budget)."""
    out = []
    for spec in sweep.laptop_design():
        if spec.n_steps != min(sweep.LAPTOP_STEPS) or spec.config.d_model not in (12, 72):
            continue
        r = train.train(
            spec.config,
            ids_train,
            ids_val,
            n_tokens=spec.n_tokens,
            batch_size=spec.batch_size,
            lr=spec.lr,
            progress=False,
        )
        per_eval = r.eval_s / len(r.curve)
        step_s = (r.wall_s - r.eval_s) / r.n_steps
        for steps in sweep.LAPTOP_STEPS:
            share = train.N_EVALS * per_eval / (train.N_EVALS * per_eval + steps * step_s)
            out.append({"d_model": spec.config.d_model, "steps": steps, "share": share})
            print(
                f"eval      width {spec.config.d_model:2d}, {steps} steps: {share:.1%} of the run"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="blocks per variant (default 7)")
    parser.add_argument("--block", type=int, default=25, help="steps per block (default 25)")
    parser.add_argument("--out", type=Path, default=RESULTS / "levers.json")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a sweep worker
    corpus = data.load_corpus("shakespeare")
    ids_train, ids_val = data.tokenized_splits(corpus, data.char_tokenizer(corpus))
    from torch.nn.attention import SDPBackend

    r, b = args.rounds, args.block
    results = []
    for width, heads in ((12, 1), (32, 2), (72, 4)):
        results.append(
            lever("gelu", width, heads, {"exact GELU": {"gelu": "exact"}}, ids_train, r, b)
        )
    for width, heads, fewer in ((32, 2, (1,)), (48, 3, (2, 1)), (72, 4, (3, 2))):
        variants = {heads_label(h): {"n_head": h} for h in fewer}
        results.append(lever("heads", width, heads, variants, ids_train, r, b))
    for width, heads in ((12, 1), (72, 4)):
        variants = {"math kernel": {"attention": SDPBackend.MATH}}
        results.append(lever("attention", width, heads, variants, ids_train, r, b))
    for width, heads in ((12, 1), (72, 4)):
        results.append(
            lever("compile", width, heads, {"compiled": {"compiled": True}}, ids_train, r, b)
        )
    evals = eval_share(ids_train, ids_val)
    payload = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.platform(),
        "threads": 1,
        "levers": results,
        "eval_share": evals,
    }
    from laptop_sweep import write_json  # the same atomic writer as the sweep benchmark

    write_json(args.out, payload)
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
