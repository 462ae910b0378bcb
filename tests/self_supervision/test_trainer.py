"""The training loop: checkpoints, resume, NaN handling, distribution."""
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

import strategies

import fake_data
from datasets import input_pipeline
from self_supervision import task as task_lib
from self_supervision import trainer as trainer_lib
from training import workdir as workdir_lib

PP = ("rotation.pp_train = 'decode|resize(16)|value_range(-1, 1)|rotate'\n"
      "rotation.pp_representation = 'decode|resize(16)|value_range(-1, 1)'\n"
      "get_model.name = 'resnet50_v2'\n"
      "get_model.width = 1\n")


@pytest.fixture(autouse=True)
def _gin():
  task_lib.task_names()
  gin.clear_config()
  gin.parse_config(PP)
  yield
  gin.clear_config()


def _trainer(workdir, strategy=None, **kwargs):
  dataset = fake_data.InMemoryDataset(num_train=40, num_val=8, num_test=8)
  task = task_lib.get_task("rotation", num_classes=dataset.num_classes)
  settings = dict(batch_size=4, epochs=1, warmup_epochs=0, decay_epochs=[],
                  steps_per_loop=4, checkpoint_secs=1e9, log=lambda _: None)
  settings.update(kwargs)
  return trainer_lib.Trainer(task, dataset, str(workdir),
                             strategy or tf.distribute.get_strategy(),
                             seed=0, **settings)


def test_checkpoint_resume_nan_and_continue(tmp_path):
  trainer = _trainer(tmp_path)
  assert trainer.total_steps == 10  # 40 images / batch 4, one epoch
  assert trainer.train() == 10
  assert os.path.basename(trainer.manager.latest_checkpoint) == "ckpt-10"
  assert os.path.isdir(workdir_lib.Workdir(tmp_path).summaries)
  weights = [v.numpy() for v in trainer.model.trainable_variables]

  # A new trainer on the same workdir (as a new process would) resumes at 10
  # and, the run being finished, trains no further.
  again = _trainer(tmp_path)
  assert again.restore() == 10
  assert again.train() == 10
  for a, b in zip(weights, again.model.trainable_variables):
    np.testing.assert_array_equal(a, b.numpy())

  # A diverging continuation stops with an error naming the last good
  # checkpoint, and writes nothing over it.
  with gin.unlock_config():
    gin.bind_parameter("scaled_learning_rate.base_lr", 1e30)
  bad = _trainer(tmp_path, epochs=2)
  with pytest.raises(FloatingPointError, match="ckpt-10"):
    bad.train()
  assert os.path.basename(bad.manager.latest_checkpoint) == "ckpt-10"

  # With a sane LR, asking for more epochs continues from step 10 to the new
  # total (the interrupted-run case).
  with gin.unlock_config():
    gin.bind_parameter("scaled_learning_rate.base_lr", 0.1)
  longer = _trainer(tmp_path, epochs=2)
  assert longer.restore() == 10
  assert longer.train() == 20
  assert os.path.basename(longer.manager.latest_checkpoint) == "ckpt-20"


def test_batch_must_divide_between_replicas(tmp_path):
  strategy = strategies.two_replicas()
  with pytest.raises(ValueError, match="multiple of 2"):
    _trainer(tmp_path, strategy=strategy, batch_size=3)


def test_two_replicas_train_and_evaluate(tmp_path):
  strategy = strategies.two_replicas()
  trainer = _trainer(tmp_path, strategy=strategy, epochs=0.4)
  assert trainer.train() == 4
  metrics = trainer.evaluate_pretext()
  assert 0.0 <= metrics["accuracy"] <= 1.0
  # 8 val images x 4 rotations were all counted.
  assert int(trainer.eval_metrics["accuracy"].count.numpy()) == 32


