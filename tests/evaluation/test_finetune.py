"""The finetune protocol: a copy of the trunk trains with its own learning rate
and batch norm in training mode; the evaluated trunk stays as it was."""
import numpy as np
import pytest

import fake_data
from evaluation import protocols
from evaluation import sgd_eval
from evaluation import trunks
from self_supervision import task as task_lib

pytestmark = pytest.mark.usefixtures("tiny_rotation_gin")


@pytest.fixture(scope="module")
def dataset():
  return fake_data.InMemoryDataset(num_train=16, num_val=8, num_test=8, size=20)


def _trunk(dataset):
  task = task_lib.get_task("rotation", num_classes=dataset.num_classes)
  model = task.make_model(dataset, 0, "train")
  return trunks.random_init(task, model, 0)


# One step: one epoch of the 24 training images in one batch.
ONE_STEP = dict(head="linear", inputs="images", finetune=True, batch_size=24,
                first_decay_epochs=0.5, second_decay_after=0, tail_epochs=0.5,
                base_lr=0.1, base_batch_size=24, eval_split="val",
                eval_batch_size=8, log=lambda _: None)


def _one_step(dataset, workdir, multiplier):
  trunk = _trunk(dataset)
  before = {v.path: v.numpy() for v in trunk.model.weights}
  captured = {}
  real_copy = sgd_eval.trainable_copy

  def keep_copy(*args):
    out = real_copy(*args)
    captured["model"] = out[1]
    return out
  sgd_eval.trainable_copy = keep_copy
  try:
    entry = sgd_eval.evaluate(trunk, dataset, str(workdir),
                              trunk_lr_multiplier=multiplier, **ONE_STEP)[0]
  finally:
    sgd_eval.trainable_copy = real_copy
  # The evaluated trunk is untouched: the protocol trained its copy.
  for v in trunk.model.weights:
    np.testing.assert_array_equal(v.numpy(), before[v.path], err_msg=v.path)
  after = {v.path: v.numpy() for v in captured["model"].weights}
  return entry, before, after


def test_the_copy_trains_at_its_own_rate_with_batch_norm_in_training(dataset, tmp_path):
  entry, before, full = _one_step(dataset, tmp_path / "m1", 1.0)
  _, before_tenth, tenth = _one_step(dataset, tmp_path / "m01", 0.1)
  assert entry["protocol"] == "finetune" and entry["selected_on"] is None
  hyper = entry["hyperparameters"]
  assert hyper["finetune"] is True and hyper["trunk_lr"] == pytest.approx(0.1)
  kernels = [p for p in before if p.endswith("kernel") and "logits" not in p]
  moved = [p for p in kernels if not np.array_equal(full[p], before[p])]
  assert len(moved) == len(kernels)  # every trunk convolution trained
  # One SGD step: the trunk's update at a tenth of the rate is a tenth of it.
  for p in kernels[:5] + kernels[-3:]:
    np.testing.assert_array_equal(before_tenth[p], before[p])  # same start
    np.testing.assert_allclose(tenth[p] - before[p], 0.1 * (full[p] - before[p]),
                               rtol=1e-3, atol=1e-7, err_msg=p)
  # Batch norm ran in training mode: its moving statistics moved.
  means = [p for p in before if p.endswith("moving_mean")]
  assert means and all(not np.array_equal(full[p], before[p]) for p in means)
  # The rotation head of the pretext network is no part of the representation.
  logits = [p for p in before if "logits" in p]
  assert logits and all(np.array_equal(full[p], before[p]) for p in logits)


def test_finetune_is_a_protocol_and_resumes(dataset, tmp_path):
  assert "finetune" in protocols.PROTOCOLS
  overrides = {k: v for k, v in ONE_STEP.items()
               if k not in ("head", "inputs", "finetune", "log")}
  overrides["fraction"] = 0.5
  trunk = _trunk(dataset)
  first = protocols.run("finetune", trunk, dataset, workdir=str(tmp_path),
                        overrides=overrides, log=lambda _: None)
  assert [(e["protocol"], e["fraction"], e["hyperparameters"]["train_examples"])
          for e in first] == [("finetune", 0.5, 12)]
  assert protocols.run("finetune", trunk, dataset, workdir=str(tmp_path),
                       overrides=overrides, log=lambda _: None) == []
  with pytest.raises(ValueError, match="linear head on images"):
    sgd_eval.evaluate(trunk, dataset, str(tmp_path), head="mlp", finetune=True)
