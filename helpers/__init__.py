"""The helpers package the course's notebooks import as ``import helpers as h``.

Modules, each named by what it holds:

- ``laws``: published scaling laws and their constants, with citations.
- ``compute``: FLOPs of training (C ≈ 6·N·D), per token, and measured.
- ``check``: self-checks that print a ✓ line or raise.
- ``session``: ``setup()`` for the top of every chapter.
- ``data``: the corpora (Shakespeare, the Python standard library) and their tokenizers.
- ``model``: a small GPT-2-style model, its parameter count, the ladder of sizes.
- ``train``: train one model on a token budget.
- ``sweep``: train a design of many models, cached, one process per core.
- ``fit``: fit power laws, Kaplan's and Chinchilla's forms, with bootstrap intervals.
- ``plot``: log-log law plots, loss families, IsoFLOP profiles, frontiers.
- ``apps``: helpers of the applications chapter (corpus subsets, trained model ladders).
- ``lstm``: the corrected LSTM language model of chapter 3 (trained by ``train.train_model``).

The lab modules (data, model, train, sweep, fit) load on first use, so that
``import helpers`` stays fast for chapters that need no PyTorch.
"""

import importlib

from . import check, laws, session
from .check import check_close, check_true
from .session import setup

_LAZY = {"apps", "compute", "data", "fit", "lstm", "model", "plot", "sweep", "train"}


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


__all__ = ["check", "check_close", "check_true", "laws", "session", "setup", *sorted(_LAZY)]
