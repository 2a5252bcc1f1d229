"""Pluggable text embeddings: a fast deterministic hashing default and a name-based factory."""

from __future__ import annotations

import hashlib
import importlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise

import numpy as np
from langchain_core.embeddings import Embeddings

from memory.contract import MemoryContractError

__all__ = [
    "DEFAULT_EMBEDDINGS",
    "EMBEDDER_NAMES",
    "HashingEmbedder",
    "embedder_from_name",
    "embedding_dims",
]

EMBEDDER_NAMES = ("hashing", "minilm")
_WORD = re.compile(r"\w+")
# Words outweigh their fragments so shared words drive similarity; trigrams add robustness
# to inflections and typos, bigrams reward shared phrases.
_WORD_WEIGHT = 1.0
_BIGRAM_WEIGHT = 0.7
_TRIGRAM_WEIGHT = 0.3
_PERSON = b"bastion-hash-v1"  # domain separation: a new scheme gets a new salt, not old vectors


def _bucket(feature: str, dims: int) -> tuple[int, float]:
    """Stable (bucket, sign) of one feature: blake2b, so equal in every process and run."""
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8, person=_PERSON).digest()
    value = int.from_bytes(digest, "little")
    return (value >> 1) % dims, 1.0 if value & 1 else -1.0


