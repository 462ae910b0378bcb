"""The pixels control, results keys that hold what changes a number, what an
--overwrite_config sets aside, and the protocol defaults (issue 30's
corrections)."""
import inspect
import json
import os

import numpy as np
import pytest

import fake_data
from tiny_tasks import PixelTask
from evaluation import linear_eval
from evaluation import protocols
from evaluation import representations
from evaluation import results
from evaluation import sgd_eval
from evaluation import trunks
from study.report import runs as report_runs
from training import run_record

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUIET = dict(log=lambda _: None)
PP = "decode|value_range(-1, 1)"


@pytest.fixture(scope="module")
def separable():
  return fake_data.small_pixels(separable=True)


def _pixels(pp=PP):
  return trunks.pixels(PixelTask(pp))


# ------------------------------------------------------------ the pixels trunk


def test_pixels_are_the_images_after_the_representation_pipeline():
  ds = fake_data.InMemoryDataset(num_train=2, num_val=1, num_test=2, size=2)
  ds.images[3:5] = np.array([[[0], [51]], [[255], [102]]], np.uint8)[None]
  ds.images[4] = 255 - ds.images[4]
  trunk = _pixels()
  assert trunk.name == "pixels" and trunk.end_points == ("pixels",)
  assert trunk.fingerprint == dict(kind="pixels", preprocess=PP)
  feats, labels = representations.extract(trunk.task, None, ds, "test", ["pixels"],
                                          batch_size=2, **QUIET)
  # decode: /255 and grey tiled to 3 channels; value_range(-1, 1): 2x - 1.
  first = [-1.0, -0.6, 1.0, -0.2]
  second = [1.0, 0.6, -1.0, 0.2]
  np.testing.assert_allclose(feats["pixels"], [np.repeat(first, 3),
                                               np.repeat(second, 3)], atol=1e-6)
  np.testing.assert_array_equal(labels, ds.labels[3:5])


def test_large_pixels_are_pooled_like_any_end_point():
  ds = fake_data.InMemoryDataset(num_train=1, num_val=1, num_test=1, size=100)
  ds.images[2] = 0
  ds.images[2, 99, 99] = 255
  feats, _ = representations.extract(_pixels("decode(1)").task, None, ds, "test",
                                     ["pixels"], batch_size=1, pooling="max",
                                     **QUIET)
  # 100 x 100 x 1 > 9000 values: max-pooled 2 x 2 to 50 x 50 (pooling.py).
  assert feats["pixels"].shape == (1, 50 * 50)
  assert feats["pixels"][0, -1] == 1.0 and feats["pixels"][0, :-1].max() == 0.0


def test_every_protocol_scores_the_pixels(separable, tmp_path):
  workdir = str(tmp_path)
  sgd = dict(batch_size=40, first_decay_epochs=1, second_decay_after=0,
             tail_epochs=0, eval_batch_size=30)
  # Any configured layers: the control's own end point stands in for them.
  lbfgs = protocols.run("linear_lbfgs", _pixels(), separable, workdir=workdir,
                        overrides=dict(layers=["pre_logits"], l2_grid=[1e-2],
                                       max_iter=100), **QUIET)
  assert [(e["trunk"], e["layer"], e["top1"]) for e in lbfgs] == [
      ("pixels", "pixels", 100.0)]
  knn = protocols.run("knn", _pixels(), separable, workdir=workdir,
                      overrides=dict(ks=[1]), **QUIET)
  assert (knn[0]["layer"], knn[0]["eval_split"]) == ("pixels", "val")
  for protocol in ("linear_sgd_features", "mlp_sgd_features", "linear_sgd"):
    e, = protocols.run(protocol, _pixels(), separable, workdir=workdir,
                       overrides=dict(sgd, layers=["pre_logits"]), **QUIET)
    assert (e["trunk"], e["layer"], len(e["curve"])) == ("pixels", "pixels", 1)
    assert e["hyperparameters"]["normalize"] is False
  assert [e["protocol"] for e in results.load(workdir)["evaluations"]] == [
      "linear_lbfgs", "knn", "linear_sgd_features", "mlp_sgd_features",
      "linear_sgd"]
  with pytest.raises(ValueError, match="finetune trains the trunk; the pixels"):
    protocols.run("finetune", _pixels(), separable, workdir=workdir, **QUIET)


# ------------------------------------------------------ what keys an entry


LBFGS = dict(layers=["pixels"], l2_grid=[1e-2], max_iter=50)


def test_a_changed_setting_evaluates_anew(separable, tmp_path):
  workdir = str(tmp_path)
  run = lambda trunk, **o: protocols.run(  # noqa: E731
      "linear_lbfgs", trunk, separable, workdir=workdir,
      overrides=dict(LBFGS, **o), **QUIET)
  first, = run(_pixels())
  assert first["settings"]["preprocess"] == PP
  assert first["settings"]["precision"] == "float32"
  assert (first["settings"]["eval_split"], first["settings"]["holdout_fraction"],
          first["settings"]["refit_on_train_and_val"]) == ("val", 0.0, False)
  assert "batch_size" not in first["settings"] and "layers" not in first["settings"]
  assert run(_pixels()) == []  # the same settings: done
  # Selection rule (the holdout include), protocol setting, pipeline: each
  # is another number, evaluated beside the first.
  held, = run(_pixels(), holdout_fraction=0.1)
  assert held["selected_on"] == "train (held-out 10%)"
  assert run(_pixels(), max_iter=60) != []
  assert run(_pixels("decode|value_range(0, 1)")) != []
  assert len(results.load(workdir)["evaluations"]) == 4
  assert run(_pixels(), holdout_fraction=0.1) == []


