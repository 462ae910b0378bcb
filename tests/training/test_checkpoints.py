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
