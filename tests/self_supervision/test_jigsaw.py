"""Jigsaw: permutation order of the concatenated embeddings, draws, training."""
import os

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

import strategies

from datasets import registry
from self_supervision import jigsaw
from self_supervision import patch_task
from self_supervision import permutations
from self_supervision import task as task_lib
from tiny_tasks import PatchIndexTrunk, RecordingHead
from self_supervision import trainer as trainer_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
B = 3


pytestmark = pytest.mark.usefixtures("clean_gin")


def _patch_values():
  # Patch p of image b is constant 10 * b + p: its embedding names it.
  return 10 * np.arange(B)[:, None] + np.arange(9)[None, :]


def _batch():
  values = _patch_values().astype(np.float32)
  return {"image": tf.constant(np.broadcast_to(
      values[:, :, None, None, None], (B, 9, 4, 4, 3)))}


def _expected_features(classes):
  table = permutations.load(100)
  values = _patch_values()
  rows = []
  for b in range(B):
    for c in classes:
      ordered = values[b, table[c]]  # patch at position k is table[c, k]
      rows.append(np.stack([ordered, -ordered], axis=1).reshape(-1))
  return np.array(rows, np.float32)


def test_training_gathers_embeddings_in_permutation_order():
  task = task_lib.get_task("jigsaw", num_classes=10)
  assert task.copies_per_example == 8
  head = RecordingHead(100)
  network = jigsaw.JigsawNetwork(PatchIndexTrunk(), head, draw_seed=5)
  draws = []
  for step in range(2):
    per_example, outputs = task.compute_loss(network, _batch(), training=True)
    classes = jigsaw.draw_classes(tf.constant([5, step], tf.int64), 100, 8)
    classes = classes.numpy()
    draws.append(classes)
    assert len(set(classes)) == 8 and classes.min() >= 0 and classes.max() < 100
    np.testing.assert_array_equal(outputs["labels"].numpy(), np.tile(classes, B))
    assert head.inputs[-1].shape == (B * 8, 9 * 2)
    np.testing.assert_array_equal(head.inputs[-1], _expected_features(classes))
    np.testing.assert_allclose(per_example.numpy(), np.log(100.0), rtol=1e-6)
    assert int(network.permutation_draws.numpy()) == step + 1
  assert not np.array_equal(draws[0], draws[1])
  # Same seed, same draws: a fresh network replays them.
  again = jigsaw.JigsawNetwork(PatchIndexTrunk(), RecordingHead(100), draw_seed=5)
  _, outputs = task.compute_loss(again, _batch(), training=True)
  np.testing.assert_array_equal(outputs["labels"].numpy()[:8], draws[0])


class ZeroHead(keras.layers.Layer):

  def call(self, features, training=False):
    return tf.zeros([tf.shape(features)[0], 100])


def test_replicas_draw_the_same_permutations_once_per_step():
  task = task_lib.get_task("jigsaw", num_classes=10)
  strategy = strategies.two_replicas()
  with strategy.scope():
    network = jigsaw.JigsawNetwork(PatchIndexTrunk(), ZeroHead(), draw_seed=5)

  @tf.function
  def step(batch):
    return strategy.run(
        lambda b: task.compute_loss(network, b, training=True)[1]["labels"],
        args=(batch,))

  images = tf.data.Dataset.from_tensors(_batch()["image"][:2]).repeat(2)
  batches = tf.data.Dataset.zip({"image": images}).unbatch().batch(2)
  for count, batch in enumerate(strategy.experimental_distribute_dataset(batches)):
    labels = [l.numpy() for l in strategy.experimental_local_results(step(batch))]
    expected = jigsaw.draw_classes(tf.constant([5, count], tf.int64), 100, 8)
    for replica_labels in labels:  # one image per replica
      np.testing.assert_array_equal(replica_labels, expected.numpy())
    assert int(network.permutation_draws.numpy()) == count + 1


def test_evaluation_uses_all_100_permutations():
  task = task_lib.get_task("jigsaw", num_classes=10)
  head = RecordingHead(100)
  network = jigsaw.JigsawNetwork(PatchIndexTrunk(), head, draw_seed=5)
  _, outputs = task.compute_loss(network, _batch(), training=False)
  np.testing.assert_array_equal(outputs["labels"].numpy(),
                                np.tile(np.arange(100), B))
  np.testing.assert_array_equal(head.inputs[-1], _expected_features(range(100)))
  assert int(network.permutation_draws.numpy()) == 0


def test_permute_embeddings_directly():
  embeddings = tf.reshape(tf.range(2 * 9 * 3, dtype=tf.float32), [2, 9, 3])
  perms = tf.constant([[8, 7, 6, 5, 4, 3, 2, 1, 0], list(range(9))])
  out = jigsaw.permute_embeddings(embeddings, perms).numpy()
  e = embeddings.numpy()
  np.testing.assert_array_equal(out[0], e[0, ::-1].reshape(-1))
  np.testing.assert_array_equal(out[1], e[0].reshape(-1))
  np.testing.assert_array_equal(out[3], e[1].reshape(-1))


def test_bad_settings():
  with pytest.raises(ValueError, match="permutations_per_batch"):
    task_lib.get_task("jigsaw", num_classes=10, permutations_per_batch=101)
  with pytest.raises(FileNotFoundError, match="make_permutations.py --num=64"):
    task_lib.get_task("jigsaw", num_classes=10, num_permutations=64)
  task = task_lib.get_task("jigsaw", num_classes=10)
  with pytest.raises(ValueError, match="Jigsaw.build_model"):
    task.compute_loss(patch_task.PatchNetwork(PatchIndexTrunk(), RecordingHead(100)),
                      _batch(), training=True)


def test_imagenet_config_is_the_reference_setting():
  gin.parse_config_file(os.path.join(ROOT, "configs/jigsaw/imagenet_resnet50_v1_k8.gin"),
                        skip_unknown=True)
  assert gin.query_parameter("get_model.name") == "resnet50_v1"
  assert gin.query_parameter("get_model.width") == 8
  assert gin.query_parameter("train.batch_size") == 128
  task = task_lib.get_task("jigsaw", num_classes=1000)
  assert task.num_pretext_classes == 100 and task.permutations_per_batch == 8
  assert task.embedding_size == 1000 and task.head_hidden == 4096


@pytest.mark.slow
def test_learns_on_fashion_mnist(tmp_path):
  # The Fashion-MNIST config as it is (8 px patches, batch 32, Adam), for 150
  # steps at a constant learning rate; 300 held-out images for the pretext.
  gin.parse_config_file(os.path.join(ROOT, "configs/jigsaw/fashion_mnist.gin"),
                        skip_unknown=True)
  dataset = registry.get_dataset("fashion_mnist", holdout=300)
  dataset.prepare()
  task = task_lib.get_task("jigsaw", num_classes=dataset.num_classes)
  trainer = trainer_lib.Trainer(
      task, dataset, str(tmp_path), tf.distribute.get_strategy(), seed=0,
      epochs=150 * 32 / dataset.num_examples("train"), warmup_epochs=0,
      decay_epochs=[], steps_per_loop=150, checkpoint_secs=1e9,
      eval_batch_size=100, log=print)
  assert trainer.global_batch_size == 32
  assert trainer.train() == 150
  # One draw of 8 permutations per step, counted inside the compiled loop.
  assert int(trainer.model.permutation_draws.numpy()) == 150
  accuracy = trainer.evaluate_pretext()["accuracy"]
  print(f"jigsaw pretext accuracy on 300 val images: {100 * accuracy:.2f}%")
  assert accuracy > 0.03  # chance: 1 / 100; measured 13.7%
