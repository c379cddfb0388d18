"""integrations/grouping.py: the late-chunk grouping the three framework adapters share."""

import pytest

from jinav3.errors import InvalidArgumentError
from jinav3.integrations.grouping import late_chunk_groups


def test_groups_in_first_seen_order_blank_and_sourceless_rows_alone():
    texts = ["a", "b", " ", "c", "d", "e"]
    sources = ["x", "y", "x", None, "x", "y"]
    assert late_chunk_groups(texts, sources) == ([[0, 4], [1, 5]], [2, 3])


def test_the_first_position_that_knows_every_row_orders_a_group():
    texts = ["a", "b", "c", "d"]
    sources = ["x", "x", "x", "y"]
    split_id = [2, None, 0, 5]       # unknown for row 1: not used for group x
    start = [30, 10, 20, 0]
    assert late_chunk_groups(texts, sources, [split_id, start]) == ([[1, 2, 0], [3]], [])
    assert late_chunk_groups(texts, sources, [[1, 1, 0, 0]]) == ([[2, 0, 1], [3]], [])  # stable on ties


def test_an_unhashable_source_is_named_or_let_through():
    with pytest.raises(InvalidArgumentError, match=r"^documents\[1\]\.metadata\['source'\]: must name a source"):
        late_chunk_groups(["a", "b"], ["x", ["y"]], source_argument=lambda r: f"documents[{r}].metadata['source']")
    with pytest.raises(TypeError):
        late_chunk_groups(["a", "b"], ["x", ["y"]])
