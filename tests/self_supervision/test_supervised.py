"""Supervised baseline, random-init baseline (0 training steps), configs."""
import json
import os
import re

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

import fake_data
import run_lib
from datasets import registry
from self_supervision import task as task_lib
from self_supervision import trainer as trainer_lib
from training import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


pytestmark = pytest.mark.usefixtures("clean_gin")


_LOGITS = np.array([[2.0, -1.0, 0.5, 0.0, 1.0, -2.0],
                    [0.1, 0.2, -0.5, 0.3, 0.4, 0.0],
                    [-3.0, 4.0, 1.0, 2.0, 0.0, 3.0]], np.float32)
_LABELS = np.array([4, 2, 0], np.int64)


def _fixed_model(images, training):
  del images, training
  return tf.constant(_LOGITS), {}


def test_loss_is_keras_crossentropy_and_metrics_exact():
  task = task_lib.get_task("supervised", num_classes=6)
  per_example, outputs = task.compute_loss(
      _fixed_model, {"image": tf.zeros([3, 4, 4, 3]), "label": _LABELS}, True)
  shifted = _LOGITS - _LOGITS.max(axis=1, keepdims=True)
  log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  want = -log_softmax[np.arange(3), _LABELS]
  np.testing.assert_allclose(per_example.numpy(), want, rtol=1e-6)
  keras_mean = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
      _LABELS, _LOGITS)
  np.testing.assert_allclose(tf.nn.compute_average_loss(per_example).numpy(),
                             keras_mean.numpy(), rtol=1e-6)
  metrics = task.make_metrics()
  metrics["loss"] = keras.metrics.Mean()  # the trainer's own entry
  task.update_metrics(metrics, outputs)
  # Top-1: the rows predict 0, 4, 1 for labels 4, 2, 0: 0/3. Top-5: label 4
  # is 2nd in row 0; labels 2 and 0 are last in rows 1 and 2: 1/3.
  assert float(metrics["accuracy"].result()) == 0.0
  assert float(metrics["top5_accuracy"].result()) == pytest.approx(1 / 3)
  assert float(metrics["loss"].count) == 0


def test_pipelines_and_bad_inputs():
  task = task_lib.get_task("supervised", num_classes=10)
  assert task.preprocess(task_lib.TRAIN) == "decode|inception_preprocess(224)"
  eval_pp = "decode|resize_small(256)|central_crop(224)|value_range(-1,1)"
  assert task.preprocess(task_lib.PRETEXT_EVAL) == eval_pp
  assert task.preprocess(task_lib.REPRESENTATION) == eval_pp
  with pytest.raises(ValueError, match="number of classes"):
    task_lib.get_task("supervised", num_classes=1)
  with pytest.raises(ValueError, match="multi-copy ops"):
    task.compute_loss(_fixed_model, {"image": tf.zeros([3, 4, 4, 4, 3]),
                                     "label": _LABELS}, True)
  assert "top5_accuracy" not in task_lib.get_task(
      "supervised", num_classes=3).make_metrics()


def _parse(path):
  with gin.unlock_config():
    gin.parse_config_file(os.path.join(ROOT, path))


def _bindings(path):
  _parse(path)
  return {name: gin.query_parameter(name) for name in (
      "experiment.task", "get_model.name", "get_model.width", "train.epochs",
      "train.warmup_epochs", "train.decay_epochs", "train.batch_size")}


@pytest.mark.parametrize("path,want", [
    ("configs/supervised/imagenet_resnet50_v2_k4.gin",
     ("supervised", "resnet50_v2", 4, 90, 5, [30, 60, 80], 256)),
    ("configs/exemplar/imagenet_resnet50_v1_k12.gin",
     ("exemplar", "resnet50_v1", 12, 35, 5, [15, 25], 64)),
    ("configs/supervised/fashion_mnist.gin",
     ("supervised", "resnet50_v2", 1, 2, 0.2, [1.2, 1.7], 64)),
    ("configs/exemplar/fashion_mnist.gin",
     ("exemplar", "resnet50_v2", 1, 1, 0.1, [0.6, 0.85], 32)),
])
def test_configs_bind_the_spec_settings(path, want):
  got = _bindings(path)
  assert tuple(got.values()) == want
  task = task_lib.get_task(got["experiment.task"], num_classes=1000)
  if got["experiment.task"] == "exemplar":
    assert task.copies_per_example == 8
    assert task.margin == 0.5 and task.normalization == "per_example"


