"""The Encoder's speed options are one frozen SpeedOptions, checked when made and resolved for the device."""

import dataclasses

import pytest

from jinav3.errors import InvalidArgumentError
from jinav3.options import SpeedOptions


@pytest.mark.parametrize("field, value", [("packed", "yes"), ("max_tokens_per_batch", 0),
                                          ("overlap_tokenization", None), ("torch_compile", 1),
                                          ("onednn_linears", "auto")])
def test_each_option_is_checked_when_made(field, value):
    with pytest.raises(InvalidArgumentError, match=f"^{field}: "):
        SpeedOptions(**{field: value})


def test_options_are_frozen_resolved_and_replaced_by_with_options(encoder):
    assert isinstance(encoder.options, SpeedOptions)
    assert encoder.options.packed is not None and encoder.options.max_tokens_per_batch  # resolved for the device
    with pytest.raises(dataclasses.FrozenInstanceError):
        encoder.options.packed = True
    other = encoder.with_options(packed=not encoder.packed, max_tokens_per_batch=1024)
    assert (other.packed, other.max_tokens_per_batch) == (not encoder.packed, 1024)
    assert other.overlap_tokenization == encoder.overlap_tokenization and other.model is encoder.model
