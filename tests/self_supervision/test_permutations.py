"""The jigsaw permutation set: stored file, determinism, Hamming distances."""
import itertools

import numpy as np
import pytest

from self_supervision import permutations

# What the greedy algorithm achieves for 100 permutations of 9 with seed 0:
# every pair differs in at least 6 positions; the 4950 pairs differ in 39931
# positions in all (mean 8.0669). For comparison, two random permutations
# differ in 8 positions on average, and 9 is the most possible.
EXPECTED_MIN_DISTANCE = 6
EXPECTED_DISTANCE_SUM = 39931


@pytest.fixture(scope="module")
def stored():
  return permutations.load(100)


def test_all_permutations_is_lexicographic():
  np.testing.assert_array_equal(permutations.all_permutations(5),
                                list(itertools.permutations(range(5))))
  assert permutations.all_permutations(9).shape == (362880, 9)


def test_regenerating_gives_the_stored_file(stored):
  np.testing.assert_array_equal(permutations.generate_permutations(100, seed=0),
                                stored)


def test_stored_set_is_100_distinct_permutations(stored):
  assert stored.shape == (100, 9)
  np.testing.assert_array_equal(np.sort(stored, axis=1),
                                np.tile(np.arange(9), (100, 1)))
  assert len({tuple(p) for p in stored}) == 100


def test_hamming_distances(stored):
  minimum, mean = permutations.distance_stats(stored)
  print(f"\n100 jigsaw permutations: Hamming distance min {minimum}, "
        f"mean {mean:.4f}")
  assert minimum == EXPECTED_MIN_DISTANCE
  distances = permutations.hamming_distances(stored)
  assert distances[np.triu_indices(100, k=1)].sum() == EXPECTED_DISTANCE_SUM
  assert mean == pytest.approx(EXPECTED_DISTANCE_SUM / 4950)
  # Greedy: each new permutation's distance to those before it is the largest
  # available, so these distances can only shrink as the set grows.
  to_earlier = [distances[i, :i].min() for i in range(1, 100)]
  assert all(a >= b for a, b in zip(to_earlier, to_earlier[1:]))
  assert to_earlier[0] == 9 and to_earlier[-1] == EXPECTED_MIN_DISTANCE


def test_each_pick_maximises_the_minimum_distance():
  # Brute force for a small case: 12 permutations of 5.
  perms = permutations.generate_permutations(12, num_positions=5, seed=3)
  candidates = permutations.all_permutations(5)
  for i in range(1, len(perms)):
    to_chosen = (candidates[:, None, :] != perms[None, :i, :]).sum(-1).min(1)
    assert (perms[i] != perms[:i]).sum(-1).min() == to_chosen.max()


def test_seed_determines_the_set():
  a = permutations.generate_permutations(20, seed=1)
  np.testing.assert_array_equal(a, permutations.generate_permutations(20, seed=1))
  assert not np.array_equal(a, permutations.generate_permutations(20, seed=2))


def test_missing_set_names_the_script():
  with pytest.raises(FileNotFoundError, match="make_permutations.py --num=37"):
    permutations.load(37)


def test_bad_sizes():
  with pytest.raises(ValueError, match="1..120"):
    permutations.generate_permutations(121, num_positions=5)
  with pytest.raises(ValueError, match="two permutations"):
    permutations.distance_stats(np.arange(9)[None])
