"""Checkpoints of a training: find them, read their step, save, restore.

One checkpoint directory holds `ckpt-<step>` checkpoints written by a
`tf.train.CheckpointManager` whose step counter is the optimizer's iteration
count. The trainer, the SGD evaluation heads, the export and the evaluation
CLI all read checkpoints through this file.
"""
import glob
import os
import re
import shutil
from typing import Callable, Dict, Optional

import tensorflow as tf

from training import strategy as strategy_lib
from training import workdir as workdir_lib

PREFIX = "ckpt"
_STEP = re.compile(rf"{PREFIX}-(\d+)")


def directory(workdir: str) -> str:
  """A run's checkpoint directory."""
  return workdir_lib.of(workdir).checkpoints


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


def readable(prefix: str) -> bool:
  """Whether every tensor of checkpoint `prefix` can be read from disk."""
  try:
    reader = tf.train.load_checkpoint(prefix)
    for name in reader.get_variable_to_shape_map():
      reader.get_tensor(name)
  except Exception:  # pylint: disable=broad-except
    return False
  return True


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
               keep_checkpoint_every_hours: Optional[float] = None,
               strategy: Optional[tf.distribute.Strategy] = None, **objects):
    # Under several workers a save ends with a barrier, so that no worker
    # reads `latest_checkpoint` before the chief has written it.
    self.strategy = strategy
    self.checkpoint = tf.train.Checkpoint(**objects)
    self._manager_args = dict(
        directory=ckpt_dir, max_to_keep=max_to_keep,
        keep_checkpoint_every_n_hours=keep_checkpoint_every_hours,
        step_counter=step_counter)
    self._manager = tf.train.CheckpointManager(self.checkpoint,
                                               **self._manager_args)

  @property
  def latest_checkpoint(self) -> Optional[str]:
    if not strategy_lib.is_chief():
      # This worker's manager never saves into ckpt_dir: the chief's state
      # file on disk says what is there.
      return latest(self._manager_args["directory"])
    return self._manager.latest_checkpoint

  def restore_latest(self, log: Callable[[str], None] = print) -> Optional[str]:
    """Restores the newest checkpoint that can be read; its prefix or None.

    A damaged one (a crash or a full disk while it was written) is named,
    moved to `<ckpt_dir>/damaged/` (kept, not deleted) and the next older
    one is tried. One that reads but does not fit the model (another width,
    another task) is an error, not damage.
    """
    ckpt_dir = self._manager_args["directory"]
    for step, prefix in reversed(list(steps(ckpt_dir).items())):
      try:
        self.checkpoint.restore(prefix).assert_existing_objects_matched()
        return prefix
      except Exception as e:  # pylint: disable=broad-except
        if readable(prefix):
          raise
        if not strategy_lib.is_chief():
          # The chief moves it aside; this worker reads the one before too.
          continue
        aside = os.path.join(ckpt_dir, "damaged")
        os.makedirs(aside, exist_ok=True)
        for path in glob.glob(prefix + ".*"):
          shutil.move(path, os.path.join(aside, os.path.basename(path)))
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        log(f"Checkpoint {prefix} (step {step}) is damaged ({type(e).__name__}: "
            f"{first_line}); moved to {aside}/, trying the one before it.")
        self._forget_missing()
    return None

  def _forget_missing(self) -> None:
    """Rewrites the checkpoint state to what is on disk, and the manager on it."""
    ckpt_dir = self._manager_args["directory"]
    remaining = list(steps(ckpt_dir).values())
    state = os.path.join(ckpt_dir, "checkpoint")
    if remaining:
      tf.compat.v1.train.update_checkpoint_state(
          ckpt_dir, remaining[-1], all_model_checkpoint_paths=remaining)
    elif os.path.exists(state):
      os.remove(state)
    self._manager = tf.train.CheckpointManager(self.checkpoint,
                                               **self._manager_args)

  def save(self, step: int) -> str:
    """Writes `ckpt-<step>`; its prefix.

    Raises:
      OSError: the checkpoint could not be written (a full disk, a read-only
        workdir); the ones before it are intact (TF writes to a temporary
        directory first, removed at the next start).
    """
    try:
      if strategy_lib.is_chief():
        prefix = self._manager.save(checkpoint_number=step)
      else:
        prefix = self._save_as_worker(step)
      if self.strategy is not None:
        strategy_lib.barrier(self.strategy)
      return prefix
    except (tf.errors.OpError, OSError) as e:
      first_line = (str(e).strip().splitlines() or [""])[0][:200]
      raise OSError(
          f"Could not write checkpoint {step} in {self._manager_args['directory']} "
          f"({type(e).__name__}: {first_line}): is the disk full or the workdir "
          f"read-only? The previous checkpoint "
          f"({self._manager.latest_checkpoint or 'none yet'}) is intact; free "
          f"space and rerun the same command.") from e

  def _save_as_worker(self, step: int) -> str:
    """A non-chief worker's save: into its scratch directory, then deleted.

    Every worker takes part in a save (MultiWorkerMirroredStrategy's rule);
    only the chief's lands in `ckpt_dir`. Returns the chief's prefix.
    """
    ckpt_dir = self._manager_args["directory"]
    scratch = strategy_lib.worker_scratch(ckpt_dir)
    try:
      self.checkpoint.write(os.path.join(scratch, f"{PREFIX}-{step}"))
    finally:
      shutil.rmtree(scratch, ignore_errors=True)
    return os.path.join(ckpt_dir, f"{PREFIX}-{step}")
