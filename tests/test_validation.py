"""The shared argument checks in ``bayeslayers._validation``."""

import numpy as np
import pytest

from bayeslayers._validation import check_count


@pytest.mark.parametrize("value", [1, 7, np.int64(3)])
def test_check_count_accepts_positive_ints(value):
    assert check_count(value, "k") == int(value)
    assert type(check_count(value, "k")) is int


def test_check_count_none_only_when_allowed():
    assert check_count(None, "k", allow_none=True) is None
    with pytest.raises(ValueError, match=r"k must be an int >= 1, got None"):
        check_count(None, "k")


@pytest.mark.parametrize("value", [0, -2, 1.0, True, "3"])
def test_check_count_rejects_everything_else(value):
    with pytest.raises(ValueError, match=r"k must be an int >= 1 or None, got"):
        check_count(value, "k", allow_none=True)
