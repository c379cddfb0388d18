"""The API key of a RemoteEncoder is a ``Secret``: repr, vars, pickle and copies never show it.

No server is needed: a RemoteEncoder sends nothing until it encodes.
"""

from __future__ import annotations

import copy
import pickle

import pytest

from jinav3 import RemoteEncoder
from jinav3.secrets import Secret

KEY = "srv-K3y-5ecret-0b9d"
URL = "http://127.0.0.1:9"  # never contacted


@pytest.fixture
def remote(monkeypatch):
    monkeypatch.delenv("JINAV3_API_KEY", raising=False)
    return RemoteEncoder(URL, api_key=KEY)


def test_repr_and_str_hide_the_key(remote):
    assert KEY not in repr(remote) and KEY not in str(remote) and "api_key=***" in repr(remote)
    assert repr(Secret(KEY)) == str(Secret(KEY)) == "Secret('***')" and repr(Secret(None)) == "Secret(None)"


def test_vars_hide_the_key(remote):
    assert KEY not in repr(vars(remote)) and KEY not in str(list(vars(remote).values()))
    with pytest.raises(TypeError):
        vars(Secret(KEY))  # no __dict__ to list


def test_pickle_holds_where_to_read_the_key_not_the_key(remote, monkeypatch):
    assert KEY.encode() not in pickle.dumps(remote) and KEY.encode() not in pickle.dumps(Secret(KEY))
    assert not pickle.loads(pickle.dumps(remote)).has_api_key  # nothing in the environment
    monkeypatch.setenv("JINAV3_API_KEY", KEY)  # an unpickled copy reads the key from the environment
    again = pickle.loads(pickle.dumps(remote))
    assert again.has_api_key and again.key_fingerprint == remote.key_fingerprint


def test_pickle_reads_the_named_variable(monkeypatch):
    monkeypatch.setenv("MY_KEY", KEY)
    remote = RemoteEncoder(URL, api_key_env="MY_KEY")
    blob = pickle.dumps(remote)
    assert KEY.encode() not in blob and b"MY_KEY" in blob
    monkeypatch.setenv("MY_KEY", KEY + "2")
    assert pickle.loads(blob).key_fingerprint == RemoteEncoder(URL, api_key=KEY + "2").key_fingerprint


@pytest.mark.parametrize("how", [copy.copy, copy.deepcopy])
def test_copies_keep_the_key_and_hide_it(remote, how):
    twin = how(remote)
    assert twin.key_fingerprint == remote.key_fingerprint and twin._api_key is remote._api_key
    assert KEY not in repr(twin) and KEY not in repr(vars(twin))
    assert twin._client_options()["headers"]["Authorization"] == f"Bearer {KEY}"  # it still works


def test_a_secret_is_immutable_and_reveals_only_on_request():
    secret = Secret(KEY, ("X",))
    with pytest.raises(AttributeError):
        secret._value = "other"
    assert secret.reveal() == KEY and secret and not Secret(None) and secret.env == ("X",)
