"""Every numeric argument of every public helper rejects what is not a number.

The test walks the public API: each module's public functions and classes (``__all__``, or
the public names defined in the module), and the public methods of those classes. Every
parameter annotated as a number (``int``, ``float``, ``np.ndarray``, ``torch.Tensor``, or a
union or sequence of them) is called with a valid example of every other argument and one
bad value at a time: text that ``float()`` would parse (``"1e20"``), a boolean
(``float(True)`` is 1.0), None (unless None is allowed) and bytes. Each call must raise
``ValueError`` whose message names the parameter.

A callable with a numeric parameter needs an entry in ``_examples`` (valid arguments, cheap:
tiny models and tensors, nothing trained), in ``RECORDS`` (data classes the helpers return
or publish) or in ``SKIP``: a new one without an entry fails here instead of being skipped
silently. Each example is also called once as it stands (unless marked ``run=False``),
which must not raise, so that the examples stay valid.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib
import numpy as np
import pytest
import torch

import helpers

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

#: Every public module of the package (a new one is walked too), e.g. "laws", "fit".
MODULES = tuple(
    sorted(
        m.name
        for m in pkgutil.walk_packages(helpers.__path__)
        if not any(part.startswith("_") for part in m.name.split("."))
    )
)

#: An annotation that admits a number or an array of numbers.
NUMERIC = re.compile(r"\b(int|float)\b|np\.ndarray|torch\.Tensor")

#: What is not a number; None only where the annotation does not allow None.
BAD_VALUES = {"str": "1e20", "bool": True, "None": None, "bytes": b"1"}

#: Data classes that helpers return (fits, runs, results) or publish (constants, corpora):
#: the helpers build them from checked inputs, and those that take them as input check
#: the fields they use (e.g. fit_envelope the fields of a TrainingCurve).
RECORDS = {
    "data.Corpus",
    "fit.AllocationFit",
    "fit.BootstrapResult",
    "fit.ChinchillaFit",
    "fit.EnvelopeFit",
    "fit.FrontierFit",
    "fit.IsoFlopFit",
    "fit.KaplanFit",
    "fit.PowerLawFit",
    "fit.TrainingCurve",
    "laws.ChinchillaParams",
    "laws.KaplanConstants",
    "laws.PublishedRun",
    "lstm.LMRun",
    "train.LoopResult",
    "train.TrainResult",
}

#: Callables whose numeric arguments are not exercised here, and why.
SKIP = {
    # nn.Module.forward of the model's layers: tensors in, tensors out, called on every
    # training step with tensors the checked helpers (get_batch, eval_windows) built;
    # a non-tensor fails in PyTorch's first operation (a TypeError or AttributeError, not
    # the ValueError of the helpers' checks).
    "lstm.LSTMLM.forward",
    "model.Block.forward",
    "model.CausalSelfAttention.forward",
    "model.GPT.forward",
    "model.MLP.forward",
}


@dataclass
class Example:
    """A valid call: ``fn(**values)``; ``run=False`` if the valid call itself is costly."""

    fn: Callable[..., Any]
    values: dict[str, Any]
    run: bool = True
    varargs: tuple[str, ...] = field(default=())


def ex(fn: Callable[..., Any], run: bool = True, **values: Any) -> Example:
    return Example(fn, values, run)


def _examples(fx: SimpleNamespace) -> dict[str, Example]:
    """Valid arguments for every callable with a numeric parameter (``fx``: tiny objects)."""
    from helpers import apps, check, compute, data, fit, laws, lstm, model, plot, session, sweep
    from helpers import train as tr

    n, d, loss, c = fx.n, fx.d, fx.loss, fx.flops
    lm = lstm.LSTMLM(fx.lstm_config)
    common = dict(batch_size=2, lr=1e-3, seeds=0, eval_tokens=16, min_steps=1)
    sweep_args = dict(  # run_sweep and the trained_models that wraps it
        specs=[fx.spec],
        corpus=fx.corpus,
        tokenizer="char",
        workers=1,
        cache_dir=fx.tmp,
        progress=False,
    )
    loop = dict(
        n_tokens=32, lr=1e-3, batch_size=2, seed=0, eval_tokens=16, eval_every=1, progress=False
    )
    return {
        "apps.effective_tokens": ex(
            apps.effective_tokens, unique_tokens=1e9, epochs=4, r_star=15.4
        ),
        "apps.inference_optimal": ex(apps.inference_optimal, loss=2.2, d_inference=1e12),
        "apps.subset_corpus": ex(apps.subset_corpus, corpus=fx.corpus, n_chars=64, n_pieces=4),
        "apps.tokens_for_loss": ex(apps.tokens_for_loss, n_params=1e10, loss=2.2),
        "apps.trained_models": ex(apps.trained_models, run=False, **sweep_args),  # trains
        "check.check_close": ex(check.check_close, name="x", got=1.0, want=1.0, rtol=1e-6),
        "compute.flops_per_token": ex(compute.flops_per_token, config=fx.config, context=8),
        "compute.measure_flops": ex(
            compute.measure_flops,
            run=False,  # PyTorch's FLOP counter takes seconds to start
            model=fx.gpt,
            batch_size=1,
            context=4,
            seed=0,
        ),
        "compute.pf_days": ex(compute.pf_days, flops=1e20),
        "compute.run_flops": ex(compute.run_flops, config=fx.config, n_tokens=1e6),
        "compute.training_flops": ex(compute.training_flops, n_params=1e6, n_tokens=1e9),
        "data.bigram_loss": ex(
            data.bigram_loss, train_ids=fx.ids, val_ids=fx.ids, vocab_size=31, smoothing=0.5
        ),
        "data.bpe_tokenizer": ex(data.bpe_tokenizer, run=False, corpus=fx.corpus, vocab_size=300),
        "data.eval_windows": ex(data.eval_windows, ids=fx.ids, context=8, n=2),
        "data.get_batch": ex(data.get_batch, ids=fx.ids, context=8, batch_size=2, generator=0),
        "fit.AllocationFit.d_opt": ex(fx.allocation_fit.d_opt, flops=1e20),
        "fit.AllocationFit.n_opt": ex(fx.allocation_fit.n_opt, flops=1e20),
        "fit.ChinchillaFit.predict": ex(fx.chinchilla_fit.predict, n_params=1e6, n_tokens=1e8),
        "fit.ChinchillaFit.frontier": ex(fx.chinchilla_fit.frontier, flops=[1e15, 1e17]),
        "fit.KaplanFit.predict": ex(fx.kaplan_fit.predict, n_params=1e6, n_tokens=1e8),
        "fit.PowerLawFit.predict": ex(fx.power_law_fit.predict, x=1e6),
        "fit.bootstrap": Example(
            fit.bootstrap,
            dict(
                fit_fn=fit.fit_power_law,
                arrays=(n, loss),
                attrs=("alpha",),
                n_boot=2,
                seed=0,
                level=0.9,
                workers=1,
                offset=False,
            ),
            varargs=("arrays",),
        ),
        "fit.chinchilla_objective": ex(
            fit.chinchilla_objective,
            params=laws.BESIROGLU,
            n_params=n,
            n_tokens=d,
            loss=loss,
            delta=1e-3,
        ),
        "fit.fit_chinchilla": ex(
            fit.fit_chinchilla,
            n_params=n,
            n_tokens=d,
            loss=loss,
            grid={"a": [6.0], "b": [7.0], "e": [0.5], "alpha": [0.3], "beta": [0.3]},
            delta=1e-3,
        ),
        "fit.fit_envelope": ex(fit.fit_envelope, curves=fx.curves, n_grid=20, exclude_edges=False),
        "fit.fit_isoflop": ex(
            fit.fit_isoflop, n_params=n, n_tokens=d, loss=loss, flops=c, rtol=0.01
        ),
        "fit.fit_kaplan": ex(fit.fit_kaplan, n_params=n, n_tokens=d, loss=loss),
        "fit.fit_power_law": ex(fit.fit_power_law, x=n, y=loss, offset=False),
        "laws.chinchilla_loss": ex(laws.chinchilla_loss, n_params=1e9, n_tokens=2e10),
        "laws.compute_optimal": ex(laws.compute_optimal, flops=1e20),
        "laws.kaplan_compute_loss": ex(laws.kaplan_compute_loss, flops=1e20),
        "laws.kaplan_loss": ex(laws.kaplan_loss, n_params=1e9, n_tokens=2e10),
        "lstm.LSTMConfig": ex(lstm.LSTMConfig, vocab_size=31, n_ctx=8, n_layer=1, d_model=8),
        "lstm.LSTMLM": ex(lstm.LSTMLM, config=fx.lstm_config, seed=0),
        "lstm.evaluate_lm": ex(lstm.evaluate_lm, model=lm, x=fx.x, y=fx.y, chunk=2),
        "lstm.lstm_config": ex(lstm.lstm_config, n_params_target=1e4, n_layer=1, vocab_size=31),
        "lstm.train_lm": ex(
            lstm.train_lm,
            run=False,  # trains
            model=lm,
            train_ids=fx.ids,
            val_ids=fx.ids,
            schedule_tokens=64,
            n_evals=1,
            n_threads=1,
            **{k: v for k, v in loop.items() if k != "eval_every"},
        ),
        "model.GPT": ex(model.GPT, config=fx.config, seed=0),
        "model.GPTConfig": ex(
            model.GPTConfig, vocab_size=31, n_ctx=8, n_layer=1, d_model=8, n_head=1
        ),
        "model.default_ladder": ex(
            model.default_ladder, n_sizes=2, n_min=6e3, n_max=1e4, vocab_size=31, n_ctx=8
        ),
        "model.init_std": ex(model.init_std, d_model=24),
        "model.kaplan_params": ex(model.kaplan_params, n_layer=2, d_model=16),
        "model.ladder": ex(
            model.ladder,
            n_params_target=6e3,
            vocab_size=31,
            n_ctx=8,
            head_dim=16,
            aspect=16.0,
            aspect_range=(8.0, 64.0),
            min_layers=2,
            shape_weight=0.5,
        ),
        "plot.allocation": ex(plot.allocation, flops=c, n_opt=n, reference={"Chinchilla": 0.5}),
        "plot.frontier": ex(plot.frontier, flops=c, loss=loss, n_params=n),
        "plot.isoflop": ex(plot.isoflop, n_params=n, loss=loss, flops=c, rtol=0.01),
        "plot.loss_families": ex(plot.loss_families, n_params=n, n_tokens=d, loss=loss, rtol=0.01),
        "plot.power_law": ex(plot.power_law, x=n, y=loss, xlabel="N", ylabel="L", extend=1.0),
        # run=False: a valid call changes global state (seeds, print options, rcParams)
        "session.resolve_seed": ex(session.resolve_seed, seed=0),
        "session.setup": ex(session.setup, run=False, seed=0, precision=4),
        "sweep.RunSpec": ex(
            sweep.RunSpec,
            config=fx.config,
            n_tokens=32,
            batch_size=2,
            lr=1e-3,
            seed=0,
            eval_tokens=16,
            eval_every=1,
        ),
        "sweep.grid_design": ex(sweep.grid_design, configs=[fx.config], budgets=[64], **common),
        "sweep.holdout": ex(sweep.holdout, table=fx.table, compute_fraction=0.25),
        "sweep.isoflop_design": ex(
            sweep.isoflop_design, configs=[fx.config], flop_budgets=[1e8], **common
        ),
        "sweep.laptop_design": ex(sweep.laptop_design, vocab_size=86, n_ctx=64, seed=0),
        "sweep.run_sweep": ex(sweep.run_sweep, run=False, **sweep_args),  # trains
        "train.decay_start": ex(tr.decay_start, n_steps=100),
        "train.default_warmup": ex(tr.default_warmup, n_steps=100),
        "train.eval_slice": ex(tr.eval_slice, val_ids=fx.ids, n_ctx=8, eval_tokens=16),
        "train.lr_schedule": ex(
            tr.lr_schedule, step=0, n_steps=10, peak_lr=1e-3, warmup_steps=2, final_fraction=0.1
        ),
        "train.train": ex(
            tr.train,
            run=False,  # trains
            config=fx.config,
            train_ids=fx.ids,
            val_ids=fx.ids,
            **loop,
        ),
        "train.train_budgets": ex(
            tr.train_budgets,
            run=False,  # trains
            config=fx.config,
            train_ids=fx.ids,
            val_ids=fx.ids,
            budgets=[32, 64],
            warmup_steps=1,
            **{k: v for k, v in loop.items() if k != "n_tokens"},
        ),
        "train.train_model": ex(
            tr.train_model,
            run=False,  # trains
            model=fx.gpt,
            train_ids=fx.ids,
            val_ids=fx.ids,
            schedule_tokens=64,
            eval_batch=1,
            **loop,
        ),
    }


# ----------------------------------------------------------------------------- the walk


def _public(module: Any) -> list[tuple[str, Any]]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    out = []
    for name in names:
        obj = getattr(module, name)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__:
            out.append((name, obj))
    return out


def _numeric_params(fn: Any) -> list[inspect.Parameter]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p for p in params if p.name != "self" and NUMERIC.search(str(p.annotation))]


def _walk() -> dict[str, list[inspect.Parameter]]:
    """Qualified name -> numeric parameters, for every public callable that has some."""
    found = {}
    for mod_name in MODULES:
        module = importlib.import_module(f"helpers.{mod_name}")
        for name, obj in _public(module):
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                continue
            targets = [(f"{mod_name}.{name}", obj)]
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if not attr.startswith("_") and inspect.isfunction(member):
                        targets.append((f"{mod_name}.{name}.{attr}", member))
            for qualname, fn in targets:
                params = _numeric_params(fn)
                if params:
                    found[qualname] = params
    return found


WALK = _walk()


def _cases() -> list[Any]:
    cases = []
    for qualname, params in sorted(WALK.items()):
        if qualname in SKIP or qualname in RECORDS:
            continue
        cases.append(pytest.param(qualname, None, None, id=f"{qualname}-valid"))
        for p in params:
            allows_none = "None" in str(p.annotation) or p.default is None
            for label, bad in BAD_VALUES.items():
                if bad is None and allows_none:
                    continue
                cases.append(pytest.param(qualname, p.name, bad, id=f"{qualname}-{p.name}-{label}"))
    for name in sorted((set(SKIP) | RECORDS) - set(WALK)):
        cases.append(pytest.param(name, None, None, id=f"{name}-stale"))
    return cases


def _call(example: Example, name: str | None = None, bad: Any = None) -> Any:
    """Call ``example.fn`` with its values, ``name`` replaced by ``bad`` (if given)."""
    values = dict(example.values)
    if name is not None:
        if name in example.varargs:  # *arrays: make the first one bad
            values[name] = (bad, *values[name][1:])
        else:
            values[name] = bad
    args, kwargs = [], {}
    params = inspect.signature(example.fn).parameters.values()
    has_varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
    for p in params:
        if p.name not in values:
            continue
        if p.kind is p.VAR_POSITIONAL:
            args.extend(values.pop(p.name))
        elif p.kind is p.POSITIONAL_ONLY or (has_varargs and p.kind is p.POSITIONAL_OR_KEYWORD):
            args.append(values.pop(p.name))
    kwargs.update(values)  # keyword arguments, and **kwargs passed on (bootstrap's offset)
    return example.fn(*args, **kwargs)


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """Tiny valid arguments: a corpus, a 1-layer GPT and LSTM, token ids, law-shaped data.

    The data cache points into tmp, so that nothing reaches the real one.
    """
    from helpers import data

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(data.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        yield _tiny_arguments(tmp_path_factory.mktemp("runs"))


def _tiny_arguments(tmp: Path) -> SimpleNamespace:
    from helpers import data, fit, laws, lstm, model, sweep

    text = "the king is dead. long live the queen.\n" * 20
    corpus = data.Corpus("tiny", text, text, ("train",), ("val",), 2 * len(text), "tests")

    config = model.GPTConfig(vocab_size=31, n_ctx=8, n_layer=1, d_model=8, n_head=1)
    # Three IsoFLOP budgets, three sizes around each one's optimum (an interior minimum).
    flops = np.repeat([1e18, 3e18, 1e19], 3)
    n = np.asarray(laws.compute_optimal(flops, laws.HOFFMANN_PRINTED)[0]) * np.tile([0.3, 1, 3], 3)
    d = flops / (6 * n)
    loss = laws.chinchilla_loss(n, d, laws.HOFFMANN_PRINTED)
    tokens = np.geomspace(1e8, 1e10, 5)
    spec = sweep.RunSpec(config, n_tokens=32, batch_size=2, lr=1e-3, eval_tokens=16)
    res = np.zeros(3)
    return SimpleNamespace(
        corpus=corpus,
        tmp=tmp,
        config=config,
        gpt=model.GPT(config),
        lstm_config=lstm.LSTMConfig(vocab_size=31, n_ctx=8, n_layer=1, d_model=8),
        ids=np.arange(200, dtype=np.int64) % 31,
        x=torch.zeros(4, 8, dtype=torch.long),
        y=torch.ones(4, 8, dtype=torch.long),
        n=n,
        d=d,
        loss=loss,
        flops=flops,
        curves=[
            fit.TrainingCurve(m, tokens, laws.chinchilla_loss(m, tokens)) for m in (1e8, 1e9, 1e10)
        ],
        spec=spec,
        table=sweep.design_table([spec]),
        allocation_fit=fit.AllocationFit(0.5, 0.5, 0.1, 1.0, 1.0, res),
        chinchilla_fit=fit.ChinchillaFit(
            1.7, 400.0, 400.0, 0.3, 0.3, 1.0, 0.0, 1, 1, 1, 1e-3, "sum", res
        ),
        kaplan_fit=fit.KaplanFit(0.076, 0.095, 8.8e13, 5.4e13, 1.0, res),
        power_law_fit=fit.PowerLawFit(10.0, 0.1, 0.0, 1.0, res, offset=False),
    )


#: Seconds one call may take before the test fails (every call here takes < 1 s).
CALL_LIMIT_S = 20


def _too_long(signum: int, frame: Any) -> None:
    raise TimeoutError(f"the call ran for {CALL_LIMIT_S} s: was a bad value taken as a number?")


@pytest.fixture(scope="module")
def examples(fx) -> dict[str, Example]:
    return _examples(fx)


@pytest.mark.parametrize(("qualname", "param", "bad"), _cases())
def test_numeric_arguments_reject_non_numbers(examples, qualname, param, bad):
    if qualname not in WALK:
        pytest.fail(f"{qualname} is in SKIP or RECORDS but has no numeric parameter: remove it")
    if qualname not in examples:
        pytest.fail(
            f"{qualname} has numeric parameters {[p.name for p in WALK[qualname]]} but no "
            "entry in _examples (or SKIP, with a reason): add valid example arguments"
        )
    example = examples[qualname]
    if hasattr(signal, "SIGALRM"):  # a bad value taken as a number can start a long loop
        signal.signal(signal.SIGALRM, _too_long)
        signal.alarm(CALL_LIMIT_S)
    try:
        if param is None:
            if example.run:
                _call(example)
            return
        with pytest.raises(ValueError, match=rf"\b{re.escape(param)}\b") as info:
            _call(example, param, bad)
        assert "must" in str(info.value), f"the message should say what is allowed: {info.value}"
    finally:
        if hasattr(signal, "SIGALRM"):
            signal.alarm(0)
        plt.close("all")
