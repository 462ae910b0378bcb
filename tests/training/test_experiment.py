"""The `experiment` settings: a frozen record, built by gin, seeds checked."""
import dataclasses

import gin
import pytest

from training import experiment as experiment_lib


@pytest.fixture(autouse=True)
def _clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def test_gin_builds_a_frozen_experiment():
  gin.parse_config("""
      experiment.task = 'rotation'
      experiment.dataset = 'fashion_mnist'
      experiment.hub_modules = ['/m/1']
      experiment.eval_seeds = [2, 0, 2]
  """)
  e = experiment_lib.experiment_settings()
  assert (e.task, e.dataset, e.seed, e.hub_modules) == (
      "rotation", "fashion_mnist", 0, ("/m/1",))
  assert e.eval_seeds == (2, 0)  # distinct, in order
  assert e.protocols == e.evaluated_protocols == ("linear_lbfgs",)
  with pytest.raises(dataclasses.FrozenInstanceError):
    e.seed = 1
  assert dataclasses.replace(e, linear_eval_enabled=False).evaluated_protocols == ()


def test_task_and_dataset_are_required():
  with pytest.raises(RuntimeError, match="task"):
    experiment_lib.experiment_settings()


@pytest.mark.parametrize("seeds,message", [
    ([-1], "experiment.eval_seeds takes non-negative integers, e.g. [0, 1, 2]."),
    ([], "experiment.eval_seeds takes non-negative integers"),
    (["one"], "experiment.eval_seeds takes integers, e.g. [0, 1, 2] (got one)."),
])
def test_bad_eval_seeds_are_named(seeds, message):
  with pytest.raises(ValueError) as e:
    experiment_lib.experiment_settings(task="rotation", dataset="fashion_mnist",
                                       eval_seeds=seeds)
  assert message in str(e.value)
