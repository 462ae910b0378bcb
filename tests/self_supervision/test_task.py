"""The task contract: registration, discovery, pipelines, declared input scaling,
and each check of the contract failing with its own message."""
import os

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

import fake_data
import models
from tiny_tasks import TinySupervised
from tiny_tasks import TinyTrunk
from self_supervision import task as task_lib
from self_supervision import trainer as trainer_lib
from training import workdir as workdir_lib

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
  assert os.path.exists(
      os.path.join(workdir_lib.Workdir(tmp_path).checkpoints, "ckpt-4.index"))
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


# --- the contract: each check fails with its own message ----------------------


class _Plain(keras.layers.Layer):
  """Not a Task: registering it must fail."""


def test_registration_checks_the_class_its_name_and_its_scaling():
  with pytest.raises(ValueError, match="decorates a subclass of .*Task"):
    task_lib.register("plain_test_only")(_Plain)
  with pytest.raises(ValueError, match="lower_snake_case"):
    task_lib.register("Upside-Down")(TinySupervised)

  class Resized(TinySupervised):
    input_scaling = "resize(8)"  # not a scaling the module could apply
  with pytest.raises(ValueError, match="Resized.input_scaling = 'resize\\(8\\)' "
                                       "must be one op among standardize, "
                                       "value_range"):
    task_lib.register("resized_test_only")(Resized)
  assert "resized_test_only" not in task_lib.task_names()


def _dataset():
  return fake_data.InMemoryDataset(num_train=8, num_val=4, num_test=4, size=8)


def test_the_builtin_fixture_keeps_the_contract():
  model = TinySupervised(num_classes=3).make_model(_dataset(), seed=0)
  assert isinstance(model, TinyTrunk)


def test_metrics_must_include_accuracy():

  class NoAccuracy(TinySupervised):
    def make_metrics(self):
      return {"top1": keras.metrics.SparseCategoricalAccuracy(name="top1")}

    def update_metrics(self, metrics, outputs):
      metrics["top1"].update_state(outputs["labels"], outputs["logits"])

  with pytest.raises(ValueError, match=r"NoAccuracy.make_metrics\(\) must return "
                                       r"a dict holding 'accuracy'.*\['top1'\]"):
    NoAccuracy(num_classes=3).make_model(_dataset(), seed=0)


def test_metrics_must_read_what_the_loss_returns():

  class Renamed(TinySupervised):
    def compute_loss(self, model, batch, training):
      loss, outputs = super().compute_loss(model, batch, training)
      return loss, {"targets": outputs["labels"], "logits": outputs["logits"]}

  with pytest.raises(ValueError, match=r"Renamed.update_metrics fails on the "
                                       r"outputs of compute_loss \(keys "
                                       r"\['logits', 'targets'\]\): KeyError"):
    Renamed(num_classes=3).make_model(_dataset(), seed=0)


def test_the_loss_is_one_value_per_network_input():

  class Averaged(TinySupervised):
    def compute_loss(self, model, batch, training):
      loss, outputs = super().compute_loss(model, batch, training)
      return tf.reduce_mean(loss), outputs

  with pytest.raises(ValueError, match=r"Averaged.compute_loss must return one "
                                       r"float loss per network input, shape "
                                       r"\[N\]; got float32 of shape \(\)\. Do "
                                       r"not average it"):
    Averaged(num_classes=3).make_model(_dataset(), seed=0)

  class LossOnly(TinySupervised):
    def compute_loss(self, model, batch, training):
      return super().compute_loss(model, batch, training)[0]

  with pytest.raises(ValueError, match=r"LossOnly.compute_loss must return "
                                       r"\(per_example_loss \[N\], outputs\)"):
    LossOnly(num_classes=3).make_model(_dataset(), seed=0)


def test_the_representation_is_read_from_rgb_images():
  task = TinySupervised(num_classes=3,
                        pp="decode(1)|resize(8)|value_range(-1, 1)")
  with pytest.raises(ValueError, match=r"tiny_supervised.pp_representation = "
                                       r"'decode\(1\).*' gives examples of shape "
                                       r"\(8, 8, 1\) on in_memory; a "
                                       r"representation is read from RGB"):
    task.make_model(_dataset(), seed=0)


def test_copies_per_example_is_a_positive_int():

  class NoCopies(TinySupervised):
    copies_per_example = 0

  with pytest.raises(ValueError, match="NoCopies.copies_per_example must be a "
                                       "positive int"):
    NoCopies(num_classes=3).make_model(_dataset(), seed=0)


class _HeadOnTrunk(keras.Model):
  """A pretext head on a project trunk, as a fifth task might build it."""

  def __init__(self, trunk, num_classes):
    super().__init__(name="head_on_trunk")
    self.body = trunk
    self.head = keras.layers.Dense(num_classes, name="head")

  def call(self, images, training=False):
    _, end_points = self.body(images, training=training)
    return self.head(end_points["pre_logits"]), end_points


class _Headed(TinySupervised):
  """TinySupervised whose network is a head on a real (thin) trunk."""

  def build_model(self, seed=0):
    del seed
    trunk = models.get_model("resnet50_v2", width=1, num_classes=None)
    return _HeadOnTrunk(trunk, self.dataset_num_classes)


def test_a_network_that_wraps_the_trunk_overrides_trunk():
  with pytest.raises(ValueError, match=r"_Headed.build_model\(\) returns "
                                       r"'head_on_trunk', which wraps the trunk "
                                       r"'resnet50_v2': override "
                                       r"_Headed.trunk\(model\) to return it"):
    _Headed(num_classes=3).make_model(_dataset(), seed=0)

  class Overridden(_Headed):
    def trunk(self, model):
      return model.body

  task = Overridden(num_classes=3)
  model = task.make_model(_dataset(), seed=0)
  assert task.trunk(model) is model.body


def test_the_trunk_returns_logits_and_end_points_with_pre_logits():

  class Unnamed(TinyTrunk):
    def call(self, images, training=False):
      logits, end_points = super().call(images, training=training)
      return logits, {"features": end_points["pre_logits"]}

  class Renamed(TinySupervised):
    def build_model(self, seed=0):
      del seed
      return Unnamed(self.dataset_num_classes)

  with pytest.raises(ValueError, match=r"Renamed.trunk\(model\) must give a "
                                       r"trunk called as trunk\(images .*"
                                       r"holding 'pre_logits' \[B, D\].*gave a "
                                       r"2-tuple of .*dict \['features'\]"):
    Renamed(num_classes=3).make_model(_dataset(), seed=0)
