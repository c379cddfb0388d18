"""integrations/_encoder_cache.py shares one encoder per setting while components hold it, and frees it after."""

import gc
import weakref

from jinav3.integrations import _encoder_cache as shared


def test_one_model_while_held_freed_once_no_component_holds_it(golden_dir):
    first = shared.get_encoder(golden_dir, "cpu", "float32")
    assert shared.get_encoder(golden_dir, "cpu", "float32") is first  # a second component shares it
    encoder, model = weakref.ref(first), weakref.ref(first.model)
    del first
    gc.collect()
    assert encoder() is None and model() is None  # the cache alone keeps no model alive
    assert not any(key[0] == str(golden_dir) for key in shared._encoders.keys())


def test_clear_makes_the_next_component_load_its_own(golden_dir):
    held = shared.get_encoder(golden_dir, "cpu", "float32")
    shared.clear()
    assert shared.get_encoder(golden_dir, "cpu", "float32") is not held
