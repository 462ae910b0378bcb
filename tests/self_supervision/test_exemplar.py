"""Exemplar: copies and labels, normalisation, pipelines, and real training."""
import re

import gin
import numpy as np
import pytest
import tensorflow as tf

from datasets import preprocess_registry
from datasets import registry
from self_supervision import exemplar
from self_supervision import task as task_lib
from self_supervision import trainer as trainer_lib
from self_supervision import triplet_loss

PP_TRAIN = "decode|to_gray(2/3)|inception_patches(8, 16)|standardize"


pytestmark = pytest.mark.usefixtures("clean_gin")


def _linear_model(images, training):
  """A fixed 'trunk': per-image mean of each channel, times a 3x5 matrix."""
  del training
  w = tf.constant(np.arange(15, dtype=np.float32).reshape(3, 5) - 7.0)
  return tf.reduce_mean(images, axis=[1, 2]) @ w, {}


def test_fold_copies_rows_and_labels_exact():
  b, n = 3, 4
  # Pixel value 10 * image + copy, so every row says where it came from.
  values = (10 * np.arange(b)[:, None] + np.arange(n)[None, :]).astype(np.float32)
  images = np.broadcast_to(values[:, :, None, None, None], (b, n, 2, 2, 1))
  folded, labels = exemplar.fold_copies(tf.constant(images))
  assert folded.shape == (b * n, 2, 2, 1)
  np.testing.assert_array_equal(folded.numpy()[:, 0, 0, 0],
                                [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23])
  np.testing.assert_array_equal(labels.numpy(), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])


@pytest.mark.parametrize("normalization", ["per_example", "across_batch", "none"])
def test_loss_on_normalised_embeddings(normalization):
  # 3 source images mine as one group: the whole per-replica batch (groups
  # of 8 are refused on fewer than 8 images).
  task = task_lib.get_task("exemplar", num_classes=10, pp_train=PP_TRAIN,
                           normalization=normalization, mining_group_images=None)
  images = np.random.RandomState(0).rand(3, 4, 6, 6, 3).astype(np.float32)
  per_copy, outputs = task.compute_loss(
      _linear_model, {"image": tf.constant(images)}, training=True)
  raw = _linear_model(tf.constant(images.reshape(12, 6, 6, 3)), False)[0].numpy()
  emb = outputs["embeddings"].numpy()
  if normalization == "per_example":
    np.testing.assert_allclose(emb, raw / np.linalg.norm(raw, axis=1, keepdims=True),
                               rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
  elif normalization == "across_batch":
    np.testing.assert_allclose(emb, raw / np.linalg.norm(raw, axis=0, keepdims=True),
                               rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=0), 1.0, rtol=1e-5)
  else:
    np.testing.assert_allclose(emb, raw, rtol=1e-6)
  labels = np.repeat(np.arange(3), 4)
  np.testing.assert_array_equal(outputs["labels"].numpy(), labels)
  assert per_copy.shape == (12,)
  want = triplet_loss.semihard_triplet_loss(labels, emb, 0.5, "squared_l2")
  # What the trainer optimises: compute_average_loss of the shares.
  np.testing.assert_allclose(tf.nn.compute_average_loss(per_copy).numpy(),
                             want.numpy(), rtol=1e-6)
  metrics = task.make_metrics()
  task.update_metrics(metrics, outputs)
  want_nn = triplet_loss.nearest_neighbour_correct(labels, emb).numpy().mean()
  assert float(metrics["accuracy"].result()) == pytest.approx(want_nn)


def _run_pp(pp, training, seed, image):
  fn = preprocess_registry.get_preprocess_fn(pp, training=training)
  return fn({"image": tf.constant(image),
             "_rng": tf.constant([seed, 0], tf.int64)})["image"].numpy()


