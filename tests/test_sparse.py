"""SparseEncoder: BM25 vectors over the model's own tokenizer pieces (issue 25, requirement 1)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import GOLDEN

from jinav3.errors import InvalidArgumentError, ModelNotFoundError
from jinav3.sparse import K1, B, SparseEncoder


@pytest.fixture(scope="module")
def sparse() -> SparseEncoder:
    return SparseEncoder.from_pretrained(GOLDEN)


def test_loads_only_the_tokenizer_without_torch():
    code = ("import sys; from jinav3.sparse import SparseEncoder; "
            f"s = SparseEncoder.from_pretrained({str(GOLDEN)!r}); s.encode_documents(['Akku']); "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_document_weights_are_bm25(sparse):
    text = "Der Akku hält lange. Der Akku lädt schnell."
    vector, = sparse.encode_documents([text])
    ids = [i for i in sparse.tokenizer.encode(text.casefold(), add_special_tokens=False).ids if i not in sparse._skip]
    tf = {i: ids.count(i) for i in set(ids)}
    norm = K1 * (1 - B + B * len(ids) / 256)
    expected = {i: n * (K1 + 1) / (n + norm) for i, n in tf.items()}
    assert vector.indices.tolist() == sorted(expected)
    np.testing.assert_allclose(vector.values, [expected[i] for i in sorted(expected)], rtol=1e-6)
    assert vector.indices.dtype == np.int64 and vector.values.dtype == np.float32


def test_term_frequency_saturates_and_long_documents_weigh_less(sparse):
    one, two, many = sparse.encode_documents(["Akku", "Akku Akku", " ".join(["Akku"] * 50)])
    term = one.indices[np.argmax(one.values)]
    weight = [v.as_dict()[int(term)] for v in (one, two, many)]
    assert weight[0] < weight[1] < weight[2] < K1 + 1  # grows with tf, never past k1 + 1
    short, long = sparse.encode_documents(["Akku.", "Akku " + " ".join(["Haus Welt Tag"] * 100)])
    assert long.as_dict()[int(term)] < short.as_dict()[int(term)]


def test_queries_weigh_each_distinct_term_once(sparse):
    query, = sparse.encode_queries(["Akku Akku Ladegerät"])
    assert np.all(query.values == 1.0) and len(set(query.indices.tolist())) == len(query)
    doc, = sparse.encode_documents(["Akku Akku Ladegerät"])
    assert query.indices.tolist() == doc.indices.tolist()


def test_special_tokens_instructions_and_punctuation_never_become_terms(sparse, golden_inputs):
    special = {sparse.tokenizer.token_to_id(t) for t in ("<s>", "</s>", "<pad>", "<unk>", "<mask>")}
    for vector in sparse.encode_documents(golden_inputs["texts"]) + sparse.encode_queries(golden_inputs["texts"]):
        assert not special & set(vector.indices.tolist())
    # no task instruction is prepended: a query's terms are its own text's
    assert sparse.terms("Akku") == sparse.terms("AKKU") == sparse.terms("akku")
    assert sparse.encode_queries(["Akku"])[0].indices.tolist() == sparse.encode_documents(["Akku"])[0].indices.tolist()
    assert sparse.terms("... !!! ,,, ") == [] and len(sparse.encode_documents(["?!"])[0]) == 0


def test_unsegmented_scripts_become_several_terms(sparse):
    for text in ("可以使用很长时间", "東京は日本の首都です"):
        assert len(sparse.terms(text)) >= 3, sparse.terms(text)


def test_bad_input_names_the_argument(sparse):
    with pytest.raises(InvalidArgumentError, match=r"^texts\[1\]:"):
        sparse.encode_documents(["ok", 3])
    with pytest.raises(InvalidArgumentError, match="^texts:"):
        sparse.encode_queries(b"bytes")
    for kwargs, argument in ((dict(k1=-1), "k1"), (dict(b=1.5), "b"), (dict(avg_length=0), "avg_length"),
                             (dict(k1=True), "k1"), (dict(b=float("nan")), "b")):
        with pytest.raises(InvalidArgumentError, match=f"^{argument}:"):
            SparseEncoder.from_pretrained(GOLDEN, **kwargs)


def test_model_not_found(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="holds no tokenizer.json"):
        SparseEncoder.from_pretrained(tmp_path)
    with pytest.raises(ModelNotFoundError, match="not a folder and not a hub repo id"):
        SparseEncoder.from_pretrained(tmp_path / "missing")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="could not get the tokenizer of 'jinaai/jina-embeddings-v3'"):
        SparseEncoder.from_pretrained("jinaai/jina-embeddings-v3", cache_dir=tmp_path, local_files_only=True)


def test_bm25_ranking_with_idf_prefers_the_rare_exact_term(sparse):
    """With the store's IDF, the document holding the rare query term ranks first."""
    docs = ["Der Akku hält lange und der Akku lädt schnell.", "ZX-4410 Akku.", "Ein Akku für das Haus.",
            "Der Akku im Garten."]
    vectors = sparse.encode_documents(docs)
    query, = sparse.encode_queries(["ZX-4410 Akku"])
    df: dict[int, int] = {}
    for v in vectors:
        for i in v.indices.tolist():
            df[i] = df.get(i, 0) + 1
    idf = {i: np.log(1 + (len(docs) - n + 0.5) / (n + 0.5)) for i, n in df.items()}
    scores = [sum(idf[i] * w for i, w in v.as_dict().items() if i in set(query.indices.tolist())) for v in vectors]
    assert int(np.argmax(scores)) == 1, scores
    assert json.dumps(vectors[1].as_dict())  # plain ints and floats
