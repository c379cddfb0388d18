"""The store registry (issue 24): every registered kind is complete (its classes, its extra, its contract tests),
and store URIs are parsed and refused from the registry alone."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import pytest
import tomllib

from jinav3.errors import InvalidArgumentError
from jinav3.integrations.stores.base import Collection
from jinav3.integrations.stores.limits import RecordLimits
from jinav3.integrations.stores.registry import STORES, store_forms
from jinav3.integrations.stores.uri import parse_store, with_credentials
from jinav3.integrations.stores.vector_store import VectorStore

ROOT = Path(__file__).resolve().parent.parent
KINDS = sorted(STORES)


@pytest.mark.parametrize("scheme", KINDS)
def test_a_registered_kind_has_its_classes_and_its_extra(scheme):
    kind = STORES[scheme]
    store, collection = kind.load(), kind.load_collection()
    assert issubclass(store, VectorStore) and issubclass(store, collection) and issubclass(collection, Collection)
    assert collection.kind == kind.title
    for hook in ("connection", "names_there"):  # how the registry opens it and lists what is there
        assert getattr(collection, hook).__func__ is not getattr(Collection, hook).__func__, hook
    assert kind.container in inspect.signature(collection.__init__).parameters  # --collection's argument
    assert isinstance(collection.record_limits(), RecordLimits)  # limits without a connection
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    everything = extras["all"][0].partition("[")[2].rstrip("]").split(",")  # jinav3[qdrant,milvus,...]
    assert kind.extra in extras and kind.extra in everything, kind.extra


@pytest.mark.parametrize("scheme", KINDS)
def test_a_registered_kind_runs_the_store_contract(scheme):
    """Every kind in the registry has a test module whose class runs the whole StoreContract on it."""
    module = importlib.import_module(f"test_{scheme}_store")
    from test_store_common import StoreContract

    contracts = [obj for obj in vars(module).values()
                 if inspect.isclass(obj) and issubclass(obj, StoreContract) and obj is not StoreContract]
    assert contracts, f"tests/test_{scheme}_store.py runs no StoreContract"
    assert getattr(module, "SCHEME", None) == scheme


@pytest.mark.parametrize("scheme", KINDS)
def test_every_form_of_a_kind_parses(scheme):
    kind = STORES[scheme]
    if kind.embedded:
        local = parse_store(f"{scheme}:./data/x{kind.embedded_suffix or ''}")
        assert (local.scheme, local.mode, local.target) == (scheme, "local", f"./data/x{kind.embedded_suffix or ''}")
    if kind.servers:
        server = parse_store(f"{scheme}+https://u:secret@host:1234")
        assert (server.mode, server.target, server.user_info) == ("server", "https://host:1234", "u:secret")
        assert "secret" not in repr(server) and "secret" not in server.place("docs")
    if kind.hosted:
        hosted = parse_store(f"{scheme}:my-index")
        assert (hosted.mode, hosted.target) == ("index", "my-index")
    assert set(kind.forms) <= set(store_forms().replace(" or ", ", ").split(", "))


@pytest.mark.parametrize("uri", ["nosuchstore:./x", "qdrant", "qdrant+ftp://h:1", "pinecone+http://h:1"])
def test_a_bad_uri_names_the_argument_and_every_form(uri):
    with pytest.raises(InvalidArgumentError) as refused:
        parse_store(uri)
    assert str(refused.value).startswith("store: ") and store_forms() in str(refused.value)


def test_a_kind_that_needs_a_key_refuses_without_one(monkeypatch):
    for scheme, kind in STORES.items():
        if kind.key_variable:
            monkeypatch.delenv(kind.key_variable, raising=False)
            with pytest.raises(InvalidArgumentError, match=kind.key_variable):
                with_credentials(parse_store(f"{scheme}:idx"), None)
            monkeypatch.setenv(kind.key_variable, "k")
            assert with_credentials(parse_store(f"{scheme}:idx"), None).api_key == "k"


def test_the_registry_imports_no_client():
    """Reading the registry and parsing URIs imports no store client (jinav3 --help stays fast)."""
    import subprocess

    code = ("import sys; from jinav3.integrations.stores.uri import parse_store; parse_store('milvus+http://h:1'); "
            "print(sorted(m for m in ('qdrant_client', 'pymilvus', 'pinecone', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