def test_random_init_trains_zero_steps_end_to_end(tmp_path, monkeypatch):
  # The real config, on 16 px fake data: run_lib.run (train_and_eval.py's)
  # evaluates the trunk at its initialisation. (The export is tested in test_export.py.)
  _parse("configs/random_init/fashion_mnist.gin")
  assert gin.query_parameter("train.epochs") == 0
  with gin.unlock_config():
    gin.parse_config("""
        supervised.pp_train = 'decode|resize(16)|value_range(-1, 1)'
        supervised.pp_representation = 'decode|resize(16)|value_range(-1, 1)'
        train.batch_size = 8
        train.eval_batch_size = 16
        linear_eval.batch_size = 16
        linear_eval.l2_grid = [0.1, 0.001]
        linear_eval.max_iter = 50
        hub_export.enabled = False
    """)
  dataset = fake_data.InMemoryDataset(num_train=48, num_val=16, num_test=16)
  monkeypatch.setattr(registry, "get_dataset", lambda *a, **k: dataset)
  results = run_lib.run(str(tmp_path), "train_and_eval",
                        tf.distribute.get_strategy())
  assert results["run"]["steps"] == 0 and results["run"]["total_steps"] == 0
  assert 0.0 <= results["pretext"]["accuracy"] <= 1.0
  (entry,) = results["evaluations"]
  assert entry["trunk"] == "trained@0" and entry["layer"] == "pre_logits"
  assert entry["protocol"] == "linear_lbfgs"
  run = workdir_lib.Workdir(tmp_path)
  with open(run.results_json) as f:
    assert json.load(f)["run"]["steps"] == 0
  # The initialisation is saved as step 0, for --mode=eval and the export.
  assert tf.train.latest_checkpoint(run.checkpoints).endswith("ckpt-0")


@pytest.mark.slow
def test_trains_on_fashion_mnist(tmp_path):
  # 16 px, 32 images per step, 250 steps. So short a run is limited by the BN
  # moving statistics (momentum 0.99), which lag the changing weights: after
  # 200 steps at full LR the val accuracy is ~23% in inference mode but ~66%
  # with batch statistics. Dropping the LR 100-fold after 110 steps lets them
  # partly catch up (~34%); the training accuracy (batch statistics) of the
  # last 125 steps (~45%) is checked as well.
  gin.parse_config("""
      supervised.pp_train = 'decode|resize(16)|flip_lr|value_range(-1, 1)'
      supervised.pp_representation = 'decode|resize(16)|value_range(-1, 1)'
      get_model.name = 'resnet50_v2'
      get_model.width = 1
      scaled_learning_rate.base_lr = 0.4
  """)
  dataset = registry.get_dataset("fashion_mnist")
  dataset.prepare()
  task = task_lib.get_task("supervised", num_classes=dataset.num_classes)
  batch = 32
  epoch = 55000 / batch
  lines = []
  trainer = trainer_lib.Trainer(
      task, dataset, str(tmp_path), tf.distribute.get_strategy(), seed=0,
      batch_size=batch, epochs=250 / epoch, warmup_epochs=0,
      decay_epochs=[100 / epoch, 110 / epoch], steps_per_loop=125,
      checkpoint_secs=1e9, cache_dataset=True, shuffle_buffer=2000,
      eval_batch_size=1000, log=lines.append)
  assert trainer.train() == 250
  metrics = trainer.evaluate_pretext()
  assert int(trainer.eval_metrics["accuracy"].count) == 5000
  assert metrics["accuracy"] > 0.25, (metrics, lines)  # chance: 0.1
  train_accuracy = [float(a) for a in re.findall(
      r"step \d+/\d+ loss=\S+ accuracy=([0-9.]+)", "\n".join(lines))]
  assert len(train_accuracy) == 2 and train_accuracy[1] > 0.35, lines
  print(f"supervised val accuracy {metrics['accuracy']:.3f}; {lines}")
