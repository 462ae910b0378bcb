"""Every config a user can start parses, includes resolve, and its task builds."""
import glob
import os

import gin
import pytest

import run_lib  # noqa: F401  (every configurable a run's config binds)
from self_supervision import patch_task
from self_supervision import task as task_lib
from training import config as config_lib
from training import schedule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_CONFIGS = sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.gin"),
                                                recursive=True)
    if os.sep + "common" + os.sep not in p and os.path.basename(p) != "common.gin")


def test_the_run_configs_are_found():
  assert "configs/demo_fashion_mnist.gin" in RUN_CONFIGS
  # The demo, 5 more Fashion-MNIST configs, 72 Table 1 cells, supervised ImageNet,
  # the miniature's 6 (Rnd, 4 tasks, supervised).
  assert len(RUN_CONFIGS) == 85


@pytest.mark.parametrize("path", RUN_CONFIGS)
def test_config_parses_and_builds_its_task(path, clean_gin, monkeypatch):
  del clean_gin
  # Includes are found from the repository root whatever the working directory.
  monkeypatch.chdir("/")
  config_lib.parse([os.path.join(ROOT, path)])
  task_name = gin.query_parameter("experiment.task")
  task = task_lib.get_task(task_name, num_classes=10)
  assert task.name == task_name
  assert gin.query_parameter("experiment.dataset") in (
      "fashion_mnist", "imagenet2012")


def test_shared_includes_state_spec_once(clean_gin):
  del clean_gin
  config_lib.parse([os.path.join(ROOT, "configs/jigsaw/imagenet_resnet50_v1_k8.gin")])
  assert gin.query_parameter("train.epochs") == 35
  assert gin.query_parameter("train.decay_epochs") == [15, 25]
  assert gin.query_parameter("train.batch_size") == 128
  assert schedule.scaled_learning_rate(128) == pytest.approx(0.05)
  task = task_lib.get_task("jigsaw", num_classes=1000)
  assert task.preprocess(task_lib.TRAIN) == patch_task.DEFAULT_PP_TRAIN
  assert task.embedding_size == 1000 and task.head_hidden == 4096


@pytest.mark.parametrize("path", [p for p in RUN_CONFIGS if "imagenet" in p])
def test_imagenet_configs_use_the_table1_protocol(path, clean_gin):
  # docs/protocol.md §5: fit on train, L2 chosen on val, scored on val; no refit, no test.
  del clean_gin
  config_lib.parse([os.path.join(ROOT, path)])
  assert [gin.query_parameter(f"linear_eval.{name}") for name in (
      "train_split", "val_split", "eval_split", "refit_on_train_and_val")] == [
          "train", "val", "val", False]
