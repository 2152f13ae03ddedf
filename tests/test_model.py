"""Tests of helpers.model: the GPT, its parameter count, the ladder, and transformers interop."""

from __future__ import annotations

import math

import pytest
import torch

from helpers.model import (
    GPT,
    GPTConfig,
    count_params,
    default_ladder,
    from_hf,
    init_std,
    kaplan_params,
    ladder,
    save_pretrained,
    to_hf,
)

torch.set_num_threads(1)

TINY = GPTConfig(vocab_size=40, n_ctx=16, n_layer=2, d_model=32, n_head=2)


def tiny_batch(config: GPTConfig, batch: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(config.vocab_size, (batch, config.n_ctx), generator=g)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("field", ["vocab_size", "n_ctx", "n_layer", "d_model", "n_head"])
@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_config_rejects_bad_sizes(field: str, value: object) -> None:
    kwargs = dict(vocab_size=40, n_ctx=16, n_layer=2, d_model=32, n_head=2)
    kwargs[field] = value
    with pytest.raises(ValueError, match=field):
        GPTConfig(**kwargs)


def test_config_rejects_d_model_not_divisible_by_n_head() -> None:
    with pytest.raises(ValueError, match=r"d_model.*n_head"):
        GPTConfig(vocab_size=40, n_ctx=16, n_layer=2, d_model=30, n_head=4)


# ----------------------------------------------------------------------------- model


def test_forward_shapes_and_initial_loss() -> None:
    model = GPT(TINY, seed=0)
    idx, targets = tiny_batch(TINY, seed=1), tiny_batch(TINY, seed=2)
    logits, loss = model(idx, targets)
    assert logits.shape == (2, TINY.n_ctx, TINY.vocab_size)
    # Small random logits: a near-uniform guess. With tied embeddings each logit has variance
    # d_model · init_std² = 0.4, which adds about half of that to ln(vocab) on random targets.
    spread = TINY.d_model * init_std(TINY.d_model) ** 2
    assert spread == pytest.approx(0.4)
    assert loss.item() == pytest.approx(math.log(TINY.vocab_size) + spread / 2, abs=0.15)
    assert model(idx)[1] is None


def test_forward_is_causal() -> None:
    model = GPT(TINY, seed=0)
    idx = tiny_batch(TINY, batch=1)
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1) % TINY.vocab_size
    with torch.no_grad():
        a, b = model(idx)[0], model(changed)[0]
    assert torch.equal(a[:, :-1], b[:, :-1])
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_forward_rejects_too_long_input() -> None:
    model = GPT(TINY)
    with pytest.raises(ValueError, match="n_ctx"):
        model(torch.zeros(1, TINY.n_ctx + 1, dtype=torch.long))


def test_init_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = GPT(TINY, seed=7), GPT(TINY, seed=7), GPT(TINY, seed=8)
    assert torch.equal(torch.get_rng_state(), before)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.transformer.wte.weight, c.transformer.wte.weight)
    with pytest.raises(ValueError, match="seed"):
        GPT(TINY, seed=-1)


def test_init_std_is_small_init_and_near_gpt2_at_its_width() -> None:
    assert init_std(640) == pytest.approx(math.sqrt(2 / 3200))
    assert init_std(768) == pytest.approx(0.0228, abs=1e-4)  # GPT-2 small: 0.02
    assert init_std(24) / init_std(96) == pytest.approx(2.0)
    for bad in (0, -3, 2.5, "24"):
        with pytest.raises(ValueError, match="d_model"):
            init_std(bad)


def test_init_follows_the_rule() -> None:
    config = GPTConfig(vocab_size=40, n_ctx=16, n_layer=4, d_model=128, n_head=4)
    model = GPT(config)
    block = model.transformer.h[0]
    std = init_std(128)
    assert block.attn.c_attn.weight.std().item() == pytest.approx(std, rel=0.05)
    assert block.mlp.c_proj.weight.std().item() == pytest.approx(std / math.sqrt(8), rel=0.05)
    assert model.transformer.wte.weight.std().item() == pytest.approx(std, rel=0.05)
    assert to_hf(model).config.initializer_range == pytest.approx(std)
    assert block.attn.c_proj.bias.abs().max().item() == 0.0
    assert torch.equal(block.ln_1.weight, torch.ones(128))
    assert model.lm_head.weight is model.transformer.wte.weight  # tied
    assert block.ln_1.eps == 1e-5
    assert isinstance(block.mlp.gelu, torch.nn.GELU) and block.mlp.gelu.approximate == "tanh"


# ----------------------------------------------------------------------------- counting


def test_count_params_by_hand() -> None:
    # One block of width 16: 12·256 + 13·16 = 3280; final LayerNorm 32; embeddings (40+16)·16.
    config = GPTConfig(vocab_size=40, n_ctx=16, n_layer=1, d_model=16, n_head=1)
    assert count_params(config) == (3280 + 32 + 56 * 16, 3280 + 32)
    assert kaplan_params(1, 16) == 3072
    with pytest.raises(ValueError, match="d_model"):
        kaplan_params(2, 0)
    with pytest.raises(ValueError, match="config"):
        count_params((2, 16))  # type: ignore[arg-type]


