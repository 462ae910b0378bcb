"""One checkpoint helper: numbering, the newest one, and naming a checkpoint by
a prefix, a checkpoint directory or a run's workdir."""
import os

import pytest
import tensorflow as tf

from training import checkpoints


def test_resolve_a_prefix_a_directory_or_a_workdir(tmp_path):
  step = tf.Variable(0, dtype=tf.int64)
  weight = tf.Variable(1.0)
  workdir = str(tmp_path / "run")
  manager = checkpoints.Manager(checkpoints.directory(workdir), step,
                                max_to_keep=5, weight=weight)
  for s in (3, 7):
    step.assign(s)
    manager.save(s)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  assert checkpoints.resolve(workdir) == os.path.join(ckpt_dir, "ckpt-7")
  assert checkpoints.resolve(ckpt_dir) == os.path.join(ckpt_dir, "ckpt-7")
  prefix = os.path.join(ckpt_dir, "ckpt-3")
  assert checkpoints.resolve(prefix) == prefix
  assert checkpoints.step_of(checkpoints.resolve(workdir)) == 7
  assert list(checkpoints.steps(ckpt_dir)) == [3, 7]

  with pytest.raises(FileNotFoundError, match="No checkpoint in .*train that run first"):
    checkpoints.resolve(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="neither a directory nor a checkpoint"):
    checkpoints.resolve(os.path.join(ckpt_dir, "ckpt-5"))


def _saved(workdir, steps):
  step = tf.Variable(0, dtype=tf.int64)
  weight = tf.Variable(0.0)
  manager = checkpoints.Manager(checkpoints.directory(workdir), step,
                                max_to_keep=5, weight=weight)
  for s in steps:
    step.assign(s)
    weight.assign(float(s))
    manager.save(s)
  return step, weight


def test_a_damaged_newest_checkpoint_is_set_aside_and_the_one_before_restores(tmp_path):
  workdir = str(tmp_path)
  _saved(workdir, [3, 7])
  ckpt_dir = checkpoints.directory(workdir)
  [data] = [p for p in os.listdir(ckpt_dir) if p.startswith("ckpt-7.data")]
  with open(os.path.join(ckpt_dir, data), "r+b") as f:
    f.truncate(2)  # a crash while writing it
  step, weight = tf.Variable(0, dtype=tf.int64), tf.Variable(-1.0)
  manager = checkpoints.Manager(ckpt_dir, step, max_to_keep=5, weight=weight)
  messages = []
  assert manager.restore_latest(log=messages.append) == os.path.join(ckpt_dir, "ckpt-3")
  assert float(weight.numpy()) == 3.0
  [message] = messages
  assert message.startswith(f"Checkpoint {ckpt_dir}/ckpt-7 (step 7) is damaged (")
  assert f"moved to {ckpt_dir}/damaged/" in message
  assert sorted(os.listdir(os.path.join(ckpt_dir, "damaged"))) == sorted(
      [data, "ckpt-7.index"])
  assert list(checkpoints.steps(ckpt_dir)) == [3]
  assert manager.latest_checkpoint == os.path.join(ckpt_dir, "ckpt-3")
  # Training goes on and saves past it.
  step.assign(8)
  assert manager.save(8).endswith("ckpt-8")
  assert list(checkpoints.steps(ckpt_dir)) == [3, 8]


def test_a_checkpoint_of_another_model_is_an_error_not_damage(tmp_path):
  workdir = str(tmp_path)
  _saved(workdir, [3])
  ckpt_dir = checkpoints.directory(workdir)
  step = tf.Variable(0, dtype=tf.int64)
  other = tf.Variable(tf.zeros([2, 2]))  # another shape under the same name
  manager = checkpoints.Manager(ckpt_dir, step, weight=other)
  with pytest.raises(ValueError):
    manager.restore_latest(log=lambda _: None)
  assert list(checkpoints.steps(ckpt_dir)) == [3]
  assert not os.path.exists(os.path.join(ckpt_dir, "damaged"))


def test_a_checkpoint_that_cannot_be_written_leaves_the_previous_ones(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  step = tf.Variable(3, dtype=tf.int64)
  manager = checkpoints.Manager(checkpoints.directory(workdir), step,
                                weight=tf.Variable(1.0))
  manager.save(3)

  def full_disk(*args, **kwargs):
    raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
  monkeypatch.setattr(manager._manager, "save", full_disk)  # pylint: disable=protected-access
  with pytest.raises(OSError, match="Could not write checkpoint 4 .*No space left "
                     "on device.*is the disk full.*ckpt-3\\) is intact"):
    manager.save(4)
  assert list(checkpoints.steps(checkpoints.directory(workdir))) == [3]
