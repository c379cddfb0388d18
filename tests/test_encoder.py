"""The core encoder against the golden outputs of the reference implementation, on both layouts."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ENCODE_CASES as CASES
from helpers import GOLDEN, NORMALIZED, RAW, golden
from safetensors.torch import load_file, save_file

from jinav3 import TASKS, Encoder, InvalidArgumentError, ModelNotFoundError
from jinav3 import encoder as encoder_module
from jinav3.errors import CheckpointFormatError

# The default task of encode() is text-matching, as in the Jina API.
ENCODE_CASES = CASES + [("encode_text-matching.npy", dict(), NORMALIZED)]


@pytest.fixture(params=["original", "native"])
def any_layout(request, encoder, native_encoder):
    return encoder if request.param == "original" else native_encoder


@pytest.mark.parametrize("file,kwargs,tol", ENCODE_CASES, ids=[c[0] + str(sorted(c[1])) for c in ENCODE_CASES])
def test_encode_matches_golden(any_layout, golden_inputs, file, kwargs, tol):
    vectors = any_layout.encode(golden_inputs["texts"], **kwargs)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, golden(file), **tol)


def test_batching_does_not_change_vectors(encoder, golden_inputs):
    texts = golden_inputs["texts"]
    one_by_one = np.stack([encoder.encode(t, task="retrieval.passage") for t in texts])
    tiny_batches = encoder.encode(texts, task="retrieval.passage", batch_size=3)
    np.testing.assert_allclose(one_by_one, golden("encode_retrieval.passage.npy"), **NORMALIZED)
    np.testing.assert_allclose(tiny_batches, golden("encode_retrieval.passage.npy"), **NORMALIZED)


def test_token_budget_batches_keep_input_order(golden_inputs):
    small_budget = Encoder.from_pretrained(GOLDEN, device="cpu", max_tokens_per_batch=64)
    vectors = small_budget.encode(golden_inputs["texts"], task="separation")
    np.testing.assert_allclose(vectors, golden("encode_separation.npy"), **NORMALIZED)


def test_query_and_passage_helpers(encoder, golden_inputs):
    texts = golden_inputs["texts"]
    np.testing.assert_allclose(encoder.encode_queries(texts), golden("encode_retrieval.query.npy"), **NORMALIZED)
    np.testing.assert_allclose(encoder.encode_passages(texts), golden("encode_retrieval.passage.npy"), **NORMALIZED)


def test_shapes(encoder):
    assert encoder.encode("one text").shape == (64,)
    assert encoder.encode(["a", "b"], dimensions=16).shape == (2, 16)
    assert encoder.encode([]).shape == (0, 64)
    assert encoder.encode([], dimensions=8).shape == (0, 8)
    assert encoder.encode(("a tuple", "works")).shape == (2, 64)


@pytest.mark.parametrize("file,case_task", [
    ("tokens_retrieval.passage_input0.npy", "retrieval.passage"),
    ("tokens_retrieval.passage_input4.npy", "retrieval.passage"),
    ("tokens_retrieval.passage_input8.npy", "retrieval.passage"),
    ("tokens_no_task_input1.npy", None),
])
def test_token_states_at_model_level(any_layout, file, case_task):
    ids = json.loads((GOLDEN / "manifest.json").read_text())["token_cases"][file]["input_ids"]
    with any_layout.adapter(case_task) as model:
        states = model(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()
    np.testing.assert_allclose(states, golden(file), **RAW)


def test_mixed_task_batch(any_layout, golden_inputs):
    """Golden: texts[0:5] without prefixes, one padded batch, per-row adapters [0, 4, 2, 1, 3]."""
    manifest = json.loads((GOLDEN / "manifest.json").read_text())
    tasks = [TASKS[i] for i in manifest["mixed_batch_tasks"]]
    texts = golden_inputs["texts"][:5]
    batch = any_layout.tokenizer(texts, padding=True, return_tensors="pt")
    rows = []
    for row, task in enumerate(tasks):  # one forward per task over the padded batch, take that task's row
        with any_layout.adapter(task) as model:
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"][row].unsqueeze(-1).float()
        rows.append((hidden[row] * mask).sum(0) / mask.sum())
    pooled = torch.nn.functional.normalize(torch.stack(rows), dim=-1).numpy()
    np.testing.assert_allclose(pooled, golden("mixed_batch.npy"), **NORMALIZED)


def test_task_list_encodes_each_text_with_its_task(encoder, golden_inputs):
    texts = golden_inputs["texts"]
    tasks = [TASKS[i % 5] for i in range(len(texts))]
    mixed = encoder.encode(texts, task=tasks)
    for i, task in enumerate(tasks):
        expected = golden(f"encode_{task}.npy")[i]
        np.testing.assert_allclose(mixed[i], expected, **NORMALIZED)


def test_task_switching_is_bit_identical(golden_inputs):
    enc = Encoder.from_pretrained(GOLDEN, device="cpu")
    texts = golden_inputs["texts"]
    with enc.adapter("retrieval.query"):
        pass
    first = enc.encode(texts, task="retrieval.query")
    weights = {n: p.clone() for n, p in enc.model.named_parameters()}
    for task in ["retrieval.passage", None, "classification", "retrieval.query", "text-matching"] * 3:
        with enc.adapter(task):  # merged for real (small encodes alone would run as corrections)
            pass
        enc.encode(texts[:2], task=task)
    with enc.adapter("retrieval.query"):
        pass
    again = enc.encode(texts, task="retrieval.query")
    assert np.array_equal(first, again)
    for name, param in enc.model.named_parameters():
        assert torch.equal(param, weights[name]), name
    np.testing.assert_allclose(enc.encode(texts, task=None), golden("encode_no_task.npy"), **NORMALIZED)


def test_a_few_tokens_of_another_task_run_on_the_resident_weights(golden_inputs):
    """A query right after passages: low-rank corrections on the merged passage weights, no re-merge,
    and the golden vectors of every task (late chunking and token states too)."""
    enc = Encoder.from_pretrained(GOLDEN, device="cpu")
    texts = golden_inputs["texts"]
    spec = json.loads((GOLDEN / "late_chunking.json").read_text())
    for resident in ["retrieval.passage", "classification", None]:
        with enc.adapter(resident):  # this task's weights merged
            pass
        merged, merges = enc.lora.active, enc.lora.merges
        for file, kwargs, tol in CASES:
            np.testing.assert_allclose(enc.encode(texts, **kwargs), golden(file), **tol)
        late = enc.encode(spec["texts"], task="retrieval.passage", late_chunking=True)
        np.testing.assert_allclose(late, golden("late_chunking_normalized.npy"), **NORMALIZED)
        states = enc.token_states(spec["long"]["input_ids"], task="retrieval.passage", window=64, overlap=16)
        np.testing.assert_allclose(states, golden("long_late_chunking_tokens.npy"), **RAW)
        assert (enc.lora.active, enc.lora.merges) == (merged, merges)  # nothing was re-merged


def test_a_large_batch_of_another_task_merges_it_once(golden_inputs, monkeypatch):
    monkeypatch.setattr(encoder_module, "CORRECTION_TOKENS", 8)  # every golden batch counts as large
    enc = Encoder.from_pretrained(GOLDEN, device="cpu")
    with enc.adapter("retrieval.passage"):
        pass
    merges = enc.lora.merges
    vectors = enc.encode(golden_inputs["texts"], task="retrieval.query")
    np.testing.assert_allclose(vectors, golden("encode_retrieval.query.npy"), **NORMALIZED)
    assert enc.lora.active == "retrieval_query" and enc.lora.merges == merges + 1


@pytest.mark.slow  # torch.compile: seconds of compilation
def test_compiled_layers_keep_golden_parity_across_task_switches(golden_inputs):
    """torch_compile=True: the compiled layers must see every task's merged weights (written in place)."""
    enc = Encoder.from_pretrained(GOLDEN, device="cpu", torch_compile=True)
    texts = golden_inputs["texts"]
    for task in ["retrieval.passage", "retrieval.query", "retrieval.passage", None]:
        want = golden("encode_no_task.npy" if task is None else f"encode_{task}.npy")
        np.testing.assert_allclose(enc.encode(texts, task=task), want, **NORMALIZED)


