"""The order inverted: which positions used a sample is arithmetic too (the reverse index is built from it)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_index import BadScheduleError, permute
from data_index.order import positions_to_ids, sample_positions, unpermute


@settings(max_examples=200, deadline=None)
@given(n=st.integers(min_value=1, max_value=5000), key=st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_unpermute_inverts_permute_for_any_n_and_key(n, key):
    positions = np.arange(n)
    assert np.array_equal(unpermute(permute(positions, n=n, key=key), n=n, key=key), positions)


@pytest.mark.parametrize(("n_samples", "n_positions"), [(1, 5), (97, 40), (1000, 1000), (1000, 3500), (4097, 9000)])
def test_sample_positions_finds_every_position_that_used_each_sample_once(n_samples, n_positions):
    ids = positions_to_ids(np.arange(n_positions), n_samples=n_samples, data_seed=11)
    which, positions = sample_positions(np.arange(n_samples), n_samples=n_samples, data_seed=11,
                                        n_positions=n_positions)
    assert np.array_equal(np.sort(positions), np.arange(n_positions))  # each position exactly once
    assert np.array_equal(ids[positions], which)  # at the position found, the order uses that sample


def test_unpermute_refuses_values_outside_the_domain():
    with pytest.raises(BadScheduleError, match=r"values must lie in \[0, 10\)"):
        unpermute(np.array([10]), n=10, key=1)
