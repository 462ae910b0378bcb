"""The evaluation stage reads an exported module as it reads a trained model.

A run's checkpoints are exported with `export.export_run` (as train_and_eval
does after training); features read through `hub_trunk.HubTrunk` from a
module path equal those read from the model, for an image task and for a
patch task (jigsaw). Tiny trunks keep this fast: the export itself is
trunk-agnostic (tests/self_supervision/test_export.py exports ResNets).
"""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import strategies

import fake_data
from tiny_tasks import TinySupervised, TinyTrunk
from evaluation import hub_trunk
from evaluation import linear_eval
from evaluation import trunks
from evaluation import representations
from self_supervision import export
from self_supervision import jigsaw
from self_supervision import task as task_lib

LAYERS = ("after_root", "pre_logits", "logits")


def _tiny_jigsaw():
  task = jigsaw.Jigsaw(
      num_classes=3, embedding_size=5, head_hidden=6,
      pp_representation="decode|resize(24)|crop_patches(3, patch_size=8)|"
                        "standardize")
  task.make_trunk = lambda: TinyTrunk(task.embedding_size)
  return task


def _randomize(model, seed):
  """New random values for every (float) trunk variable, BN variances > 0."""
  rng = np.random.RandomState(seed)
  for v in model.variables:
    if "variance" in v.path:
      v.assign(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))
    else:
      v.assign(rng.normal(0, 0.5, v.shape).astype(np.float32))


def _run(tmp_path_factory, task):
  """Checkpoints at steps 5 and 10 (different weights), both exported."""
  workdir = str(tmp_path_factory.mktemp(task.name))
  dataset = fake_data.InMemoryDataset(num_train=12, num_val=6, num_test=10,
                                      size=24, channels=1, num_classes=3)
  model = task.build_model()
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=model), os.path.join(workdir, "checkpoints"),
      max_to_keep=5)
  features = {}
  for step, seed in ((5, 1), (10, 2)):
    _randomize(task.trunk(model), seed)
    manager.save(checkpoint_number=step)
    features[step] = representations.extract(
        task, model, dataset, "test", LAYERS, batch_size=4, log=lambda _: None)
  messages = []
  paths = export.export_run(task, workdir, 10, every_checkpoint=True,
                            info=dict(dataset=dataset.name),
                            log=messages.append)
  return dict(task=task, model=model, workdir=workdir, dataset=dataset,
              features=features, paths=paths, messages=messages)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
  return _run(tmp_path_factory, TinySupervised(num_classes=3))


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory):
  return _run(tmp_path_factory, _tiny_jigsaw())


def _assert_features_equal(got, expected):
  (got_features, got_labels), (features, labels) = got, expected
  np.testing.assert_array_equal(got_labels, labels)
  assert set(got_features) == set(features)
  for layer in features:
    assert got_features[layer].shape == features[layer].shape, layer
    np.testing.assert_allclose(got_features[layer], features[layer],
                               rtol=1e-5, atol=1e-5, err_msg=layer)


def test_export_run_exports_each_kept_checkpoint_once(image_run):
  workdir = image_run["workdir"]
  assert image_run["paths"] == [export.hub_export_dir(workdir, 5),
                                export.hub_export_dir(workdir, 10)]
  assert len(image_run["messages"]) == 2
  assert export.exported_steps(workdir) == [5, 10]
  # Resuming a finished run exports nothing again; the switch turns it off.
  task = image_run["task"]
  assert export.export_run(task, workdir, 10, every_checkpoint=True) == []
  assert export.pending_exports(workdir, 10, every_checkpoint=True) == []
  shutil.rmtree(export.hub_export_dir(workdir, 5))
  assert export.export_run(task, workdir, 10, enabled=False,
                           every_checkpoint=True) == []
  assert export.pending_exports(workdir, 10, every_checkpoint=True) == [
      (5, os.path.join(workdir, "checkpoints", "ckpt-5"))]
  assert export.pending_exports(workdir, 10) == []
  assert export.export_run(task, workdir, 10, every_checkpoint=True,
                           log=lambda _: None) == [
                               export.hub_export_dir(workdir, 5)]
  with pytest.raises(FileNotFoundError, match=r"step 7 .*found steps \[5, 10\]"):
    export.pending_exports(workdir, 7)


def test_image_module_features_equal_the_models(image_run):
  run = image_run
  module = hub_trunk.HubTrunk(export.hub_export_dir(run["workdir"], 10))
  assert not module.patches
  # The recorded pipeline to [0, 1]: the task's, without its scaling.
  assert module.preprocess(task_lib.REPRESENTATION) == "decode|resize(8)"
  got = representations.extract(module, None, run["dataset"], "test", LAYERS,
                                batch_size=4, log=lambda _: None)
  _assert_features_equal(got, run["features"][10])
  assert got[0]["after_root"].shape == (10, 8 * 8 * 4)


