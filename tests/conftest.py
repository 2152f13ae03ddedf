"""Fixtures shared by the lab's tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import helpers.sweep as sweep
from helpers import data


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one torch thread (tiny models train faster, and alike)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> data.Corpus:
    """A tiny corpus of random words (29 characters, so 31 tokens), its cache in tmp."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(data.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        rng = np.random.default_rng(0)
        words = ["the", "king", "is", "dead", "long", "live", "queen", "and", "her", "court"]
        lines = [" ".join(rng.choice(words, 8)) + "." for _ in range(700)]
        train_text, val_text = "\n".join(lines[:600]), "\n".join(lines[600:])
        c = data.Corpus(
            name="tiny",
            train_text=train_text,
            val_text=val_text,
            train_docs=("train",),
            val_docs=("val",),
            n_chars=len(train_text) + len(val_text),
            source="random words, for tests",
        )
        data.tokenized_splits(c, data.char_tokenizer(c))  # cached now, where tests can't see
        yield c


@pytest.fixture
def count_trainings(monkeypatch) -> dict[str, int]:
    """Count the runs that run_sweep trains in this process (directly or through a helper)."""
    counter = {"runs": 0}
    real = sweep.train

    def counting(*args, **kwargs):
        counter["runs"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep, "train", counting)
    return counter
