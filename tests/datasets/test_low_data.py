"""Low-data subsets: deterministic, class-balanced, nested, and read as a split."""
import numpy as np
import pytest

import fake_data
from datasets import low_data


def _labels(counts):
  labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
  return np.random.RandomState(0).permutation(labels)


def test_balanced_subset_takes_the_same_number_from_every_class():
  labels = _labels([100] * 10)
  subset = low_data.balanced_subset(labels, 0.1, seed=0)
  assert len(subset) == 100
  np.testing.assert_array_equal(np.bincount(labels[subset]), [10] * 10)
  assert np.all(np.diff(subset) > 0)  # sorted, no repeats


def test_balanced_subset_is_deterministic_and_seeded():
  labels = _labels([50, 60, 70])
  a = low_data.balanced_subset(labels, 0.2, seed=3)
  np.testing.assert_array_equal(a, low_data.balanced_subset(labels, 0.2, seed=3))
  assert not np.array_equal(a, low_data.balanced_subset(labels, 0.2, seed=4))


def test_smaller_fractions_are_nested_in_larger_ones():
  labels = _labels([200] * 5)
  small = low_data.balanced_subset(labels, 0.05, seed=1)
  large = low_data.balanced_subset(labels, 0.1, seed=1)
  assert set(small) < set(large)


def test_small_classes_give_all_they_have_and_the_rest_is_spread():
  labels = _labels([2, 50, 50])
  subset = low_data.balanced_subset(labels, 0.3, seed=0)  # round(0.3 * 102) = 31
  np.testing.assert_array_equal(np.bincount(labels[subset]), [2, 15, 14])


def test_fraction_one_is_everything():
  labels = _labels([3, 4])
  np.testing.assert_array_equal(low_data.balanced_subset(labels, 1.0),
                                np.arange(7))


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, "ten", None])
def test_bad_fractions_name_the_range(bad):
  with pytest.raises(ValueError, match=r"in \(0, 1\]"):
    low_data.balanced_subset(_labels([5, 5]), bad)


def test_subset_dataset_yields_exactly_the_chosen_indices():
  dataset = fake_data.InMemoryDataset(num_train=60, num_val=10, num_test=10,
                                      num_classes=3)
  np.testing.assert_array_equal(low_data.split_labels(dataset, "train"),
                                dataset.labels[:60])
  sub = low_data.low_data(dataset, "train", 0.25, seed=2)
  expected = low_data.balanced_subset(dataset.labels[:60], 0.25, seed=2)
  assert sub.num_examples("train") == len(expected) == 15
  got = list(sub.as_dataset("train").as_numpy_iterator())
  np.testing.assert_array_equal([ex["index"] for ex in got], expected)
  np.testing.assert_array_equal([ex["label"] for ex in got],
                                dataset.labels[expected])
  # Other splits pass through whole.
  assert sub.num_examples("val") == 10
  assert len(list(sub.as_dataset("val"))) == 10
  assert low_data.low_data(dataset, "train", 1.0) is dataset


@pytest.mark.slow
def test_one_percent_of_fashion_mnist_train_is_55_per_class():
  from datasets import registry  # pylint: disable=g-import-not-at-top
  dataset = registry.get_dataset("fashion_mnist")
  dataset.prepare()
  labels = low_data.split_labels(dataset, "train")
  assert len(labels) == 55_000
  subset = low_data.balanced_subset(labels, 0.01, seed=0)
  np.testing.assert_array_equal(np.bincount(labels[subset], minlength=10),
                                [55] * 10)