def test_bad_load_arguments_are_named():
    with pytest.raises(InvalidArgumentError, match="^torch_compile"):
        Encoder.from_pretrained(GOLDEN, device="cpu", torch_compile="yes")
    with pytest.raises(InvalidArgumentError, match="^max_tokens_per_batch"):
        Encoder.from_pretrained(GOLDEN, device="cpu", max_tokens_per_batch=0)


def test_threads_get_their_own_task(encoder, golden_inputs):
    texts = golden_inputs["texts"]
    results, errors = {}, []

    def work(task):
        try:
            for _ in range(5):
                results[task] = encoder.encode(texts, task=task)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(t,)) for t in TASKS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for task in TASKS:
        np.testing.assert_allclose(results[task], golden(f"encode_{task}.npy"), **NORMALIZED)


def test_native_layout_loads_in_plain_transformers_and_peft(native_dir):
    """What save_pretrained writes is a real transformers + peft checkpoint, usable without jinav3."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(native_dir)).eval()
    model.load_adapter(str(native_dir / "retrieval_passage"), adapter_name="retrieval_passage")
    model.set_adapter("retrieval_passage")
    cases = json.loads((GOLDEN / "manifest.json").read_text())["token_cases"]
    ids = cases["tokens_retrieval.passage_input0.npy"]["input_ids"]
    with torch.no_grad():
        states = model(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()
    np.testing.assert_allclose(states, golden("tokens_retrieval.passage_input0.npy"), **RAW)
    assert sorted(p.name for p in native_dir.iterdir() if p.is_dir()) == sorted(
        ["retrieval_query", "retrieval_passage", "separation", "classification", "text_matching"])


def _original_copy(tmp_path: Path, edit_config=None, edit_weights=None) -> Path:
    folder = tmp_path / "original"
    shutil.copytree(GOLDEN, folder)
    if edit_config:
        config = json.loads((folder / "config.json").read_text())
        edit_config(config)
        (folder / "config.json").write_text(json.dumps(config))
    if edit_weights:
        weights = load_file(str(folder / "model.safetensors"))
        save_file(edit_weights(weights), str(folder / "model.safetensors"))
    return folder


def test_rotary_base_is_read_from_the_config(tmp_path, golden_inputs):
    """The native config ignores rotary_emb_base; a missed conversion passes on 20000 only."""
    folder = _original_copy(tmp_path, edit_config=lambda c: c.update(rotary_emb_base=1000.0))
    enc = Encoder.from_pretrained(folder, device="cpu")
    assert enc.model.config.rope_parameters["rope_theta"] == 1000.0
    other = enc.encode(golden_inputs["texts"], task="retrieval.query")
    assert not np.allclose(other, golden("encode_retrieval.query.npy"), atol=1e-3)
    saved = Encoder.from_pretrained(enc.save_pretrained(tmp_path / "native"), device="cpu")
    assert saved.model.config.rope_parameters["rope_theta"] == 1000.0
    np.testing.assert_allclose(saved.encode(golden_inputs["texts"], task="retrieval.query"), other, **NORMALIZED)


def test_checkpoint_without_pooler_keys(tmp_path, golden_inputs):
    folder = _original_copy(tmp_path, edit_weights=lambda w: {k: v for k, v in w.items() if ".pooler." not in k})
    enc = Encoder.from_pretrained(folder, device="cpu")
    np.testing.assert_allclose(enc.encode(golden_inputs["texts"], task="separation"), golden("encode_separation.npy"),
                               **NORMALIZED)


def test_bfloat16_checkpoint_loads(tmp_path, golden_inputs):
    folder = _original_copy(tmp_path, edit_weights=lambda w: {k: v.to(torch.bfloat16) for k, v in w.items()})
    enc = Encoder.from_pretrained(folder, device="cpu")
    assert enc.dtype == torch.float32
    vectors = enc.encode(golden_inputs["texts"], task="retrieval.passage")
    cosine = (vectors * golden("encode_retrieval.passage.npy")).sum(-1)
    assert cosine.min() > 0.99  # bf16-rounded weights: close, not equal


def test_bfloat16_compute_on_cpu(golden_inputs):
    enc = Encoder.from_pretrained(GOLDEN, device="cpu", dtype="bfloat16")
    vectors = enc.encode(golden_inputs["texts"], task="retrieval.query")
    assert vectors.dtype == np.float32
    assert (vectors * golden("encode_retrieval.query.npy")).sum(-1).min() > 0.98


@pytest.mark.parametrize("kwargs,argument", [
    (dict(task="retrieval"), "task"),
    (dict(task=["retrieval.query"]), "task"),
    (dict(dimensions=0), "dimensions"),
    (dict(dimensions=65), "dimensions"),
    (dict(dimensions=2.5), "dimensions"),
    (dict(max_length=1), "max_length"),
    (dict(max_length=10_000), "max_length"),
    (dict(batch_size=0), "batch_size"),
    (dict(window=64), "window"),
])
def test_bad_arguments_are_named(encoder, kwargs, argument):
    with pytest.raises(InvalidArgumentError, match=rf"^{argument}"):
        encoder.encode(["one", "two"], **kwargs)


def test_unknown_task_lists_the_five(encoder):
    with pytest.raises(ValueError) as info:
        encoder.encode("x", task="query")
    for task in TASKS:
        assert task in str(info.value)


def test_non_str_item_is_named_by_index(encoder):
    with pytest.raises(InvalidArgumentError, match=r"texts\[2\]"):
        encoder.encode(["a", "b", 3])
    with pytest.raises(InvalidArgumentError, match="texts"):
        encoder.encode(42)


def test_missing_model_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError) as info:
        Encoder.from_pretrained("jinaai/no-such-model", cache_dir=str(tmp_path))
    message = str(info.value)
    assert "jinaai/no-such-model" in message and str(tmp_path) in message and "local folder" in message
    with pytest.raises(ModelNotFoundError, match="not a folder"):
        Encoder.from_pretrained(str(tmp_path / "missing" / "dir"))


def test_folder_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointFormatError, match="model_type"):
        Encoder.from_pretrained(tmp_path, device="cpu")


def test_a_converted_copy_keeps_the_model_name(encoder, native_encoder, native_dir):
    """Stores record the model name in their signature: a converted copy must not look like another model."""
    assert encoder.name.startswith("sha256:")  # a local folder is named by its content, not its path
    assert native_encoder.name == encoder.name
    assert json.loads((native_dir / "config.json").read_text())["jinav3_converted_from"] == encoder.name
    assert native_encoder.label == str(native_dir.resolve())


# ------------------------------------------------------------------------------------------- clean errors
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda")])
def test_cuda_without_cuda_is_a_named_error(device):
    with pytest.raises(InvalidArgumentError, match="^device") as info:
        Encoder.from_pretrained(GOLDEN, device=device)
    assert "CUDA is not available" in str(info.value) and "'cpu'" in str(info.value)


def test_cuda_index_beyond_the_visible_gpus(monkeypatch):
    """Pretend a one-GPU machine (no model is loaded: pick_device refuses before anything is moved)."""
    from jinav3.devices import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(InvalidArgumentError, match=r"^device: 'cuda:1': no such GPU, 1 CUDA device"):
        pick_device("cuda:1")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="checks a machine without MPS")
def test_mps_without_mps_is_a_named_error():
    with pytest.raises(InvalidArgumentError, match="^device: 'mps': MPS"):
        Encoder.from_pretrained(GOLDEN, device="mps")


def test_auto_device_still_picks_one():
    from jinav3.devices import pick_device

    assert pick_device("auto").type in ("cuda", "mps", "cpu")
    assert pick_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("task,argument", [
    (5, "task"), (2.5, "task"), (b"separation", "task"), ({"separation"}, "task"),
    (["separation", 7], r"task\[1\]"), (["separation", None, ["text-matching"]], r"task\[2\]"),
])
def test_task_that_is_not_a_name_lists_the_five(encoder, task, argument):
    with pytest.raises(InvalidArgumentError, match=rf"^{argument}") as info:
        encoder.encode(["a", "b", "c"][: len(task) if isinstance(task, list) else 2], task=task)
    for name in TASKS:
        assert name in str(info.value)


def test_task_that_is_not_a_name_in_late_chunk(encoder):
    with pytest.raises(InvalidArgumentError, match="^task"):
        encoder.late_chunk("a. b.", task=3)


@pytest.mark.parametrize("call,argument", [
    (lambda e: e.encode("abc\ud800"), "texts"),
    (lambda e: e.encode(["ok", "fine", "x", "abc\udfff def"]), r"texts\[3\]"),
    (lambda e: e.encode(["ok", "x\ud800"], late_chunking=True), r"texts\[1\]"),
    (lambda e: e.encode_queries(["x\ud83d"]), r"texts\[0\]"),
    (lambda e: e.late_chunk("one. two\ud800."), "document"),
    (lambda e: e.late_chunk_documents(["fine", "bad\udc00"]), r"documents\[1\]"),
])
def test_lone_surrogate_is_named_before_any_work(encoder, call, argument):
    message = rf"^{argument}: contains a lone surrogate \(U\+D[89A-F][0-9A-F]{{2}}\)"
    with pytest.raises(InvalidArgumentError, match=message):
        call(encoder)


def test_valid_astral_text_is_not_a_surrogate(encoder):
    assert encoder.encode(["emoji \U0001F600 fine"]).shape == (1, 64)  # a real pair, written as one code point


@pytest.mark.parametrize("kwargs", [
    dict(max_length=np.int64(8)), dict(batch_size=np.int64(2)), dict(dimensions=np.int32(16)),
    dict(normalize=np.bool_(False)), dict(late_chunking=np.bool_(True), window=np.int64(16), overlap=np.int64(4)),
])
def test_numpy_scalars_are_accepted(encoder, golden_inputs, kwargs):
    texts = golden_inputs["texts"][:3]
    plain = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in kwargs.items()}
    np.testing.assert_array_equal(encoder.encode(texts, **kwargs), encoder.encode(texts, **plain))


def test_numpy_scalars_in_late_chunk_and_loading(encoder, golden_inputs):
    document = " ".join(golden_inputs["texts"])
    want = encoder.late_chunk(document, chunker="tokens", chunk_size=8, window=32, overlap=8)
    got = encoder.late_chunk(document, chunker="tokens", chunk_size=np.int64(8), window=np.int64(32),
                             overlap=np.int64(8))
    assert [c.text for c in got] == [c.text for c in want]
    np.testing.assert_array_equal(np.stack([c.embedding for c in got]), np.stack([c.embedding for c in want]))
    small = Encoder.from_pretrained(GOLDEN, device="cpu", max_tokens_per_batch=np.int64(64))
    assert small.max_tokens_per_batch == 64 and type(small.max_tokens_per_batch) is int


@pytest.mark.parametrize("kwargs,argument,message", [
    (dict(max_length=True), "max_length", "must be an integer from 2 to"),
    (dict(max_length=8.0), "max_length", "must be an integer from 2 to"),
    (dict(batch_size=True), "batch_size", "must be a positive integer or None, got True"),
    (dict(batch_size=np.float64(2)), "batch_size", "must be a positive integer"),
    (dict(batch_size=-1), "batch_size", "must be a positive integer"),
    (dict(dimensions=True), "dimensions", "must be an integer from 1 to 64"),
    (dict(normalize="yes"), "normalize", "must be True or False"),
    (dict(normalize=1), "normalize", "must be True or False"),
    (dict(late_chunking="no"), "late_chunking", "must be True or False"),
    (dict(late_chunking=True, window=0), "window", "must be an integer from 2 to"),
    (dict(late_chunking=True, window=16, overlap=16), "overlap", r"must be an integer from 0 to 15 \(window - 1\)"),
    (dict(late_chunking=True, window="16"), "window", "must be an integer"),
])
def test_bad_numbers_and_flags_are_named(encoder, kwargs, argument, message):
    with pytest.raises(InvalidArgumentError, match=rf"^{argument}: {message}"):
        encoder.encode(["one", "two"], **kwargs)


@pytest.mark.parametrize("kwargs,argument", [
    (dict(chunker="tokens", chunk_size=np.float64(8)), "chunk_size"),
    (dict(chunker="tokens", chunk_size=True), "chunk_size"),
    (dict(chunker="words"), "chunker"),
    (dict(chunker=["not", "spans"]), r"chunker\[0\]"),
    (dict(normalize=None), "normalize"),
    (dict(dimensions="8"), "dimensions"),
])
def test_bad_late_chunk_arguments_are_named(encoder, kwargs, argument):
    with pytest.raises(InvalidArgumentError, match=rf"^{argument}"):
        encoder.late_chunk("one. two.", **kwargs)


def test_bad_token_ids_are_named(encoder):
    with pytest.raises(InvalidArgumentError, match=r"^input_ids\[1\]: must be an integer from 0 to"):
        encoder.token_states([0, 10**9, 2])
    with pytest.raises(InvalidArgumentError, match=r"^input_ids\[0\]"):
        encoder.token_states(["5"])


@pytest.mark.parametrize("kwargs,argument", [
    (dict(max_tokens_per_batch=True), "max_tokens_per_batch"),
    (dict(max_tokens_per_batch=2.0), "max_tokens_per_batch"),
    (dict(torch_compile=1), "torch_compile"),
    (dict(packed="no"), "packed"),
    (dict(dtype="int8"), "dtype"),
    (dict(dtype=["float32"]), "dtype"),
])
def test_bad_load_options_are_named(kwargs, argument):
    with pytest.raises(InvalidArgumentError, match=rf"^{argument}"):
        Encoder.from_pretrained(GOLDEN, device="cpu", **kwargs)


def test_the_argument_checks_themselves():
    from jinav3.validation import boolean, choice, int_in_range, positive_int

    assert positive_int(np.int64(3), "n") == 3 and type(positive_int(np.uint8(3), "n")) is int
    assert positive_int(None, "n", allow_none=True) is None
    for bad in (0, -2, True, np.bool_(True), 1.0, "1", None):
        with pytest.raises(InvalidArgumentError, match=r"^n: must be a positive integer, got"):
            positive_int(bad, "n")
    assert int_in_range(np.int16(5), "k", 5, 5) == 5
    with pytest.raises(InvalidArgumentError, match=r"^k: must be an integer from 1 to 4 \(or None\), got 5$"):
        int_in_range(5, "k", 1, 4, allow_none=True)
    assert boolean(np.bool_(True), "flag") is True
    with pytest.raises(InvalidArgumentError, match="^flag: must be True or False, got 0$"):
        boolean(0, "flag")
    assert choice("a", "mode", ("a", "b")) == "a"
    with pytest.raises(InvalidArgumentError, match=r"^mode: must be one of 'a', 'b' or a list, got \['a'\]$"):
        choice(["a"], "mode", ("a", "b"), alternative="a list")


def test_a_loaded_checkpoint_belongs_to_one_encoder(encoder):
    """A second Encoder on the same model would snapshot merged weights as pristine and hook the
    embeddings twice (vectors drift): refused."""
    from jinav3 import Encoder

    with pytest.raises(InvalidArgumentError, match="^checkpoint: its model already belongs to an Encoder"):
        Encoder(encoder.checkpoint, encoder.device)
    np.testing.assert_allclose(encoder.encode(["still exact"]), encoder.encode(["still exact"]), atol=0)


def test_public_surface():
    import jinav3

    for name in ("Encoder", "Chunk", "TextEncoder", "__version__"):
        assert name in jinav3.__all__ and getattr(jinav3, name) is not None
    from importlib.metadata import version

    assert jinav3.__version__ == version("jinav3")
