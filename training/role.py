"""Which process of a multi-worker run this is: the one that writes, or not.

Process-wide, like the cluster itself: the files of a run are written by one
process (the chief), however deep in the library the write happens. Set by
`training.strategy.make_strategy`; free of TensorFlow, so that readers of a
workdir (study/report through evaluation/results.py) need none.
"""
import os

_ROLE = dict(chief=True, task="")


def is_chief() -> bool:
  """Whether this process writes the run's files.

  True everywhere but on the non-chief workers of a MultiWorkerMirroredStrategy
  made by `make_strategy`: those compute everything in lockstep with the chief
  (every collective needs them) and write nothing to the workdir but
  checkpoints into temporary directories they remove (`worker_scratch`).
  """
  return _ROLE["chief"]


def set_role(chief: bool, task: str = "") -> None:
  """Records this process's role; `task` names it, e.g. 'worker-1'."""
  _ROLE.update(chief=bool(chief), task=task)


def worker_scratch(directory: str) -> str:
  """Where a non-chief worker writes what the chief writes to `directory`.

  MultiWorkerMirroredStrategy's rule for checkpoints: every worker saves
  (saving may read sync-on-read variables, an all-reduce), the others into a
  directory of their own that they delete. The name ends in `_temp` so a
  killed worker's leftovers are removed by the next holder of the workdir
  lock (training/workdir_lock.py).
  """
  return os.path.join(directory, f"{_ROLE['task'] or 'worker'}_temp")
