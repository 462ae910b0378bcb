"""Semi-hard triplet loss against a brute-force numpy definition."""
import numpy as np
import pytest
import tensorflow as tf

import strategies

from self_supervision import triplet_loss


def _brute_force(labels, embeddings, margin, distance):
  """Loops over every (anchor, positive, negative), float64."""
  e = np.asarray(embeddings, np.float64)
  d = ((e[:, None, :] - e[None, :, :]) ** 2).sum(-1)
  if distance == "l2":
    d = np.sqrt(d)
  n = len(labels)
  losses = []
  for a in range(n):
    negatives = [k for k in range(n) if labels[k] != labels[a]]
    if not negatives:
      continue  # no triplet: left out (see the module docstring)
    for p in range(n):
      if p == a or labels[p] != labels[a]:
        continue
      farther = [d[a, k] for k in negatives if d[a, k] > d[a, p]]
      negative = min(farther) if farther else max(d[a, k] for k in negatives)
      losses.append(max(0.0, margin + d[a, p] - negative))
  return float(np.mean(losses)) if losses else 0.0


# (labels, embedding dim, seed): equal groups as in exemplar, unequal groups,
# singletons (anchors without positives), and tight clusters (so that many
# anchors have no semi-hard negative and take the farthest one).
_CASES = [
    ([0] * 4 + [1] * 4 + [2] * 4, 8, 0),
    ([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4], 5, 1),
    ([5, 5, 2, 2, 7], 3, 2),
]


@pytest.mark.parametrize("distance", ["squared_l2", "l2"])
@pytest.mark.parametrize("labels,dim,seed", _CASES)
def test_matches_brute_force(labels, dim, seed, distance):
  rng = np.random.RandomState(seed)
  labels = np.array(labels)
  # Cluster centres plus noise; normalised as the exemplar task does.
  centres = rng.randn(labels.max() + 1, dim)
  embeddings = centres[labels] * 0.7 + rng.randn(len(labels), dim)
  embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
  embeddings = embeddings.astype(np.float32)
  for margin in (0.5, 2.0):
    want = _brute_force(labels, embeddings, margin, distance)
    got = triplet_loss.semihard_triplet_loss(labels, embeddings, margin, distance)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5, rtol=0)
    shares = triplet_loss.semihard_triplet_loss_per_anchor(
        labels, embeddings, margin, distance)
    assert shares.shape == (len(labels),)
    np.testing.assert_allclose(np.mean(shares.numpy()), want, atol=1e-5, rtol=0)


def test_both_negative_choices_by_hand():
  # 1-D points, l2 = |x_i - x_j|, margin 0.5. Labels 0: x = 0, 1; labels 1:
  # x = 1.2, -1.4.
  labels = [0, 0, 1, 1]
  x = np.array([[0.0], [1.0], [1.2], [-1.4]], np.float32)
  # (0, 1): d_ap = 1, negatives at 1.2 and 1.4: semi-hard is the CLOSER of
  #   the farther ones, 1.2 -> 0.5 + 1 - 1.2 = 0.3.
  # (1, 0): d_ap = 1, negatives at 0.2 and 2.4: 2.4 -> 0.5 + 1 - 2.4 < 0 -> 0.
  # (2, 3): d_ap = 2.6, negatives at 1.2 and 0.2, none farther: the farthest,
  #   1.2 -> 0.5 + 2.6 - 1.2 = 1.9.
  # (3, 2): d_ap = 2.6, negatives at 1.4 and 2.4, none farther: 2.4 -> 0.7.
  shares = triplet_loss.semihard_triplet_loss_per_anchor(labels, x, 0.5, "l2")
  np.testing.assert_allclose(shares.numpy(), [0.3, 0.0, 1.9, 0.7], atol=1e-6)
  loss = triplet_loss.semihard_triplet_loss(labels, x, 0.5, "l2")
  np.testing.assert_allclose(loss.numpy(), 2.9 / 4, atol=1e-6)
  # Squared distances: (0,1) 1 vs {1.44, 1.96} -> 0.06; (1,0) 1 vs {0.04,
  # 5.76} -> 0; (2,3) 6.76 vs {1.44, 0.04} -> 0.5 + 6.76 - 1.44 = 5.82;
  # (3,2) 6.76 vs {1.96, 5.76} -> 1.5.
  squared = triplet_loss.semihard_triplet_loss(labels, x, 0.5, "squared_l2")
  np.testing.assert_allclose(squared.numpy(), (0.06 + 5.82 + 1.5) / 4,
                             atol=1e-5)
  correct = triplet_loss.nearest_neighbour_correct(labels, x, "l2")
  # Nearest others: 0 -> 1 (same), 1 -> 2, 2 -> 1, 3 -> 0 (all different).
  np.testing.assert_array_equal(correct.numpy(), [1.0, 0.0, 0.0, 0.0])


def test_batch_without_negatives_or_positives_is_zero():
  e = np.random.RandomState(0).randn(4, 3).astype(np.float32)
  # One label: no negative anywhere, so no triplet (contrib would give
  # margin + d_ap here).
  np.testing.assert_array_equal(
      triplet_loss.semihard_triplet_loss_per_anchor([3, 3, 3, 3], e).numpy(),
      np.zeros(4))
  # All labels distinct: no positive pair.
  assert float(triplet_loss.semihard_triplet_loss([0, 1, 2, 3], e)) == 0.0


def test_shares_average_to_loss_under_two_replicas():
  # The trainer's tf.nn.compute_average_loss divides by (N * replicas); the
  # all-reduced sum must be the mean of the replicas' triplet losses.
  strategy = strategies.two_replicas()
  rng = np.random.RandomState(3)
  labels = np.repeat(np.arange(3), 4)
  data = rng.randn(2, 12, 6).astype(np.float32)

  def replica_fn():
    i = tf.distribute.get_replica_context().replica_id_in_sync_group
    shares = triplet_loss.semihard_triplet_loss_per_anchor(
        labels, tf.gather(data, i))
    return tf.nn.compute_average_loss(shares)

  total = strategy.reduce("SUM", strategy.run(replica_fn), axis=None)
  want = np.mean([_brute_force(labels, data[i], 0.5, "squared_l2")
                  for i in range(2)])
  np.testing.assert_allclose(total.numpy(), want, atol=1e-5)


@pytest.mark.parametrize("distance", ["squared_l2", "l2"])
def test_gradient_is_finite_with_duplicate_embeddings(distance):
  # Identical copies have distance 0, where sqrt has an infinite derivative.
  e = tf.Variable(np.array([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8], [0.0, 1.0]],
                           np.float32))
  with tf.GradientTape() as tape:
    loss = triplet_loss.semihard_triplet_loss([0, 0, 1, 1], e, 0.5, distance)
  grad = tape.gradient(loss, e).numpy()
  assert np.all(np.isfinite(grad))
  assert np.abs(grad).sum() > 0


def test_bad_inputs_name_the_fix():
  e = np.zeros([4, 2], np.float32)
  with pytest.raises(ValueError, match="squared_l2, l2"):
    triplet_loss.semihard_triplet_loss([0, 0, 1, 1], e, distance="cosine")
  with pytest.raises(ValueError, match=r"\[N, D\]"):
    triplet_loss.semihard_triplet_loss([0, 0, 1, 1], np.zeros([4], np.float32))
  with pytest.raises(ValueError, match="integers"):
    triplet_loss.semihard_triplet_loss([0.0, 0.0, 1.0, 1.0], e)
  with pytest.raises(ValueError, match="one label per embedding"):
    triplet_loss.semihard_triplet_loss([0, 0, 1], e)
