"""Triplet loss with semi-hard negative mining (Schroff et al., FaceNet 2015).

The definition is the one of `tf.contrib.losses.metric_learning.
triplet_semihard_loss`, which the paper's reference code called, and of its
successor `tfa.losses.TripletSemiHardLoss`; tensorflow-addons is unmaintained,
so it is written here in plain TensorFlow.

For labels y [N] and embeddings e [N, D], with d(i, j) the distance between
e_i and e_j, every anchor-positive pair (a, p) -- a != p, y_a == y_p -- takes
the negative (y_n != y_a)

  * semi-hard: the closest negative strictly farther than the positive,
      argmin { d(a, n) : d(a, n) > d(a, p) },
  * or, when every negative is at most as far as the positive, the FARTHEST
    negative, argmax d(a, n) (the least violating of the hard ones: contrib
    and tfa do the same),

and costs max(0, margin + d(a, p) - d(a, n)). The loss is the mean over all
anchor-positive pairs.

Distances: 'squared_l2' (default) is what contrib and therefore the reference
code used; 'l2' is the unsquared distance that tfa made its default.

One deliberate difference: contrib and tfa give an anchor WITHOUT any negative
in the batch (every example shares its label) a spurious "negative" at
distance 0, so its pairs cost margin + d(a, p). No triplet exists there, so
such pairs are left out of the mean; a batch without any negative has loss 0.
"""
from typing import Tuple

import tensorflow as tf

DISTANCES = ("squared_l2", "l2")


def _check_distance(distance: str) -> None:
  if distance not in DISTANCES:
    raise ValueError(f"Unknown distance {distance!r}; use one of "
                     f"{', '.join(DISTANCES)}.")


def _check_inputs(labels, embeddings) -> Tuple[tf.Tensor, tf.Tensor]:
  labels = tf.convert_to_tensor(labels)
  embeddings = tf.convert_to_tensor(embeddings)
  if embeddings.shape.rank != 2:
    raise ValueError(f"embeddings must be [N, D]; got shape {embeddings.shape}. "
                     f"Fold copies into the batch axis first.")
  if not labels.dtype.is_integer:
    raise ValueError(f"labels must be integers; got {labels.dtype.name}.")
  labels = tf.reshape(labels, [-1])
  if (labels.shape[0] is not None and embeddings.shape[0] is not None
      and labels.shape[0] != embeddings.shape[0]):
    raise ValueError(f"{labels.shape[0]} labels for {embeddings.shape[0]} "
                     f"embeddings; give one label per embedding.")
  # The mining compares distances; float32 at least, whatever the compute dtype.
  return labels, tf.cast(embeddings, tf.float32)


def pairwise_distances(embeddings: tf.Tensor,
                       distance: str = "squared_l2") -> tf.Tensor:
  """[N, D] -> [N, N] distances; the diagonal is exactly 0.

  Computed as |a|^2 + |b|^2 - 2 a.b (one matmul, O(N^2) memory); rounding can
  make that slightly negative, so it is clipped at 0. For 'l2' the root of 0
  is taken with a zero gradient rather than sqrt's infinite one.
  """
  _check_distance(distance)
  embeddings = tf.cast(embeddings, tf.float32)
  squared_norms = tf.reduce_sum(tf.square(embeddings), axis=1)
  squared = (squared_norms[:, None] + squared_norms[None, :]
             - 2.0 * tf.matmul(embeddings, embeddings, transpose_b=True))
  squared = tf.maximum(squared, 0.0)
  n = tf.shape(embeddings)[0]
  squared = tf.where(tf.eye(n, dtype=tf.bool), tf.zeros_like(squared), squared)
  if distance == "squared_l2":
    return squared
  zero = squared <= 0.0
  root = tf.sqrt(tf.where(zero, tf.ones_like(squared), squared))
  return tf.where(zero, tf.zeros_like(root), root)