def test_entries_without_settings_match_on_what_they_record(separable, tmp_path):
  workdir = str(tmp_path)
  legacy = dict(protocol="linear_lbfgs", trunk="pixels", layer="pixels",
                pooling="adaptive_max", train_split="train", selected_on="val",
                eval_split="val", fraction=1.0, top1=12.5, top5=99.0,
                dataset="in_memory", seed=0)
  (tmp_path / "results.json").write_text(json.dumps(
      {"schema_version": 2, "run": {}, "pretext": {}, "evaluations": [legacy]}))
  run = lambda **o: protocols.run(  # noqa: E731
      "linear_lbfgs", _pixels(), separable, workdir=workdir,
      overrides=dict(LBFGS, **o), **QUIET)
  assert run() == []  # the Table 1 protocol it recorded: kept
  refit, = run(eval_split="test", refit_on_train_and_val=True)
  assert (refit["train_split"], refit["eval_split"]) == ("train+val", "test")
  held, = run(holdout_fraction=0.1)  # the holdout include: evaluated anew
  doc = results.load(workdir)
  assert doc["schema_version"] == 3
  assert [(e["top1"], e["selected_on"], "settings" in e)
          for e in doc["evaluations"]] == [
              (12.5, "val", False), (refit["top1"], "val", True),
              (held["top1"], "train (held-out 10%)", True)]


# ------------------------------------------------ --overwrite_config sets aside


def _document(workdir):
  evaluation = dict(protocol="linear_lbfgs", layer="pre_logits",
                    pooling="adaptive_max", train_split="train", eval_split="val",
                    fraction=1.0, top1=50.0, top5=90.0, dataset="d", seed=0)
  results.update(workdir, run=dict(dataset="d"), pretext=dict(accuracy=0.5),
                 evaluations=[dict(evaluation, trunk=t) for t in
                              ("trained@10", "random_init", "pixels", "hub:/m")],
                 label_free=[dict(trunk="trained@10", dataset="d",
                                  layer="pre_logits", split="val",
                                  pooling="adaptive_max", rankme=2.0)])


def test_a_new_representation_pipeline_sets_its_entries_aside(tmp_path):
  workdir = str(tmp_path)
  _document(workdir)
  assert results.set_aside(workdir, ["rotation.pp_train"]) == dict(
      evaluations=0, label_free=0, pretext=0)
  changed = ["rotation.pp_representation"]
  counts = results.set_aside(workdir, changed)
  assert counts == dict(evaluations=3, label_free=1, pretext=0)
  doc = results.load(workdir)
  assert [e["trunk"] for e in doc["evaluations"]] == ["hub:/m"]
  assert doc["label_free"] == [] and doc["pretext"] == {"accuracy": 0.5}
  assert [e["trunk"] for e in doc["set_aside"]["evaluations"]] == [
      "trained@10", "random_init", "pixels"]
  assert doc["set_aside"]["evaluations"][0]["set_aside_for"] == changed
  assert results.set_aside_line(counts, changed) == (
      "--overwrite_config changed rotation.pp_representation: set aside 3 "
      "evaluation entries, 1 label-free measures made with the old settings "
      "(results.json 'set_aside'); they are evaluated anew.")
  # A model setting invalidates the pretext accuracy too.
  assert results.set_aside(workdir, ["get_model.width"]) == dict(
      evaluations=0, label_free=0, pretext=1)


def test_the_guard_returns_what_an_overwrite_changed(tmp_path):
  workdir = str(tmp_path)
  old = {"experiment.task": "rotation", "rotation.pp_representation": "a"}
  (tmp_path / "run.json").write_text(json.dumps(dict(model_config=old)))
  new = dict(old, **{"rotation.pp_representation": "b"})
  assert run_record.check_model_config(workdir, old) == []
  assert run_record.check_model_config(workdir, new, overwrite=True) == [
      "rotation.pp_representation"]
  with pytest.raises(ValueError, match="pass --overwrite_config"):
    run_record.check_model_config(workdir, new)


# -------------------------------------------------------------- the defaults


def test_the_protocol_defaults_are_the_studys():
  defaults = {k: p.default for k, p in
              inspect.signature(linear_eval.evaluate).parameters.items()}
  # Table 1 (docs/protocol.md §5): train, L2 on val, no refit, scored on val.
  assert (defaults["train_split"], defaults["val_split"], defaults["eval_split"],
          defaults["refit_on_train_and_val"], defaults["holdout_fraction"]) == (
              "train", "val", "val", False, 0.0)
  # The SGD heads: the protocol's plain linear layer.
  assert inspect.signature(sgd_eval.evaluate).parameters["normalize"].default is False
  with open(os.path.join(ROOT, "configs", "demo_fashion_mnist.gin")) as f:
    demo = report_runs.parse_gin(f.read())
  assert {k: demo[f"linear_eval.{k}"] for k in (
      "train_split", "val_split", "eval_split", "refit_on_train_and_val",
      "holdout_fraction")} == dict(train_split="'train'", val_split="'val'",
                                   eval_split="'test'",
                                   refit_on_train_and_val="True",
                                   holdout_fraction="0.0")