@pytest.mark.parametrize("config", default_ladder() + [TINY], ids=str)
def test_count_params_matches_torch_and_transformers(config: GPTConfig) -> None:
    from transformers import GPT2LMHeadModel

    from helpers.model import _hf_config

    total, non_embedding = count_params(config)
    model = GPT(config)
    assert sum(p.numel() for p in model.parameters()) == total
    embeddings = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    assert total - embeddings == non_embedding
    with torch.device("meta"):  # shapes only: no memory, no random init
        hf = GPT2LMHeadModel(_hf_config(config))
    assert hf.num_parameters() == total
    assert abs(kaplan_params(config.n_layer, config.d_model) / non_embedding - 1) < 0.1


# ----------------------------------------------------------------------------- ladder


def test_ladder_follows_its_rule() -> None:
    for target in (2e4, 3e5, 1e6):
        config = ladder(target, vocab_size=50, n_ctx=32, head_dim=16)
        _, n = count_params(config)
        assert 8 <= config.d_model / config.n_layer <= 64
        assert config.d_model % 16 == 0 and config.n_head == config.d_model // 16
        assert config.n_layer >= 2
        assert abs(math.log(n / target)) < math.log(1.6)
        assert (config.vocab_size, config.n_ctx) == (50, 32)
    # With no weight on shape, the count is matched as closely as the grid allows.
    config = ladder(2e5, shape_weight=0.0)
    assert count_params(config)[1] == 200_064  # n_layer 4, d_model 64


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n_params_target=0), "n_params_target"),
        (dict(n_params_target=-5e4), "n_params_target"),
        (dict(n_params_target=float("nan")), "n_params_target"),
        (dict(n_params_target=100), "n_params_target"),  # below the smallest shape
        (dict(n_params_target=1e5, head_dim=0), "head_dim"),
        (dict(n_params_target=1e5, vocab_size=0), "vocab_size"),
        (dict(n_params_target=1e5, n_ctx=-1), "n_ctx"),
        (dict(n_params_target=1e5, aspect=100.0), "aspect"),
        (dict(n_params_target=1e5, aspect_range=(8.0,)), "aspect_range"),
        (dict(n_params_target=1e5, shape_weight=-1.0), "shape_weight"),
        (dict(n_params_target=1e5, min_layers=0), "min_layers"),
    ],
)
def test_ladder_rejects_bad_input(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ladder(**kwargs)


def test_default_ladder_spans_laptop_sizes() -> None:
    configs = default_ladder()
    counts = [count_params(c)[1] for c in configs]
    assert 6 <= len(configs) <= 8
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    assert 5e3 <= counts[0] <= 1e4 and 1e6 <= counts[-1] <= 2e6
    assert counts[-1] / counts[0] >= 30
    assert all(c.vocab_size == 86 and c.n_ctx == 64 for c in configs)
    assert default_ladder(3, 1e4, 1e5, vocab_size=100, n_ctx=128)[0].n_ctx == 128
    with pytest.raises(ValueError, match="n_max"):
        default_ladder(n_min=1e6, n_max=1e4)
    with pytest.raises(ValueError, match="n_sizes"):
        default_ladder(n_sizes=0)


# ----------------------------------------------------------------------------- transformers


def test_to_hf_gives_the_same_logits_and_from_hf_inverts_it() -> None:
    model = GPT(TINY, seed=3).eval()
    idx = tiny_batch(TINY)
    hf = to_hf(model)
    with torch.no_grad():
        ours = model(idx)[0]
        theirs = hf(idx).logits
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert hf.config.activation_function == "gelu_new" and hf.config.n_positions == TINY.n_ctx
    back = from_hf(hf)
    assert back.config == TINY
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="model"):
        to_hf(hf)
    with pytest.raises(ValueError, match="hf_model"):
        from_hf(model)


def test_save_pretrained_round_trip_and_generate(tmp_path) -> None:
    from tokenizers import Tokenizer, models, trainers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    trainer = trainers.BpeTrainer(vocab_size=TINY.vocab_size, special_tokens=["[UNK]"])
    tokenizer.train_from_iterator(["to be or not to be, that is the question"] * 3, trainer)
    model = GPT(TINY, seed=4).eval()

    path = save_pretrained(model, tokenizer, tmp_path / "tiny")
    assert (path / "model.safetensors").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(path).eval()
    hf_tokenizer = AutoTokenizer.from_pretrained(path)
    ids = hf_tokenizer("to be or", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ours = model(ids)[0]
        assert torch.allclose(ours, loaded(ids).logits, atol=1e-5)
        out = loaded.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert out.shape == (1, ids.shape[1] + 5)
    assert torch.equal(out[0, : ids.shape[1]], ids[0])
    assert out[0, ids.shape[1]].item() == ours[0, -1].argmax().item()  # greedy = our argmax
    for a, b in zip(model.parameters(), from_hf(loaded).parameters(), strict=True):
        assert torch.equal(a, b)

    with pytest.raises(ValueError, match="tokenizer"):
        save_pretrained(model, object(), tmp_path / "bad")
    with pytest.raises(ValueError, match="path"):
        save_pretrained(model, None, "")
