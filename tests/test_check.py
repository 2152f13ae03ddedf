"""Self-checks and session set-up."""

import random

import matplotlib as mpl
import numpy as np
import pytest

import helpers as h


def test_check_close_passes_and_prints_a_tick(capsys):
    err = h.check_close("x", 1.01, 1.0, rtol=0.02)
    assert err == pytest.approx(0.01)
    assert capsys.readouterr().out.startswith("✓ x")


def test_check_close_fails_with_the_miss():
    with pytest.raises(AssertionError, match="relative error 0.1"):
        h.check_close("x", 1.1, 1.0, rtol=0.05)


def test_check_close_rejects_nan_and_bad_arguments():
    with pytest.raises(AssertionError):
        h.check_close("x", float("nan"), 1.0, rtol=0.1)
    with pytest.raises(ValueError, match="rtol"):
        h.check_close("x", 1.0, 1.0, rtol=0)
    with pytest.raises(ValueError, match="name"):
        h.check_close("", 1.0, 1.0)
    with pytest.raises(ValueError, match="got and want"):
        h.check_close("x", "one", 1.0)


def test_check_close_with_zero_target_uses_absolute_error():
    h.check_close("zero", 1e-9, 0.0, rtol=1e-6)
    with pytest.raises(AssertionError):
        h.check_close("zero", 1e-3, 0.0, rtol=1e-6)


def test_check_true(capsys):
    h.check_true("holds", np.bool_(True), "detail")
    assert "✓ holds (detail)" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="✗ fails"):
        h.check_true("fails", False)
    with pytest.raises(ValueError, match="condition"):
        h.check_true("not a bool", 1)


def test_setup_seeds_everything_and_sets_a_readable_style():
    h.setup(seed=3)
    a = (random.random(), np.random.rand())
    h.setup(seed=3)
    assert (random.random(), np.random.rand()) == a
    assert mpl.rcParams["figure.facecolor"] == "white"
    torch = pytest.importorskip("torch")
    h.setup(seed=5)
    t = torch.rand(3)
    h.setup(seed=5)
    assert torch.equal(t, torch.rand(3))


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_setup_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed"):
        h.setup(seed=seed)