def test_training_pipeline_gray_once_per_image_and_standardized_crops():
  image = np.random.RandomState(1).randint(0, 256, (20, 24, 3)).astype(np.uint8)
  gray_count = 0
  for seed in range(30):
    copies = _run_pp(PP_TRAIN, True, seed, image)
    assert copies.shape == (8, 16, 16, 3)
    gray = [np.array_equal(c[..., 0], c[..., 1]) and
            np.array_equal(c[..., 0], c[..., 2]) for c in copies]
    assert len(set(gray)) == 1, "to_gray must decide once per source image"
    gray_count += gray[0]
    np.testing.assert_allclose(copies.mean(axis=(1, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(copies.std(axis=(1, 2, 3)), 1.0, rtol=1e-3)
    assert len({c.tobytes() for c in copies}) == 8  # independent crops
  # p = 2/3: expected 20 of 30 (binomial sd 2.6); the draws are seeded.
  assert 13 <= gray_count <= 27


def test_pretext_eval_pipeline_augments_deterministically():
  task = task_lib.get_task("exemplar", num_classes=10, pp_train=PP_TRAIN)
  assert task.copies_per_example == 8
  pp = task.preprocess(task_lib.PRETEXT_EVAL)
  assert pp == f"as_training({PP_TRAIN!r})"
  image = np.random.RandomState(2).randint(0, 256, (20, 20, 3)).astype(np.uint8)
  # Evaluation behaviour alone would give 8 identical central crops...
  plain = _run_pp(PP_TRAIN, False, 0, image)
  assert len({c.tobytes() for c in plain}) == 1
  # ...so the pretext evaluation runs the training augmentation, seeded.
  first = _run_pp(pp, False, 5, image)
  assert len({c.tobytes() for c in first}) == 8
  np.testing.assert_array_equal(first, _run_pp(pp, False, 5, image))
  assert not np.array_equal(first, _run_pp(pp, False, 6, image))
  assert task.preprocess(task_lib.REPRESENTATION) == (
      "decode|resize_small(256)|central_crop(224)|standardize")


def test_bad_configurations_name_the_fix():
  with pytest.raises(ValueError, match="per_example, across_batch, none"):
    task_lib.get_task("exemplar", num_classes=10, normalization="axis0")
  with pytest.raises(ValueError, match="squared_l2, l2"):
    task_lib.get_task("exemplar", num_classes=10, distance="cosine")
  task = task_lib.get_task("exemplar", num_classes=10)
  with pytest.raises(ValueError, match="inception_patches"):
    task.compute_loss(_linear_model, {"image": tf.zeros([2, 8, 8, 3])}, True)
  with pytest.raises(ValueError, match="train.batch_size"):
    task.compute_loss(_linear_model, {"image": tf.zeros([1, 8, 8, 8, 3])}, True)
  with pytest.raises(ValueError, match="as_training"):
    preprocess_registry.get_preprocess_fn("as_training(3)", training=False)


def test_a_replica_batch_smaller_than_a_mining_group_is_refused():
  # 16 replicas at a global batch of 64 give each replica 4 source images:
  # groups of 8 cannot be cut from them.
  task = task_lib.get_task("exemplar", num_classes=10, pp_train=PP_TRAIN)
  images = tf.zeros([4, 4, 6, 6, 3])
  with pytest.raises(ValueError, match=(
      r"exemplar.mining_group_images = 8, but each replica trains on only 4 "
      r"source images: its mining groups would shrink to 4. Raise "
      r"train.batch_size to at least 8 x the replicas")):
    task.compute_loss(_linear_model, {"image": images}, training=True)
  # Evaluation may see a short last batch: it is not refused.
  losses, _ = task.compute_loss(_linear_model, {"image": images}, training=False)
  assert losses.shape == (16,)
  # Groups as small as the replica's batch, or the whole batch, are allowed.
  for groups in (4, 2, None):
    small = task_lib.get_task("exemplar", num_classes=10, pp_train=PP_TRAIN,
                              mining_group_images=groups)
    losses, _ = small.compute_loss(_linear_model, {"image": images}, training=True)
    assert losses.shape == (16,)


class _SmallVal:
  """Fashion-MNIST with its val split cut to the first `num_val` images."""

  def __init__(self, dataset, num_val):
    self._dataset, self._num_val = dataset, num_val
    self.name, self.num_classes = dataset.name, dataset.num_classes

  def num_examples(self, split):
    n = self._dataset.num_examples(split)
    return min(n, self._num_val) if split == "val" else n

  def as_dataset(self, split, **kwargs):
    ds = self._dataset.as_dataset(split, **kwargs)
    return ds.take(self._num_val) if split == "val" else ds


@pytest.mark.slow
def test_trains_on_fashion_mnist_above_chance(tmp_path):
  # 8 images x 4 copies at 16 px per step (the reference: 8 copies at 224);
  # 200 steps, decayed at the end so the BN statistics settle.
  gin.parse_config("""
      exemplar.pp_train = 'decode|inception_patches(4, 16, area_min=25)|standardize'
      get_model.name = 'resnet50_v2'
      get_model.width = 1
      scaled_learning_rate.base_lr = 0.8
  """)
  dataset = registry.get_dataset("fashion_mnist")
  dataset.prepare()
  dataset = _SmallVal(dataset, 256)
  task = task_lib.get_task("exemplar", num_classes=dataset.num_classes)
  lines = []
  batch = 8
  trainer = trainer_lib.Trainer(
      task, dataset, str(tmp_path), tf.distribute.get_strategy(), seed=0,
      batch_size=batch, epochs=200 * batch / 55000, warmup_epochs=0,
      decay_epochs=[150 * batch / 55000, 185 * batch / 55000],
      steps_per_loop=100, checkpoint_secs=1e9, cache_dataset=True,
      shuffle_buffer=2000, eval_batch_size=batch, log=lines.append)
  assert trainer.train() == 200
  losses = [float(m) for m in re.findall(r" loss=([0-9.]+)", "\n".join(lines))]
  assert len(losses) == 2 and losses[1] < losses[0] - 0.03, lines
  metrics = trainer.evaluate_pretext()
  chance = 3 / (4 * batch - 1)  # 3 positives among the 31 other copies
  assert metrics["accuracy"] > 2.5 * chance, (metrics, lines)
  print(f"exemplar pretext accuracy {metrics['accuracy']:.3f} "
        f"(chance {chance:.3f}); loss per loop {losses}")


def test_one_replica_with_groups_of_8_equals_8_replicas_of_8_images():
  """docs/protocol.md §2: mining groups of 8 images, whatever the number of replicas."""
  task = task_lib.get_task("exemplar", num_classes=10, pp_train=PP_TRAIN)
  assert task.mining_group_images == 8
  images = np.random.RandomState(1).rand(64, 4, 6, 6, 3).astype(np.float32)
  one_replica, _ = task.compute_loss(_linear_model, {"image": tf.constant(images)},
                                     training=True)
  # What 8 replicas of 8 images each optimise: compute_average_loss over the
  # global batch of 64 x 4 copies, summed across replicas.
  per_replica = [
      tf.nn.compute_average_loss(
          task.compute_loss(_linear_model, {"image": tf.constant(part)},
                            training=True)[0],
          global_batch_size=64 * 4)
      for part in np.split(images, 8)]
  np.testing.assert_allclose(
      tf.nn.compute_average_loss(one_replica).numpy(),
      tf.add_n(per_replica).numpy(), rtol=1e-6)
  # Mining over the whole batch is another loss (negatives from other groups).
  whole = task_lib.get_task("exemplar", num_classes=10, pp_train=PP_TRAIN,
                            mining_group_images=None)
  whole_loss, _ = whole.compute_loss(_linear_model, {"image": tf.constant(images)},
                                     training=True)
  assert abs(float(tf.reduce_mean(whole_loss)) -
             float(tf.reduce_mean(one_replica))) > 1e-4
  with pytest.raises(ValueError, match="mining_group_images"):
    task_lib.get_task("exemplar", num_classes=10, mining_group_images=1)
