"""Worker processes shared by the sweep and the bootstrap: how many, and how they start.

Both start workers the same way, so that the one forkserver a process gets (see
:func:`mp_context`) serves them all: its preloaded imports are paid for once.
"""

from __future__ import annotations

import multiprocessing
import os


def usable_cores() -> int:
    """Cores this process may run on (respects ``taskset`` and container limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def mp_context() -> multiprocessing.context.BaseContext:
    """'forkserver' where the platform has it (Linux, macOS), else 'spawn'.

    The forkserver imports ``helpers.sweep`` and ``torch._dynamo`` (which the first optimizer
    in a process would import, ≈ 3 s) once; each worker is then a fork of it. This sets the
    preload list of ``multiprocessing``'s one forkserver, used only when it starts.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["helpers.sweep", "torch._dynamo"])
        return ctx
    return multiprocessing.get_context("spawn")
