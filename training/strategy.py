"""Choosing the tf.distribute strategy that drives the training loop."""
import json
import os
from typing import List, Optional

import tensorflow as tf

from training import role

# SlurmClusterResolver's default: task i of a node listens on port 8888 + i.
SLURM_PORT_BASE = 8888


def cluster_resolver(port_base: int = SLURM_PORT_BASE
                     ) -> tf.distribute.cluster_resolver.ClusterResolver:
  """The cluster of a multi-worker run: TF_CONFIG if set, else the SLURM step.

  Under `srun`, SLURM's variables (SLURM_PROCID, SLURM_STEP_NUM_TASKS,
  SLURM_STEP_NODELIST, SLURM_STEP_TASKS_PER_NODE) name every task; each node's
  GPUs (CUDA_VISIBLE_DEVICES, else those TF sees) are split between its tasks.

  Raises:
    ValueError: neither is there, naming both ways to describe the cluster.
  """
  if os.environ.get("TF_CONFIG"):
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()
  if "SLURM_PROCID" in os.environ:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = (len([g for g in visible.split(",") if g.strip()])
            if visible is not None
            else len(tf.config.list_physical_devices("GPU")))
    if gpus:
      return tf.distribute.cluster_resolver.SlurmClusterResolver(
          port_base=port_base, gpus_per_node=gpus)
    # No GPU: the resolver numbers a node's tasks by the GPUs it hands out,
    # so with none it finds no task at all (or divides by zero). One pretend
    # GPU per task, never written to CUDA_VISIBLE_DEVICES, gives it a slot
    # per task.
    tasks = int(os.environ.get("SLURM_STEP_NUM_TASKS", "1"))
    return tf.distribute.cluster_resolver.SlurmClusterResolver(
        port_base=port_base, gpus_per_node=tasks, gpus_per_task=1,
        auto_set_gpu=False)
  raise ValueError(
      "--strategy=multi_worker needs a cluster: set TF_CONFIG (e.g. "
      + json.dumps({"cluster": {"worker": ["host1:12345", "host2:12345"]},
                    "task": {"type": "worker", "index": 0}})
      + ") on every worker, or start the workers with srun under SLURM.")


# The role of this process (training/role.py), re-exported: callers that
# have a strategy at hand ask here.
is_chief = role.is_chief
worker_scratch = role.worker_scratch


def set_role(strategy: tf.distribute.Strategy) -> None:
  """Records whether this process is the chief of `strategy`'s cluster.

  A MultiWorkerMirroredStrategy's chief is the task of type 'chief', or
  worker 0 when the cluster names none (`extended.should_checkpoint`).
  """
  chief = bool(getattr(strategy.extended, "should_checkpoint", True))
  resolver = getattr(strategy, "cluster_resolver", None)
  task_type = task_id = None
  if resolver is not None:
    task_type, task_id = resolver.task_type, resolver.task_id
    if not task_type and hasattr(resolver, "get_task_info"):
      resolver.cluster_spec()  # SLURM's resolver names the task on this call
      task_type, task_id = resolver.get_task_info()
  task = f"{task_type}-{task_id}" if task_type else ""
  role.set_role(chief, task)


def num_workers(strategy: tf.distribute.Strategy) -> int:
  """Processes taking part in `strategy`'s collectives (1 but under MWMS)."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return 1
  spec = strategy.cluster_resolver.cluster_spec().as_dict()
  return max(1, sum(len(spec.get(job, [])) for job in ("chief", "worker")))


def agree(strategy: tf.distribute.Strategy, *flags: bool) -> List[bool]:
  """Each flag OR-ed over every worker (one all-reduce; none for 1 worker).

  Decisions taken from a clock or a signal (save a checkpoint now, stop for
  a SIGTERM) differ between workers; a save or a stop that only some
  workers make leaves the others waiting in a collective forever.
  """
  if num_workers(strategy) == 1:
    return [bool(f) for f in flags]
  if id(strategy) not in _SUMS:
    # Compiled once per strategy: run eagerly, every call would rebuild
    # the collective (TF warns of the overhead).
    _SUMS[id(strategy)] = (strategy, tf.function(
        lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM,
                                  strategy.run(tf.identity, args=(v,)),
                                  axis=None)))
  total = _SUMS[id(strategy)][1](tf.constant([float(bool(f)) for f in flags]))
  return [bool(v > 0) for v in total.numpy()]


_SUMS = {}  # id(strategy) -> (strategy, its compiled all-reduce of flags)


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Waits until every worker gets here (after the chief wrote a file the
  others read next: the feature cache, results.json)."""
  agree(strategy, False)


def summary_writer(logdir: str):
  """A TensorBoard writer for `logdir`; one that writes nothing off the chief."""
  if is_chief():
    return tf.summary.create_file_writer(logdir)
  return tf.summary.create_noop_writer()


def _cluster_described() -> bool:
  return bool(os.environ.get("TF_CONFIG")) or int(
      os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")


def make_strategy(name: str = "auto", tpu: Optional[str] = None
                  ) -> tf.distribute.Strategy:
  """Returns the strategy called `name`.

  auto: TPU when `tpu` is given, multi_worker when TF_CONFIG or a SLURM step
  of several tasks describes a cluster, MirroredStrategy with >1 GPU, else
  the default strategy (one GPU or the CPU). multi_worker: see
  `cluster_resolver`.
  """
  if name not in STRATEGIES:
    raise ValueError(f"Unknown strategy {name!r}; use one of {STRATEGIES}.")
  if name == "auto":
    if tpu:
      name = "tpu"
    elif _cluster_described():
      name = "multi_worker"
    elif len(tf.config.list_physical_devices("GPU")) > 1:
      name = "mirrored"
    else:
      name = "default"
  strategy = _make(name, tpu)
  set_role(strategy)
  return strategy


def _make(name: str, tpu: Optional[str]) -> tf.distribute.Strategy:
  if name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=cluster_resolver())
  return tf.distribute.get_strategy()
