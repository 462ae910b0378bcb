"""Low-data regimes (paper Fig. 7): class-balanced fractions of a labelled split.

A subset is a set of example indices ('index' of `tfds_dataset.index_and_shard`,
global to the split) chosen only from the split's labels, a fraction and a
seed, so every protocol and every run that asks for "10% of train, seed 0"
trains on exactly the same images. Subsets are nested: with one seed, the 5%
subset is contained in the 10% subset.
"""
from typing import Optional

import numpy as np
import tensorflow as tf


def check_fraction(fraction: float) -> float:
  """Returns `fraction` as a float, or raises naming the valid range."""
  try:
    fraction = float(fraction)
  except (TypeError, ValueError):
    raise ValueError(f"A low-data fraction must be a number in (0, 1], got "
                     f"{fraction!r}.") from None
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"A low-data fraction must be in (0, 1] (e.g. 0.1 for 10% "
                     f"of the labels), got {fraction}.")
  return fraction


def balanced_subset(labels: np.ndarray, fraction: float,
                    seed: int = 0) -> np.ndarray:
  """Indices of a class-balanced `fraction` of the examples with `labels`.

  round(fraction * N) examples are taken, the same number from every class
  (classes with too few examples give all they have, the rest is spread over
  the others); within a class the examples are a seeded random choice, and a
  smaller fraction takes a prefix of the same per-class order (nested subsets).

  Args:
    labels: int [N] labels of the whole split, in index order.
    fraction: in (0, 1]; 1 returns every index.
    seed: which random choice within each class.

  Returns:
    int64 [round(fraction * N)] sorted indices into `labels`.
  """
  fraction = check_fraction(fraction)
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"labels must be 1-D [N], got shape {labels.shape}.")
  n = len(labels)
  if fraction == 1.0:
    return np.arange(n, dtype=np.int64)
  total = max(1, int(round(fraction * n)))
  classes, counts = np.unique(labels, return_counts=True)
  quota = _balanced_quota(counts, total)
  chosen = []
  for c, q in zip(classes, quota):
    members = np.flatnonzero(labels == c)
    # One generator per class, seeded by (seed, class): a class's order does
    # not depend on which other classes the split happens to contain.
    rng = np.random.default_rng([seed, int(c) & 0x7FFFFFFF])
    chosen.append(members[rng.permutation(len(members))[:q]])
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def _balanced_quota(counts: np.ndarray, total: int) -> np.ndarray:
  """Per-class sizes summing to `total`, as equal as the class sizes allow."""
  quota = np.zeros_like(counts)
  remaining = total
  open_classes = list(range(len(counts)))
  while remaining > 0 and open_classes:
    share, extra = divmod(remaining, len(open_classes))
    still_open = []
    for rank, i in enumerate(open_classes):
      want = share + (1 if rank < extra else 0)
      give = min(want, counts[i] - quota[i])
      quota[i] += give
      remaining -= give
      if quota[i] < counts[i]:
        still_open.append(i)
    open_classes = still_open
  return quota


def split_labels(dataset, split: str) -> np.ndarray:
  """int64 [N] labels of `split` in index order (one pass, images skipped)."""
  ds = dataset.as_dataset(split, shuffle_files=False)
  ds = ds.map(lambda ex: (ex["index"], ex["label"]),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  n = dataset.num_examples(split)
  labels = np.full([n], -1, np.int64)
  for index, label in ds.batch(8192).as_numpy_iterator():
    labels[index] = label
  if (labels < 0).any():
    raise RuntimeError(f"{split} did not yield every index 0..{n - 1}.")
  return labels


class Subset:
  """A dataset whose `split` holds only the examples at `indices`.

  Same interface as the `datasets.registry` datasets (name, num_classes,
  prepare, num_examples, as_dataset); other splits pass through. Examples
  keep their 'index' in the full split.
  """

  def __init__(self, dataset, split: str, indices: np.ndarray,
               fraction: Optional[float] = None):
    self._dataset, self._split = dataset, split
    self.indices = np.asarray(indices, np.int64)
    self.fraction = fraction
    size = dataset.num_examples(split)
    if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= size):
      raise ValueError(f"Subset indices must lie in [0, {size}) for {split}.")
    self._mask = np.zeros([size], bool)
    self._mask[self.indices] = True
    self.name = dataset.name
    self.num_classes = dataset.num_classes

  def __getattr__(self, name):
    return getattr(self._dataset, name)

  def prepare(self):
    self._dataset.prepare()

  def num_examples(self, split):
    if split == self._split:
      return len(self.indices)
    return self._dataset.num_examples(split)

  def as_dataset(self, split, **kwargs):
    ds = self._dataset.as_dataset(split, **kwargs)
    if split != self._split:
      return ds
    mask = tf.constant(self._mask)
    return ds.filter(lambda ex: tf.gather(mask, ex["index"]))


def low_data(dataset, split: str, fraction: float, seed: int = 0):
  """`dataset` with `split` cut to a balanced `fraction` (itself when 1)."""
  fraction = check_fraction(fraction)
  if fraction == 1.0:
    return dataset
  labels = split_labels(dataset, split)
  indices = balanced_subset(labels, fraction, seed)
  classes = np.unique(labels)
  kept = np.unique(labels[indices])
  if len(kept) < len(classes):
    # A probe never shown a class cannot score it: its accuracy would read
    # as a measure of the representation while it is one of the subset.
    raise ValueError(
        f"A low-data fraction of {fraction} keeps {len(indices)} of the "
        f"{len(labels)} examples of {split}, from {len(kept)} of its "
        f"{len(classes)} classes: every class needs one, so use a fraction of "
        f"at least {len(classes) / len(labels):.2g}.")
  return Subset(dataset, split, indices, fraction)


__all__ = ["balanced_subset", "check_fraction", "low_data", "split_labels",
           "Subset"]
