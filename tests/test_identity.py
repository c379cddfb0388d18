"""Model identity: what vector stores record as the model, whatever way the same checkpoint is named.

Real checks on copies of the tiny golden checkpoint: every spelling of one folder, a byte-identical
copy, a copy with one tensor changed, a converted copy, a hub id (from a local hub cache), and the
old-style signatures that recorded the folder path as typed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import GOLDEN
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from jinav3 import Encoder
from jinav3.identity import CONVERTED_FROM_KEY, fingerprint, model_identity, model_label, same_model

HUB_ID = "someone/tiny-v3"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def name_of(model) -> str:
    return Encoder.from_pretrained(model, device="cpu").name


def is_fingerprint(name: str) -> bool:
    prefix, _, digits = name.partition(":")
    return prefix == "sha256" and len(digits) == 32 and all(c in "0123456789abcdef" for c in digits)


@pytest.fixture
def tiny(tmp_path) -> Path:
    """A private copy of the golden checkpoint (tests change files)."""
    return Path(shutil.copytree(GOLDEN, tmp_path / "x"))


def rewrite_weights(folder: Path, change=None) -> None:
    """Rewrite model.safetensors through safetensors.torch, with the same metadata, ``change``d."""
    file = folder / "model.safetensors"
    with safe_open(str(file), "pt") as f:
        metadata = f.metadata()
    weights = load_file(str(file))
    if change:
        change(weights)
    save_file(weights, str(file), metadata=metadata)


def header(file: Path) -> bytes:
    data = file.read_bytes()
    return data[: 8 + int.from_bytes(data[:8], "little")]


def test_every_spelling_of_one_folder_has_one_name(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(tiny, target_is_directory=True)
    copy = shutil.copytree(tiny, tmp_path / "elsewhere" / "deeper" / "y")
    names = {
        "./x/": name_of("./x/"),
        "x/.": name_of("x/."),
        "x": name_of("x"),
        "absolute str": name_of(str(tiny)),
        "absolute Path": name_of(tiny),
        "symlink": name_of("link"),
        "copy": name_of(copy),
    }
    monkeypatch.chdir(tmp_path / "elsewhere")
    names["../x from another cwd"] = name_of("../x")
    monkeypatch.setenv("HOME", str(tmp_path))
    names["~/x"] = name_of("~/x")
    assert len(set(names.values())) == 1, names
    assert is_fingerprint(names["x"])
    assert names["x"] == model_identity(GOLDEN)  # the golden folder itself, where it lives


def test_mtimes_do_not_enter(tiny):
    before = model_identity(tiny)
    for file in tiny.iterdir():
        os.utime(file, (1_000_000, 1_000_000))
    assert model_identity(tiny) == before


def test_one_changed_tensor_changes_the_name(tiny, tmp_path):
    other = Path(shutil.copytree(tiny, tmp_path / "other"))
    rewrite_weights(tiny)  # the same tensors written anew: same bytes, same name

    def perturb(weights):  # one small tensor (a LoRA of 20 values), as a retrained adapter would be
        key = "roberta.embeddings.token_type_embeddings.parametrizations.weight.0.lora_A"
        weights[key] = weights[key] + 1e-3

    rewrite_weights(other, perturb)
    assert header(tiny / "model.safetensors") == header(other / "model.safetensors")  # same shapes: only data differs
    assert name_of(tiny) == model_identity(GOLDEN)
    assert is_fingerprint(name_of(other)) and name_of(other) != name_of(tiny)


def test_config_enters_the_fingerprint(tiny):
    before = model_identity(tiny)
    config = json.loads((tiny / "config.json").read_text())
    config["rotary_emb_base"] = 1000.0  # same weights, another model
    (tiny / "config.json").write_text(json.dumps(config))
    assert model_identity(tiny) != before


def test_adapter_folders_of_the_native_layout_count(encoder, tmp_path):
    native = Path(encoder.save_pretrained(tmp_path / "native"))
    config = json.loads((native / "config.json").read_text())
    del config[CONVERTED_FROM_KEY]  # a native folder not written by us: named by its content
    (native / "config.json").write_text(json.dumps(config))
    before = model_identity(native)
    assert is_fingerprint(before) and before != encoder.name
    adapter = native / "separation" / "adapter_model.safetensors"
    weights = load_file(str(adapter))
    key = sorted(weights)[0]
    weights[key] = weights[key] * 1.01
    save_file(weights, str(adapter))
    assert model_identity(native) != before


def test_bin_weights_when_there_is_no_safetensors(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    shutil.copy(GOLDEN / "config.json", folder)
    weights = folder / "pytorch_model.bin"
    weights.write_bytes(bytes(range(256)) * 8192)  # 2 MiB: sampled, not read whole
    before = model_identity(folder)
    assert is_fingerprint(before) and before != model_identity(GOLDEN)
    data = bytearray(weights.read_bytes())
    data[0] ^= 1
    weights.write_bytes(bytes(data))
    assert model_identity(folder) != before


def test_hub_id_names_itself(tmp_path, monkeypatch):
    """A hub id is recorded as typed, however its snapshot folder (in the hub cache) is spelled."""
    import huggingface_hub.constants as constants

    repo = tmp_path / "cache" / "models--someone--tiny-v3"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    files = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
    for file in files:
        shutil.copy(GOLDEN / file, snapshot)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    encoder = Encoder.from_pretrained(HUB_ID, cache_dir=str(tmp_path / "cache"), device="cpu")
    assert encoder.name == encoder.label == HUB_ID
    assert model_identity(HUB_ID) == model_identity(HUB_ID, snapshot) == HUB_ID
    assert model_identity("jinaai/jina-embeddings-v3") == "jinaai/jina-embeddings-v3"

    converted = Encoder.from_pretrained(encoder.save_pretrained(tmp_path / "converted"), device="cpu")
    assert converted.name == HUB_ID  # a converted hub model opens the hub model's collections
    assert converted.label == str((tmp_path / "converted").resolve())


def test_a_converted_copy_has_its_sources_name(tiny, tmp_path):
    source = Encoder.from_pretrained(tiny, device="cpu")
    native = Path(source.save_pretrained(tmp_path / "native"))
    assert json.loads((native / "config.json").read_text())[CONVERTED_FROM_KEY] == source.name
    assert name_of(native) == source.name
    again = Encoder.from_pretrained(native, device="cpu").save_pretrained(tmp_path / "again")  # a copy of a copy
    assert name_of(again) == source.name
    assert same_model(str(native), source.name)  # an old signature that recorded the converted folder


def test_same_model_accepts_old_style_recorded_paths(tiny, tmp_path, monkeypatch):
    identity = model_identity(tiny)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(tiny, target_is_directory=True)
    for recorded in ["./x/", "x", str(tiny), "link", identity]:
        assert same_model(recorded, identity), recorded

    other = Path(shutil.copytree(tiny, tmp_path / "other"))
    rewrite_weights(other, lambda w: w.update({k: v + 1e-3 for k, v in w.items() if k.endswith("emb_ln.bias")}))
    assert not same_model("other", identity)  # a folder of another model
    assert not same_model("missing/folder", identity)
    assert not same_model("jinaai/jina-embeddings-v3", identity)
    assert not same_model(identity, "jinaai/jina-embeddings-v3")
    (tmp_path / "not-a-model").mkdir()
    assert not same_model("not-a-model", identity)  # no config.json: not an error, just not this model
    assert same_model("jinaai/jina-embeddings-v3", "jinaai/jina-embeddings-v3")


def test_label_is_readable(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(tiny, target_is_directory=True)
    encoder = Encoder.from_pretrained("./x/", device="cpu")
    assert encoder.label == str(tiny.resolve()) == model_label("link") == model_label(tiny)
    assert model_label(HUB_ID) == HUB_ID


def test_fingerprint_reads_samples_not_the_whole_file(tmp_path):
    """A file much larger than the 16 sampled blocks: a change inside a sampled block shows, one
    between the samples does not (the price of milliseconds on GB checkpoints; tensor heads and the
    header cover the common differences)."""
    folder = tmp_path / "big"
    folder.mkdir()
    shutil.copy(GOLDEN / "config.json", folder)
    size = 64 * 2**20
    weights = folder / "pytorch_model.bin"
    with open(weights, "wb") as f:
        f.truncate(size)  # sparse: no disk written
    before = fingerprint(folder)
    step = (size - 65536) // 15
    with open(weights, "r+b") as f:
        f.seek(step + step // 2)  # halfway between the second and third samples
        f.write(b"\x01")
    assert fingerprint(folder) == before
    with open(weights, "r+b") as f:
        f.seek(step + 10)  # inside the second sample
        f.write(b"\x01")
    assert fingerprint(folder) != before



def test_a_collection_opens_from_any_spelling_and_refuses_other_weights(tiny, tmp_path, monkeypatch):
    """End to end on Qdrant local mode: the signature records the identity, not the typed path."""
    import torch

    from jinav3.errors import SignatureMismatchError
    from jinav3.integrations.qdrant import QdrantStore

    data = tmp_path / "qdrant"
    monkeypatch.chdir(tmp_path)
    with QdrantStore(Encoder.from_pretrained("./x/", device="cpu"), collection="docs", path=str(data)) as store:
        store.add(["Aloe vera soothes skin.", "Tea came from China."])
        assert store.signature.model_label == str(tiny.resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = Encoder.from_pretrained(str(tiny), device="cpu")
    with QdrantStore(again, collection="docs", path=str(data)) as store:
        assert store.count() == 2
        best = store.search("skin", top_k=1)[0]
        expected = float(again.encode_queries("skin") @ again.encode_passages(best.text))
        assert best.score == pytest.approx(expected, abs=1e-5)
    other = Path(shutil.copytree(tiny, tmp_path / "other"))
    rewrite_weights(other, lambda w: w[next(iter(w))].add_(torch.ones_like(w[next(iter(w))])))
    with pytest.raises(SignatureMismatchError, match="model: it has 'sha256:"):
        QdrantStore(Encoder.from_pretrained(str(other), device="cpu"), collection="docs", path=str(data))


def test_old_signatures_that_recorded_the_typed_path_keep_opening(tiny, tmp_path, monkeypatch):
    """Collections written before identities recorded the folder as it was typed: they still open
    (from where that spelling reaches the folder), and other models are still refused."""
    from jinav3.errors import SignatureMismatchError
    from jinav3.integrations.qdrant import QdrantStore

    monkeypatch.chdir(tmp_path)
    encoder = Encoder.from_pretrained("x", device="cpu")
    for n, typed in enumerate(("x", "./x/", str(tiny))):
        path = str(tmp_path / f"q{n}")
        with QdrantStore(encoder, collection="old", path=path, model_name=typed) as old:  # as the old release did
            old.add(["one"])
            assert old.signature.model == typed
        with QdrantStore(encoder, collection="old", path=path) as new:
            assert new.count() == 1 and new.signature.model == encoder.name
    with pytest.raises(SignatureMismatchError, match="model: it has 'jinaai/jina-embeddings-v3'"):
        with QdrantStore(encoder, collection="hub", path=str(tmp_path / "q9"),
                         model_name="jinaai/jina-embeddings-v3") as s:
            s.add(["one"])
        QdrantStore(encoder, collection="hub", path=str(tmp_path / "q9"))