def semihard_triplet_loss_per_anchor(labels, embeddings, margin: float = 0.5,
                                     distance: str = "squared_l2",
                                     groups=None, valid=None) -> tf.Tensor:
  """Per-anchor shares of the semi-hard triplet loss; their MEAN is the loss.

  Args:
    labels: int [N] (or [N, 1]); equal labels mark positives.
    embeddings: float [N, D], usually L2-normalised.
    margin: the margin of the hinge.
    distance: 'squared_l2' (reference code) or 'l2'.
    groups: optional int [N]: triplets are mined within groups only (a
      negative must share the anchor's group; equal labels must share a
      group). With equally sized groups the loss is the mean of the groups'
      own losses, i.e. what separate devices holding one group each average to.
    valid: optional bool [N], False for padding rows (an evaluation batch
      padded to a static shape): they are neither anchors, positives nor
      negatives, so the real rows' shares are those of the real rows alone.

  Returns:
    float32 [N]: entry a is N * (sum of anchor a's pair losses) / (number of
    anchor-positive pairs in the batch), so that `reduce_mean` gives the loss
    exactly, also when label groups differ in size (with equal groups it is
    the mean of anchor a's pair losses). With `valid`, N counts the real
    rows, padding rows are 0, and the mean over the real rows is the loss.
    This is the form `tf.nn.compute_average_loss` expects: it divides the sum by N times the
    number of replicas, i.e. it averages the replicas' losses.
  """
  _check_distance(distance)
  labels, embeddings = _check_inputs(labels, embeddings)
  d = pairwise_distances(embeddings, distance)
  n = tf.shape(d)[0]
  same = tf.equal(labels[:, None], labels[None, :])
  is_negative = tf.logical_not(same)
  if groups is not None:
    groups = tf.reshape(tf.convert_to_tensor(groups), [-1])
    is_negative = tf.logical_and(
        is_negative, tf.equal(groups[:, None], groups[None, :]))
  is_positive = tf.logical_and(same, tf.logical_not(tf.eye(n, dtype=tf.bool)))
  rows = tf.cast(n, tf.float32)
  if valid is not None:
    valid = tf.reshape(tf.cast(valid, tf.bool), [-1])
    both = tf.logical_and(valid[:, None], valid[None, :])
    is_negative = tf.logical_and(is_negative, both)
    is_positive = tf.logical_and(is_positive, both)
    rows = tf.reduce_sum(tf.cast(valid, tf.float32))

  # Row a of `sorted_negatives` holds anchor a's negative distances in
  # ascending order, then +inf for the non-negatives. Binary search then finds,
  # for every d(a, p), the first negative strictly farther: O(N^2 log N) time
  # and O(N^2) memory, where the contrib formulation needs O(N^3).
  inf = tf.constant(float("inf"), tf.float32)
  negative_d = tf.where(is_negative, d, inf)
  sorted_negatives = tf.sort(negative_d, axis=1)
  num_negatives = tf.reduce_sum(tf.cast(is_negative, tf.int32), axis=1)  # [N]
  first_farther = tf.searchsorted(sorted_negatives, d, side="right")  # [N, N]
  has_semihard = first_farther < num_negatives[:, None]
  semihard = tf.gather(sorted_negatives, tf.minimum(first_farther, n - 1),
                       batch_dims=1)
  farthest = tf.gather(sorted_negatives, tf.maximum(num_negatives - 1, 0),
                       batch_dims=1)  # [N]
  negative = tf.where(has_semihard, semihard, farthest[:, None])

  has_triplet = tf.logical_and(is_positive, (num_negatives > 0)[:, None])
  # tf.where, not a product with the mask: unselected entries may be -inf, and
  # tf.where passes them a zero gradient where a product would give NaN.
  pair_loss = tf.where(has_triplet, tf.nn.relu(margin + d - negative), 0.0)
  num_pairs = tf.reduce_sum(tf.cast(has_triplet, tf.float32))
  return (tf.reduce_sum(pair_loss, axis=1) * rows
          / tf.maximum(num_pairs, 1.0))


def semihard_triplet_loss(labels, embeddings, margin: float = 0.5,
                          distance: str = "squared_l2") -> tf.Tensor:
  """The semi-hard triplet loss (scalar): mean over anchor-positive pairs.

  labels int [N], embeddings float [N, D]; see the module docstring.
  """
  return tf.reduce_mean(
      semihard_triplet_loss_per_anchor(labels, embeddings, margin, distance))


def nearest_neighbour_correct(labels, embeddings, distance: str = "squared_l2",
                              valid=None) -> tf.Tensor:
  """Whether each embedding's nearest OTHER embedding has its label.

  labels int [N], embeddings float [N, D] -> float32 [N] of 0/1 (ties go to
  the lower index). An example alone in the batch has no neighbour: 0.
  valid: optional bool [N], False for padding rows, which are nobody's
  neighbour (their own entries are meaningless: weigh them 0).
  """
  labels, embeddings = _check_inputs(labels, embeddings)
  d = pairwise_distances(embeddings, distance)
  n = tf.shape(d)[0]
  excluded = tf.eye(n, dtype=tf.bool)
  if valid is not None:
    valid = tf.reshape(tf.cast(valid, tf.bool), [-1])
    excluded = tf.logical_or(excluded, tf.logical_not(valid)[None, :])
  d = tf.where(excluded, tf.constant(float("inf")), d)
  nearest = tf.argmin(d, axis=1, output_type=tf.int32)
  # No neighbour at all (every distance infinite): not correct.
  has_neighbour = tf.reduce_min(d, axis=1) < float("inf")
  correct = tf.logical_and(tf.equal(tf.gather(labels, nearest), labels),
                           has_neighbour)
  return tf.cast(correct, tf.float32)
