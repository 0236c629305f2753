"""The one rule for selecting agent rows (``calf.validation.as_row_indices``), used by the
controller, the envs, the visual agents and both trail sets."""

from __future__ import annotations

import numpy as np
import pytest

from calf.validation import as_row_indices


@pytest.mark.parametrize(
    ("rows", "want"),
    [
        ([2, 0, 2], [0, 2]),  # any order, repeats: sorted unique
        ([-1], [3]),  # negative indices count from the end
        (np.array([True, False, False, True]), [0, 3]),  # a boolean mask
        ([], []),  # an empty list selects nothing
        (np.zeros(0, dtype=np.float64), []),
        (np.uint8(1), [1]),
    ],
)
def test_indices_and_masks_give_sorted_unique_rows(rows, want) -> None:
    got = as_row_indices(rows, 4)
    assert got.dtype == np.intp and got.tolist() == want


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([4], "out of range for 4 rows"),
        ([-5], "out of range"),
        (np.array([True, False]), r"mask must have shape \(4,\)"),
        ([0.5], "integer indices or a boolean mask"),
        ([1.0], "integer indices or a boolean mask"),
    ],
)
def test_bad_rows_raise_naming_what_they_select(rows, match) -> None:
    with pytest.raises(ValueError, match=f"agent ids.*{match}|{match}"):
        as_row_indices(rows, 4, "agent ids")
