"""Choosing the strategy: names, and the cluster of a multi-worker run."""
import json
import types

import pytest
import tensorflow as tf

from training import strategy as strategy_lib

WORKERS = ["localhost:8888", "localhost:8889"]


def _slurm_step(monkeypatch, rank):
  # What srun sets for task `rank` of a 2-task step on one node.
  monkeypatch.delenv("TF_CONFIG", raising=False)
  monkeypatch.setenv("SLURM_PROCID", str(rank))
  monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
  monkeypatch.setenv("SLURM_STEP_NODELIST", "localhost")
  monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "2")
  monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.mark.parametrize("rank", [0, 1])
def test_a_slurm_step_resolves_to_the_cluster_of_its_tf_config(monkeypatch, rank):
  _slurm_step(monkeypatch, rank)
  slurm = strategy_lib.cluster_resolver()
  assert isinstance(slurm, tf.distribute.cluster_resolver.SlurmClusterResolver)
  slurm_cluster = slurm.cluster_spec().as_dict()
  slurm_task = slurm.get_task_info()

  monkeypatch.setenv("TF_CONFIG", json.dumps(
      {"cluster": {"worker": WORKERS}, "task": {"type": "worker", "index": rank}}))
  tf_config = strategy_lib.cluster_resolver()
  assert isinstance(tf_config,
                    tf.distribute.cluster_resolver.TFConfigClusterResolver)
  assert slurm_cluster == tf_config.cluster_spec().as_dict() == {"worker": WORKERS}
  assert slurm_task == (tf_config.task_type, tf_config.task_id) == ("worker", rank)


def test_auto_picks_multi_worker_where_a_cluster_is_described(monkeypatch):
  made = []

  def fake_strategy(cluster_resolver):
    # What set_role reads of a MultiWorkerMirroredStrategy: task 1 is no chief.
    made.append(types.SimpleNamespace(
        cluster_resolver=cluster_resolver,
        extended=types.SimpleNamespace(should_checkpoint=False)))
    return made[-1]
  monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", fake_strategy)
  _slurm_step(monkeypatch, 1)
  assert strategy_lib.make_strategy("auto") is made[-1]
  resolver = made[-1].cluster_resolver
  assert resolver.cluster_spec().as_dict() == {"worker": WORKERS}
  assert resolver.get_task_info() == ("worker", 1)
  assert not strategy_lib.is_chief()
  assert strategy_lib.worker_scratch("/w/checkpoints") == (
      "/w/checkpoints/worker-1_temp")
  monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")  # one task: nothing to spread
  monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "1")
  assert strategy_lib.make_strategy("auto") is tf.distribute.get_strategy()
  assert strategy_lib.is_chief()


def test_multi_worker_without_a_cluster_says_how_to_describe_one(monkeypatch):
  for name in ("TF_CONFIG", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS"):
    monkeypatch.delenv(name, raising=False)
  with pytest.raises(ValueError, match="set TF_CONFIG .* or start the workers "
                     "with srun under SLURM"):
    strategy_lib.make_strategy("multi_worker")
  with pytest.raises(ValueError, match="Unknown strategy 'nccl'"):
    strategy_lib.make_strategy("nccl")