@lru_cache(maxsize=1 << 16)
def _word_features(word: str, dims: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Buckets and signed weights of a word and its character 3-grams (cached: words repeat)."""
    grams = [f"w:{word}"]
    padded = f"<{word}>"
    grams += [f"c:{padded[i : i + 3]}" for i in range(len(padded) - 2)]
    cols: list[int] = []
    vals: list[float] = []
    for position, gram in enumerate(grams):
        col, sign = _bucket(gram, dims)
        cols.append(col)
        vals.append(sign * (_WORD_WEIGHT if position == 0 else _TRIGRAM_WEIGHT))
    return tuple(cols), tuple(vals)


@lru_cache(maxsize=1 << 17)
def _bigram_feature(pair: str, dims: int) -> tuple[int, float]:
    """Bucket and signed weight of a word bigram (`"a b"`)."""
    col, sign = _bucket(f"b:{pair}", dims)
    return col, sign * _BIGRAM_WEIGHT


class HashingEmbedder(Embeddings):
    """Feature-hashing embeddings: no model, no download, same text → same vector everywhere.

    Features are lowercase word unigrams, word bigrams and character 3-grams of each word
    (padded with `<` `>`), hashed with blake2b into `dims` signed buckets. Repeated words and
    bigrams count sublinearly (`1 + ln(tf)`). Rows are L2-normalised float32, so the dot product
    is the cosine. Texts sharing words score higher than unrelated ones; there is no semantics
    beyond surface overlap (use `MiniLMEmbedder` for paraphrases).

    A text with no word characters (`""`, `"?!"`) embeds to the zero vector: it matches nothing.
    """

    def __init__(self, dims: int = 384) -> None:
        """Create an embedder.

        Args:
            dims: Vector length; more buckets mean fewer collisions. At least 8.
        """
        if not isinstance(dims, int) or isinstance(dims, bool) or dims < 8:
            raise MemoryContractError(
                f"`dims` must be an int ≥ 8, got {dims!r}; 384 is the default"
            )
        self.dims = dims

    def __repr__(self) -> str:
        return f"HashingEmbedder(dims={self.dims})"

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        """Embed many texts at once (the fast path).

        Args:
            texts: Texts to embed.

        Returns:
            A `(len(texts), dims)` float32 array of L2-normalised rows (zero rows for empty texts).
        """
        dims = self.dims
        cols: list[int] = []
        vals: list[float] = []
        lengths: list[int] = []
        for text in texts:
            before = len(cols)
            self._text_features(text, cols, vals, dims)
            lengths.append(len(cols) - before)
        rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        flat = rows * dims + np.asarray(cols, dtype=np.int64)
        summed = np.bincount(flat, weights=np.asarray(vals), minlength=len(lengths) * dims)
        # bincount of nothing (only empty texts) is integer; the division below needs floats
        out = summed.astype(np.float64, copy=False).reshape(len(lengths), dims)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out.astype(np.float32)

    @staticmethod
    def _text_features(text: str, cols: list[int], vals: list[float], dims: int) -> None:
        """Append the buckets and weights of one text's features to `cols` / `vals`."""
        words = _WORD.findall(text.lower())
        for word, count in Counter(words).items():
            word_cols, word_vals = _word_features(word, dims)
            cols.extend(word_cols)
            if count == 1:
                vals.extend(word_vals)
            else:
                tf = 1.0 + math.log(count)
                vals.extend([value * tf for value in word_vals])
        pairs = Counter(f"{a} {b}" for a, b in pairwise(words))
        for pair, count in pairs.items():
            col, value = _bigram_feature(pair, dims)
            cols.append(col)
            vals.append(value if count == 1 else value * (1.0 + math.log(count)))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (LangChain `Embeddings` API)."""
        return self.embed_array(texts).tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        """Embed a query; identical to a document embedding of the same text."""
        return self.embed_array([text])[0].tolist()  # type: ignore[no-any-return]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents; inline, since hashing is cheaper than a thread hop."""
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Embed a query; inline, since hashing is cheaper than a thread hop."""
        return self.embed_query(text)


def embedder_from_name(name: str, *, dims: int = 384) -> Embeddings:
    """Build an embedder from a settings value.

    Args:
        name: `hashing` (default, no download), `minilm` (all-MiniLM-L6-v2 offline, 384 dims), or
            `package.module:attr` naming a LangChain `Embeddings` class or factory, called with
            no arguments.
        dims: Vector length for `hashing`; `minilm` only accepts 384.

    Returns:
        The embedder.

    Raises:
        MemoryContractError: Unknown name, import failure, or a factory that does not return
            an `Embeddings`; the message says what to fix.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key == "hashing":
        return HashingEmbedder(dims=dims)
    if key == "minilm":
        from memory.minilm import MINILM_DIMS, MiniLMEmbedder

        if dims != MINILM_DIMS:
            raise MemoryContractError(
                f"embedder `minilm` makes {MINILM_DIMS}-dim vectors, asked for dims={dims}; "
                f"set dims to {MINILM_DIMS} or use `hashing`"
            )
        return MiniLMEmbedder()
    if isinstance(name, str) and ":" in name:
        return _import_embedder(name.strip())
    raise MemoryContractError(
        f"unknown embedder {name!r}; expected one of {', '.join(f'`{n}`' for n in EMBEDDER_NAMES)}"
        " or `package.module:attr` naming a LangChain Embeddings class or factory"
    )


def _import_embedder(spec: str) -> Embeddings:
    """Import `module:attr`, call it with no arguments and check it is an `Embeddings`."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise MemoryContractError(
            f"embedder {spec!r} is not `package.module:attr`; write e.g. `my_pkg.embed:make`"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise MemoryContractError(
            f"embedder {spec!r}: cannot import module `{module_name}` ({error}); install it or "
            "put it on PYTHONPATH"
        ) from error
    factory = module
    for part in attr.split("."):
        try:
            factory = getattr(factory, part)
        except AttributeError:
            raise MemoryContractError(
                f"embedder {spec!r}: module `{module_name}` has no attribute `{attr}`; "
                "check the name after the colon"
            ) from None
    if not callable(factory):
        raise MemoryContractError(
            f"embedder {spec!r}: `{attr}` is a {type(factory).__name__}, not a class or factory"
        )
    try:
        embedder = factory()
    except Exception as error:
        raise MemoryContractError(
            f"embedder {spec!r}: calling `{attr}()` failed ({type(error).__name__}: {error}); "
            "point at a class or factory that takes no arguments"
        ) from error
    if not isinstance(embedder, Embeddings):
        raise MemoryContractError(
            f"embedder {spec!r}: `{attr}()` returned a {type(embedder).__name__}, not a "
            "langchain_core.embeddings.Embeddings; return an Embeddings instance"
        )
    return embedder


def embedding_dims(embedder: Embeddings) -> int:
    """Vector length of an embedder: its `dims` attribute, else the length of a probe vector."""
    dims = getattr(embedder, "dims", None)
    if isinstance(dims, int) and not isinstance(dims, bool) and dims > 0:
        return dims
    return len(embedder.embed_query("dims probe"))


DEFAULT_EMBEDDINGS = HashingEmbedder()
"""The default embedder as an instance: what `langgraph.json` names for the server's store
(`"embed": "./memory/embeddings.py:DEFAULT_EMBEDDINGS"`), so its semantic search runs offline."""