def test_init_from_another_runs_workdir_then_resume_wins(tmp_path):
  source = _trainer(tmp_path / "source")
  assert source.train() == 10
  weights = [v.numpy() for v in source.model.trainable_variables]

  # 0 epochs from the other run's workdir (the fig8 runs): its newest
  # checkpoint, the model only; the new run counts from step 0.
  init = _trainer(tmp_path / "init_run", epochs=0,
                  init_checkpoint=str(tmp_path / "source"))
  assert init.train() == 0
  for a, b in zip(weights, init.model.trainable_variables):
    np.testing.assert_array_equal(a, b.numpy())
  assert os.path.basename(init.manager.latest_checkpoint) == "ckpt-0"

  # Once the run has its own checkpoint, that one wins over init_checkpoint.
  with gin.unlock_config():
    gin.bind_parameter("scaled_learning_rate.base_lr", 0.1)
  again = _trainer(tmp_path / "init_run", epochs=1,
                   init_checkpoint=str(tmp_path / "missing"))
  assert again.restore() == 0

  no_checkpoints = workdir_lib.Workdir(tmp_path / "init_run").summaries
  with pytest.raises(FileNotFoundError, match="train that run first"):
    _trainer(tmp_path / "fresh", init_checkpoint=no_checkpoints).train()


def test_a_resumed_run_ends_with_the_weights_of_the_uninterrupted_one(tmp_path):
  # Random crops and flips, and stops at steps 4 and 12 (an epoch is 10
  # steps): the resumed runs must see the same examples in the same order
  # with the same augmentations as the uninterrupted one.
  with gin.unlock_config():
    gin.bind_parameter("rotation.pp_train", "decode|inception_crop(16)|flip_lr|"
                       "value_range(-1, 1)|rotate")
  uninterrupted = _trainer(tmp_path / "whole", epochs=2)
  assert uninterrupted.train() == 20
  expected = [v.numpy() for v in uninterrupted.model.trainable_variables]

  for stop in (4, 12):
    part = _trainer(tmp_path / "resumed", epochs=2)
    part.restore()
    part.loop.train(stop)
    part.loop.save()
  resumed = _trainer(tmp_path / "resumed", epochs=2)
  assert resumed.train() == 20
  for a, b in zip(expected, resumed.model.trainable_variables):
    np.testing.assert_allclose(b.numpy(), a, rtol=0, atol=1e-5)


def test_a_last_eval_batch_smaller_than_the_replicas_is_masked(tmp_path):
  # 5 val images in global batches of 4 on 2 replicas: the last batch gives
  # replica 0 one image and replica 1 only padding. Exemplar mines within
  # each replica's rows, so the padding must not enter its nearest-neighbour
  # search: the metrics equal the task run on the groups {0,1}, {2,3}, {4}.
  with gin.unlock_config():
    gin.parse_config(
        "exemplar.pp_train = 'decode|inception_patches(2, 16, area_min=50)|"
        "standardize'\n"
        "exemplar.pp_representation = 'decode|resize(16)|standardize'\n"
        "exemplar.embedding_size = 8\n")
  dataset = fake_data.InMemoryDataset(num_train=8, num_val=5, num_test=4)
  task = task_lib.get_task("exemplar", num_classes=dataset.num_classes)
  trainer = trainer_lib.Trainer(
      task, dataset, str(tmp_path), strategies.two_replicas(), seed=0,
      batch_size=4, eval_batch_size=4, epochs=0, log=lambda _: None)
  got = trainer.evaluate_pretext()
  assert int(trainer.eval_metrics["accuracy"].count.numpy()) == 5 * 2

  batch = next(iter(input_pipeline.make_dataset(
      dataset, "val", task.preprocess(task_lib.PRETEXT_EVAL), 5,
      training=False)))
  correct, losses = [], []
  for a, b in ((0, 2), (2, 4), (4, 5)):
    _, out = task.compute_loss(trainer.model,
                               {k: v[a:b] for k, v in batch.items()}, False)
    correct.append(out["nn_correct"].numpy())
    losses.append(out["per_copy_loss"].numpy())
  np.testing.assert_allclose(got["accuracy"], np.concatenate(correct).mean(),
                             rtol=1e-6)
  np.testing.assert_allclose(got["triplet_loss"], np.concatenate(losses).mean(),
                             rtol=1e-4, atol=1e-6)
