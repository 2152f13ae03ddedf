"""Training throughput of the course's GPT on this CPU, against transformers and the matmul peak.

For each size of ``helpers.model.default_ladder()`` it times a full training step (forward,
backward, AdamW update) on one thread in fp32, for our ``GPT`` and for
``transformers.GPT2LMHeadModel`` with the same shape and weights, and compares the FLOPs the
step does with what a large square matmul reaches on the same thread. Everything is measured
in one run: the two models and the matmul are timed in alternating rounds, by this process's
CPU time, so that load from other processes hits all three alike and waiting for a busy core
is not counted. Still, quote the ratios rather than the absolute numbers.

Usage::

    python benchmarks/throughput.py --quick     # about a minute
    python benchmarks/throughput.py             # longer rounds, a few minutes
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from helpers.compute import flops_per_token
from helpers.model import GPT, count_params, default_ladder, to_hf


def matmul_step(n: int) -> Callable[[], None]:
    """A closure doing one (n × n) @ (n × n) fp32 matmul: 2·n³ FLOPs."""
    a, b = torch.randn(n, n), torch.randn(n, n)

    def step() -> None:
        torch.mm(a, b)

    return step


def make_optimizer(model: torch.nn.Module, kind: str) -> torch.optim.Optimizer:
    """AdamW as the course trains with it; ``kind`` picks PyTorch's implementation."""
    extra = {"loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}
    return torch.optim.AdamW(
        model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, **extra[kind]
    )


def train_step(
    model: torch.nn.Module,
    hf: bool,
    opt: torch.optim.Optimizer,
    batch_size: int,
    attention: SDPBackend = SDPBackend.FLASH_ATTENTION,
) -> Callable[[], None]:
    """A closure doing one training step on a fixed random batch (no per-step data cost).

    ``attention`` is the kernel ``scaled_dot_product_attention`` may use: PyTorch's fused
    CPU kernel (FLASH_ATTENTION, its default here) or the unfused MATH reference.
    """
    cfg = model.config
    n_ctx = cfg.n_positions if hf else cfg.n_ctx
    vocab = cfg.vocab_size
    g = torch.Generator().manual_seed(0)
    x = torch.randint(vocab, (batch_size, n_ctx), generator=g)
    y = torch.randint(vocab, (batch_size, n_ctx), generator=g)

    def step() -> None:
        with sdpa_kernel(attention):
            forward_backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def forward_backward() -> None:
        if hf:  # same loss as ours: next-token targets given, no internal shift
            logits = model(input_ids=x).logits
            loss = F.cross_entropy(logits.view(-1, vocab), y.view(-1))
        else:
            _, loss = model(x, y)
        loss.backward()

    return step


def steps_per_second(
    steps: dict[str, Callable[[], None]], rounds: int, seconds: float
) -> tuple[dict[str, float], float]:
    """Median steps per CPU-second of each closure, timed in alternating rounds.

    The clock is this process's CPU time, so time spent waiting for a core that another
    process holds is not counted (on an idle machine it equals wall time). Also returns
    wall time ÷ CPU time over all rounds: near 1 on an idle machine, larger under load.
    """
    for step in steps.values():  # warm-up: allocations, optimizer state
        step()
        step()
    rates: dict[str, list[float]] = {name: [] for name in steps}
    wall, cpu = 0.0, 0.0
    for _ in range(rounds):
        for name, step in steps.items():
            n, w0, t0 = 0, time.perf_counter(), time.process_time()
            while time.process_time() - t0 < seconds:
                step()
                n += 1
            cpu += time.process_time() - t0
            wall += time.perf_counter() - w0
            rates[name].append(n / (time.process_time() - t0))
    return {name: statistics.median(r) for name, r in rates.items()}, wall / cpu


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rounds, seconds, n = (3, 0.3, 1024) if args.quick else (5, 1.0, 2048)
    configs = default_ladder(n_ctx=args.context)
    tokens = args.batch_size * args.context
    print(
        f"One thread, fp32, batch {args.batch_size} × {args.context} tokens;"
        " tokens/s per CPU-second."
    )

    # 1. Which AdamW: PyTorch's per-parameter loop, its foreach kernels, or the fused kernel;
    #    and whether the unfused attention would be faster at our tiny head size.
    print("\nAdamW implementation (attention kernel), our GPT, tokens/s:")
    for cfg in (configs[0], configs[-1]):
        steps = {}
        for kind in ("loop", "foreach", "fused"):
            model = GPT(cfg)
            steps[kind] = train_step(model, False, make_optimizer(model, kind), args.batch_size)
        model = GPT(cfg)
        steps["fused (math)"] = train_step(
            model, False, make_optimizer(model, "fused"), args.batch_size, SDPBackend.MATH
        )
        rates, _ = steps_per_second(steps, rounds, seconds)
        cells = "  ".join(f"{k} {v * tokens:>9,.0f}" for k, v in rates.items())
        print(f"  n_layer {cfg.n_layer} d_model {cfg.d_model:>3}: {cells}")

    # 2. Our GPT against GPT2LMHeadModel (same shape and weights, fused AdamW for both), with
    #    the matmul timed in the same rounds, so that load from other processes hits all three.
    print(
        "\n n_layer d_model n_head   N non-emb     N total   ours tok/s     HF tok/s"
        "  ours/HF  matmul GFLOP/s  6N/peak  model/peak  wall/CPU"
    )
    for cfg in configs:
        ours = GPT(cfg)
        hf = to_hf(GPT(cfg)).train()
        steps = {
            "ours": train_step(ours, False, make_optimizer(ours, "fused"), args.batch_size),
            "hf": train_step(hf, True, make_optimizer(hf, "fused"), args.batch_size),
            "matmul": matmul_step(n),
        }
        rates, load = steps_per_second(steps, rounds, seconds)
        ours_tps, hf_tps = rates["ours"] * tokens, rates["hf"] * tokens
        peak = rates["matmul"] * 2 * n**3  # FLOP/s
        total, non_emb = count_params(cfg)
        six_n = 6 * total * ours_tps / peak
        exact = flops_per_token(cfg, mode="train", attention="dense") * ours_tps / peak
        print(
            f" {cfg.n_layer:>7} {cfg.d_model:>7} {cfg.n_head:>6} {non_emb:>11,} {total:>11,}"
            f" {ours_tps:>12,.0f} {hf_tps:>12,.0f} {ours_tps / hf_tps:>8.2f}"
            f" {peak / 1e9:>15.1f} {six_n:>8.0%} {exact:>11.0%} {load:>9.2f}",
            flush=True,
        )
    print(
        f"\nmatmul: ({n} × {n}) @ ({n} × {n}), 2·{n}³ FLOPs. 6N/peak: 6·N_total·tokens/s ÷ "
        "matmul FLOP/s. model/peak: the step's FLOPs from flops_per_token(mode='train', "
        "attention='dense'), which adds the attention and counts N exactly, ÷ matmul FLOP/s. "
        "wall/CPU > 1: other processes held the core part of the time."
    )


parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--quick", action="store_true", help="short rounds (about a minute)")
parser.add_argument("--batch-size", type=int, default=16, help="sequences per step")
parser.add_argument("--context", type=int, default=64, help="tokens per sequence")

if __name__ == "__main__":
    main(parser.parse_args())
