"""Checkpoints of a training: find them, read their step, save, restore.

One checkpoint directory holds `ckpt-<step>` checkpoints written by a
`tf.train.CheckpointManager` whose step counter is the optimizer's iteration
count. The trainer, the SGD evaluation heads, the export and the evaluation
CLI all read checkpoints through this file.
"""
import glob
import os
import re
from typing import Dict, Optional

import tensorflow as tf

PREFIX = "ckpt"
_STEP = re.compile(rf"{PREFIX}-(\d+)")


def directory(workdir: str) -> str:
  """A run's checkpoint directory."""
  return os.path.join(workdir, "checkpoints")


def step_of(prefix: str) -> int:
  """The step of a checkpoint prefix `.../ckpt-<step>`."""
  match = _STEP.fullmatch(os.path.basename(prefix))
  if not match:
    raise ValueError(f"{prefix!r} is not a checkpoint prefix of the form "
                     f".../{PREFIX}-<step>.")
  return int(match.group(1))


def steps(ckpt_dir: str) -> Dict[int, str]:
  """Step -> prefix of every checkpoint on disk in `ckpt_dir`, ascending.

  Includes the ones kept every few hours, which the CheckpointManager no
  longer lists.
  """
  found = {}
  for index in glob.glob(os.path.join(ckpt_dir, f"{PREFIX}-*.index")):
    prefix = index[:-len(".index")]
    if _STEP.fullmatch(os.path.basename(prefix)):
      found[step_of(prefix)] = prefix
  return dict(sorted(found.items()))


def latest(ckpt_dir: str) -> Optional[str]:
  """The prefix of the newest checkpoint in `ckpt_dir`, or None."""
  return tf.train.latest_checkpoint(ckpt_dir)


def resolve(path: str) -> str:
  """A checkpoint prefix from a prefix, a checkpoint directory or a run's workdir.

  A directory means its newest checkpoint (a workdir's `checkpoints/` first),
  so a config can name another run without knowing its last step.
  """
  if os.path.isdir(path):
    for ckpt_dir in (directory(path), path):
      prefix = latest(ckpt_dir) if os.path.isdir(ckpt_dir) else None
      if prefix:
        return prefix
    raise FileNotFoundError(
        f"No checkpoint in {path} (nor in {directory(path)}): train that run "
        f"first, or name a checkpoint prefix .../{PREFIX}-<step>.")
  if not tf.io.gfile.exists(path + ".index"):
    raise FileNotFoundError(
        f"{path} is neither a directory nor a checkpoint prefix (no "
        f"{path}.index): name a run's workdir, its checkpoints/ or a prefix "
        f".../{PREFIX}-<step>.")
  return path


def restore(prefix: str, *, partial: bool = False, must_match: bool = True,
            **objects) -> None:
  """Restores `objects` (e.g. model=..., optimizer=...) from `prefix`.

  partial: the checkpoint may hold more than `objects` (a training
  checkpoint read for its model only).
  must_match: every variable of `objects` must be in the checkpoint; False
  lets an initialisation from another task's checkpoint fill what it has.
  """
  status = tf.train.Checkpoint(**objects).restore(prefix)
  if partial:
    status.expect_partial()
  if must_match:
    status.assert_existing_objects_matched()


class Manager:
  """Saves and restores `objects` in `ckpt_dir`, numbered by `step_counter`."""

  def __init__(self, ckpt_dir: str, step_counter: tf.Variable, *,
               max_to_keep: int = 3,
               keep_checkpoint_every_hours: Optional[float] = None, **objects):
    self.checkpoint = tf.train.Checkpoint(**objects)
    self._manager = tf.train.CheckpointManager(
        self.checkpoint, ckpt_dir, max_to_keep=max_to_keep,
        keep_checkpoint_every_n_hours=keep_checkpoint_every_hours,
        step_counter=step_counter)

  @property
  def latest_checkpoint(self) -> Optional[str]:
    return self._manager.latest_checkpoint

  def restore_latest(self) -> Optional[str]:
    """Restores the newest checkpoint, if any; returns its prefix or None."""
    prefix = self._manager.latest_checkpoint
    if prefix:
      self.checkpoint.restore(prefix).assert_existing_objects_matched()
    return prefix

  def save(self, step: int) -> str:
    return self._manager.save(checkpoint_number=step)
