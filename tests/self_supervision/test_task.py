"""The task contract: registration, discovery, pipelines, declared input scaling."""
import os

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

import fake_data
from tiny_tasks import TinyTrunk
from self_supervision import task as task_lib
from self_supervision import trainer as trainer_lib

BUILTIN = ["exemplar", "jigsaw", "relative_patch_location", "rotation",
           "supervised"]


def test_builtin_tasks_are_found_without_an_import_list():
  assert set(BUILTIN) <= set(task_lib.task_names())
  with pytest.raises(ValueError, match="Known tasks: .*rotation"):
    task_lib.get_task("rotaton", num_classes=10)


def test_a_task_defined_only_here_registers_and_trains(tmp_path):
  """Adding a task is its module alone: nothing else in the project is edited."""

  @task_lib.register("brightness_test_only")
  class Brightness(task_lib.Task):
    """Predicts whether an image was darkened: a task the project never saw."""

    def __init__(self, *, num_classes):
      pp = "decode|resize(8)|value_range(-1, 1)"
      super().__init__(num_classes=num_classes, pp_train=pp,
                       pp_pretext_eval=pp, pp_representation=pp)

    def build_model(self, seed=0):
      del seed
      return TinyTrunk(2)

    def compute_loss(self, model, batch, training):
      images = tf.concat([batch["image"], batch["image"] * 0.5 - 0.5], axis=0)
      labels = tf.repeat(tf.constant([0, 1]), tf.shape(batch["image"])[:1])
      logits, _ = model(images, training=training)
      per_example = keras.losses.sparse_categorical_crossentropy(
          labels, logits, from_logits=True)
      return per_example, {"labels": labels, "logits": logits}

  assert "brightness_test_only" in task_lib.task_names()
  dataset = fake_data.InMemoryDataset(num_train=16, num_val=8, num_test=8)
  task = task_lib.get_task("brightness_test_only", num_classes=3)
  assert isinstance(task, Brightness) and task.name == "brightness_test_only"
  trainer = trainer_lib.Trainer(
      task, dataset, str(tmp_path), tf.distribute.get_strategy(), seed=0,
      batch_size=4, epochs=1, warmup_epochs=0, decay_epochs=[],
      steps_per_loop=2, log=lambda _: None)
  assert trainer.train() == 4
  assert os.path.exists(str(tmp_path / "checkpoints" / "ckpt-4.index"))
  assert 0.0 <= trainer.evaluate_pretext()["accuracy"] <= 1.0


def test_every_task_names_its_three_pipelines_the_same_way(clean_gin):
  del clean_gin
  for name in BUILTIN:
    task = task_lib.get_task(name, num_classes=10)
    pipelines = [task.preprocess(m) for m in task_lib.MODES]
    assert all(isinstance(p, str) and p for p in pipelines), name
    with pytest.raises(ValueError, match="Unknown preprocessing mode"):
      task.preprocess("eval")


def test_declared_scaling_gives_the_unit_range_pipeline(clean_gin):
  del clean_gin
  rotation = task_lib.get_task("rotation", num_classes=10)
  assert rotation.input_scaling == "value_range(-1, 1)"
  assert (rotation.unit_range_pipeline()
          == "decode|resize_small(256)|central_crop(224)")
  images = tf.constant([[[[0.0, 0.5, 1.0]]]])
  np.testing.assert_allclose(rotation.scale_images(images).numpy(),
                             [[[[-1.0, 0.0, 1.0]]]])
  jigsaw = task_lib.get_task("jigsaw", num_classes=10)
  assert jigsaw.input_scaling == "standardize"
  assert jigsaw.unit_range_pipeline() == (
      "decode|resize_small(224)|central_crop(192)|crop_patches(3, patch_size=64)")
  patches = tf.random.stateless_uniform([2, 8, 8, 3], seed=[1, 2])
  np.testing.assert_allclose(
      jigsaw.scale_images(patches).numpy(),
      tf.image.per_image_standardization(patches).numpy(), atol=1e-6)


def test_a_representation_pipeline_must_end_with_the_scaling(clean_gin):
  del clean_gin
  with gin.unlock_config():
    gin.bind_parameter("rotation.pp_representation",
                       "decode|resize(32)|standardize")
  with pytest.raises(ValueError, match=r"must end with 'value_range\(-1, 1\)'"):
    task_lib.get_task("rotation", num_classes=10)