def test_each_checkpoint_module_has_its_own_weights(image_run):
  run = image_run
  module = hub_trunk.HubTrunk(export.hub_export_dir(run["workdir"], 5),
                              preprocess="decode|resize(8)")
  got = representations.extract(module, None, run["dataset"], "test",
                                ["pre_logits"], batch_size=4,
                                log=lambda _: None)
  np.testing.assert_allclose(got[0]["pre_logits"],
                             run["features"][5][0]["pre_logits"],
                             rtol=1e-5, atol=1e-5)
  assert not np.allclose(got[0]["pre_logits"],
                         run["features"][10][0]["pre_logits"], atol=1e-3)


def test_patch_module_features_equal_the_models(patch_run):
  run = patch_run
  path = export.hub_export_dir(run["workdir"], 10)
  module = hub_trunk.HubTrunk(path)
  assert module.patches
  assert module.preprocess(task_lib.REPRESENTATION) == (
      "decode|resize(24)|crop_patches(3, patch_size=8)")
  got = representations.extract(module, None, run["dataset"], "test", LAYERS,
                                batch_size=4, log=lambda _: None)
  _assert_features_equal(got, run["features"][10])
  # The 9-patch average of an 8x8x4 map and of the 5-d embedding.
  assert got[0]["after_root"].shape == (10, 256)
  assert got[0]["logits"].shape == (10, 5)
  # Under two replicas, as the evaluator runs on several devices.
  strategy = strategies.two_replicas()
  got = representations.extract(module, None, run["dataset"], "test", LAYERS,
                                batch_size=4, strategy=strategy,
                                log=lambda _: None)
  _assert_features_equal(got, run["features"][10])


def test_linear_eval_of_a_module_equals_that_of_the_model(image_run):
  run = image_run
  module = hub_trunk.HubTrunk(export.hub_export_dir(run["workdir"], 10))
  settings = dict(layers=["pre_logits"], l2_grid=[1e-2, 1.0], max_iter=50,
                  batch_size=8, log=lambda _: None)
  from_module = linear_eval.evaluate(
      trunks.Trunk("hub:10", module, None, {}), run["dataset"], **settings)
  from_model = linear_eval.evaluate(
      trunks.Trunk("trained@10", run["task"], run["model"], {}),
      run["dataset"], **settings)
  assert from_module[0]["trunk"] == "hub:10"
  for key in ("top1", "top5"):
    assert from_module[0][key] == from_model[0][key]
  assert (from_module[0]["hyperparameters"]["l2"]
          == from_model[0]["hyperparameters"]["l2"])


def test_bad_uses_name_the_fix(image_run, tmp_path):
  with pytest.raises(FileNotFoundError, match="not a module exported"):
    hub_trunk.HubTrunk(str(tmp_path))
  path = export.hub_export_dir(image_run["workdir"], 10)
  module = hub_trunk.HubTrunk(path)
  with pytest.raises(ValueError, match="frozen trunk"):
    module.preprocess(task_lib.TRAIN)
  with pytest.raises(ValueError, match="Unknown preprocessing op 'nope'"):
    hub_trunk.HubTrunk(path, preprocess="decode|nope")
  # A module whose run's pipeline has no [0, 1] prefix needs one from the user.
  copy = str(tmp_path / "copy")
  shutil.copytree(path, copy)
  meta_file = os.path.join(copy, "assets", "metadata.json")
  with open(meta_file) as f:
    meta = json.load(f)
  meta["input_preprocess"] = None
  with open(meta_file, "w") as f:
    json.dump(meta, f)
  with pytest.raises(ValueError, match="pass preprocess="):
    hub_trunk.HubTrunk(copy)
  assert hub_trunk.HubTrunk(copy, preprocess="decode|resize(8)").preprocess(
      task_lib.REPRESENTATION) == "decode|resize(8)"


def test_a_module_is_fine_tuned_through_its_trainable_variables(image_run, tmp_path):
  from evaluation import sgd_eval  # pylint: disable=g-import-not-at-top
  trunk = trunks.from_hub(image_run["paths"][-1])
  frozen = [v.numpy() for v in trunk.task.module.trainable_variables]
  assert frozen
  copies = []
  real_copy = sgd_eval.trainable_copy

  def keep_copy(*args):
    out = real_copy(*args)
    copies.append(out[2])
    return out
  sgd_eval.trainable_copy = keep_copy
  try:
    entry = sgd_eval.evaluate(
        trunk, image_run["dataset"], str(tmp_path), finetune=True, batch_size=6,
        base_batch_size=6, first_decay_epochs=1, second_decay_after=0,
        tail_epochs=1, eval_split="test", eval_batch_size=5,
        log=lambda _: None)[0]
  finally:
    sgd_eval.trainable_copy = real_copy
  assert entry["protocol"] == "finetune" and 0.0 <= entry["top1"] <= 100.0
  # The module loaded for the evaluation trained; the evaluated one did not.
  tuned = [v.numpy() for v in copies[0].trainable_variables]
  assert any(not np.array_equal(a, b) for a, b in zip(tuned, frozen))
  for v, before in zip(trunk.task.module.trainable_variables, frozen):
    np.testing.assert_array_equal(v.numpy(), before)
