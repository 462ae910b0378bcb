"""Relative patch location: the 8 (neighbour, centre) pairs and their labels."""
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from datasets import registry
from self_supervision import patch_task
from self_supervision import relative_patch_location as rpl
from self_supervision import task as task_lib
from tiny_tasks import PatchIndexTrunk, RecordingHead
from self_supervision import trainer as trainer_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
B = 3


pytestmark = pytest.mark.usefixtures("clean_gin")


def test_pairs_and_labels_are_exact():
  assert rpl.NEIGHBOURS == (0, 1, 2, 3, 5, 6, 7, 8)
  task = task_lib.get_task("relative_patch_location", num_classes=10)
  assert task.copies_per_example == 8 and task.num_pretext_classes == 8
  # Patch p of image b is constant 10 * b + p: its embedding names it.
  values = 10 * np.arange(B)[:, None] + np.arange(9)[None, :]
  images = np.broadcast_to(values[:, :, None, None, None].astype(np.float32),
                           (B, 9, 4, 4, 3))
  expected = np.array([[10 * b + i, -(10 * b + i), 10 * b + 4, -(10 * b + 4)]
                       for b in range(B) for i in (0, 1, 2, 3, 5, 6, 7, 8)],
                      np.float32)
  for training in (True, False):
    head = RecordingHead(8)
    network = patch_task.PatchNetwork(PatchIndexTrunk(), head)
    per_example, outputs = task.compute_loss(
        network, {"image": tf.constant(images)}, training=training)
    np.testing.assert_array_equal(head.inputs[-1], expected)
    np.testing.assert_array_equal(outputs["labels"].numpy(),
                                  [0, 1, 2, 3, 4, 5, 6, 7] * B)
    np.testing.assert_allclose(per_example.numpy(), np.log(8.0), rtol=1e-6)


def test_pair_embeddings_directly():
  embeddings = tf.reshape(tf.range(2 * 9 * 3, dtype=tf.float32), [2, 9, 3])
  pairs = rpl.pair_embeddings(embeddings).numpy()
  e = embeddings.numpy()
  assert pairs.shape == (16, 6)
  np.testing.assert_array_equal(pairs[4], np.concatenate([e[0, 5], e[0, 4]]))
  np.testing.assert_array_equal(pairs[15], np.concatenate([e[1, 8], e[1, 4]]))
  np.testing.assert_array_equal(rpl.location_labels(2).numpy(),
                                list(range(8)) * 2)


def test_imagenet_config_is_the_reference_setting():
  gin.parse_config_file(
      os.path.join(ROOT, "configs/relative_patch_location/imagenet_resnet50_v1_k8.gin"),
      skip_unknown=True)
  assert gin.query_parameter("get_model.name") == "resnet50_v1"
  assert gin.query_parameter("get_model.width") == 8
  assert gin.query_parameter("train.batch_size") == 128
  task = task_lib.get_task("relative_patch_location", num_classes=1000)
  assert task.embedding_size == 1000 and task.head_hidden == 4096
  assert task.preprocess(task_lib.TRAIN) == patch_task.DEFAULT_PP_TRAIN
  assert (task.preprocess(task_lib.REPRESENTATION)
          == patch_task.DEFAULT_PP_REPRESENTATION)


@pytest.mark.slow
def test_learns_on_fashion_mnist(tmp_path):
  # The Fashion-MNIST config as it is (8 px patches, batch 32, Adam), for 150
  # steps at a constant learning rate; 300 held-out images for the pretext.
  gin.parse_config_file(
      os.path.join(ROOT, "configs/relative_patch_location/fashion_mnist.gin"),
      skip_unknown=True)
  dataset = registry.get_dataset("fashion_mnist", holdout=300)
  dataset.prepare()
  task = task_lib.get_task("relative_patch_location",
                           num_classes=dataset.num_classes)
  trainer = trainer_lib.Trainer(
      task, dataset, str(tmp_path), tf.distribute.get_strategy(), seed=0,
      epochs=150 * 32 / dataset.num_examples("train"), warmup_epochs=0,
      decay_epochs=[], steps_per_loop=150, checkpoint_secs=1e9,
      eval_batch_size=100, log=print)
  assert trainer.global_batch_size == 32
  assert trainer.train() == 150
  accuracy = trainer.evaluate_pretext()["accuracy"]
  print(f"relative patch location pretext accuracy on 300 val images: "
        f"{100 * accuracy:.2f}%")
  assert accuracy > 0.25  # chance: 1 / 8; measured 34.6%
