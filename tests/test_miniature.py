"""The Fashion-MNIST miniature: its grid (every task, Rnd and supervised on
ResNet50 v2, all but exemplar on RevNet50, Fig. 5's runs in their
cells' workdirs) and its configs."""
import inspect
import os

import gin
import pytest

import run_lib  # noqa: F401  (registers experiment.* and every configurable a run binds)
from evaluation import linear_eval
from models import layers
from self_supervision import trainer as trainer_lib
from study.grid import cells as study_cells
from study.grid import grids
from training import config as config_lib
from training import schedule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FASHION_TRAIN = 55_000


def by_name_of(runs):
  return {r.name: r for r in runs}


def test_the_grid_has_every_cell_and_the_figures_reuse_their_workdirs(tmp_path):
  runs = grids.runs("miniature")
  cells = [r for r in runs if r.name.startswith("miniature/")]
  # k = 1: Rnd, the four tasks and supervised on ResNet50 v2, then all but
  # exemplar on RevNet50.
  names = [tuple(r.name.split("/")[1:]) for r in cells]
  assert names == [(task, "resnet50_v2_k1") for task in study_cells.MINIATURE_TASKS] + [
      (task, "revnet50_k1") for task in ("random_init", "rotation",
                                         "relative_patch_location", "jigsaw",
                                         "supervised")]
  assert len({r.workdir(str(tmp_path)) for r in cells}) == len(cells)
  by_name = by_name_of(runs)
  # Every cell trains the MLP head too; the first trunk's Rnd cell scores pixels.
  rnd = by_name["miniature/random_init/resnet50_v2_k1"]
  assert rnd.configs == ("configs/miniature/random_init.gin",)
  assert rnd.bindings == (
      "get_model.name = 'resnet50_v2'", "get_model.width = 1",
      "get_model.last_relu = True",
      "experiment.protocols = ['linear_lbfgs', 'mlp_sgd_features']",
      "experiment.evaluate_pixels = True")
  for r in cells:
    assert r.expect == (study_cells.MINIATURE_LINEAR, study_cells.MINIATURE_MLP)
    assert ("experiment.evaluate_pixels = True" in r.bindings) == (r is rnd)
  # Fig. 5: five layers pooled to 512 values each, Rnd and rotation on both
  # trunks, in the cell's workdir, after it in the grid (the sweep joins them).
  cell_dirs = {r.workdir(str(tmp_path)) for r in cells}
  figures = [r for r in runs if not r.name.startswith("miniature/")]
  assert [r.name for r in figures] == [
      f"miniature_fig5/{task}/{trunk}_k1" for trunk in ("resnet50_v2", "revnet50")
      for task in ("random_init", "rotation")]
  for r in figures:
    assert r.workdir(str(tmp_path)) in cell_dirs
  fig5 = by_name["miniature_fig5/rotation/revnet50_k1"]
  assert fig5.workdir(str(tmp_path)) == str(tmp_path / "miniature/rotation/revnet50_k1")
  assert fig5.bindings[3:] == (
      "linear_eval.layers = ['block1', 'block2', 'block3', 'block4', 'pre_logits']",
      "linear_eval.fraction = 1.0", "linear_eval.pool_to_features = 512")
  assert fig5.expect == tuple(("linear_lbfgs", layer, 1.0, "val") for layer in
                              ("block1", "block2", "block3", "block4", "pre_logits"))
  assert runs.index(fig5) > runs.index(by_name["miniature/rotation/revnet50_k1"])


@pytest.mark.parametrize("task", study_cells.MINIATURE_TASKS)
def test_each_task_config_is_the_miniature_protocol(task, clean_gin):
  del clean_gin
  run = grids.miniature_cell(task, "resnet50_v2_minus", 2)
  config_lib.parse([os.path.join(ROOT, c) for c in run.configs], run.bindings)
  experiment = gin.get_bindings("experiment")
  assert experiment["dataset"] == "fashion_mnist"
  assert experiment["task"] == ("supervised" if task == "random_init" else task)
  assert experiment["protocols"] == ["linear_lbfgs", "mlp_sgd_features"]
  model = gin.get_bindings("get_model")
  assert (model["name"], model["width"], model["last_relu"]) == ("resnet50_v2", 2, False)

  def train(name):
    bindings = gin.get_bindings("train")
    return bindings.get(name, inspect.signature(
        trainer_lib.Trainer.__init__).parameters[name].default)
  # A few epochs (docs/miniature/regime_search.md): rotation 2 of 64 x 4, exemplar 1
  # of 32 x 8, supervised 6 of 128, the patch tasks 3 of 128; Rnd none.
  steps = schedule.epochs_to_steps(train("epochs"), FASHION_TRAIN, train("batch_size"))
  assert steps == dict(random_init=0, rotation=1719, exemplar=1719,
                       supervised=2579).get(task, 1290)
  assert train("optimizer") == "sgd"
  assert train("steps_per_loop") == 20  # a stop is answered within minutes
  if task != "random_init":
    # Warm-up and decays at the protocol's 5, 15 and 25 of 35 epochs.
    assert [train("warmup_epochs")] + list(train("decay_epochs")) == pytest.approx(
        [f * train("epochs") / 35 for f in (5, 15, 25)], abs=1e-3)
  # The trunks' BN averages over ~10 steps, not the protocol's ~100.
  assert layers.trunk_bn_momentum() == 0.9
  assert layers.batch_norm("bn").momentum == 0.9
  # The Table 1 protocol: train -> L2 chosen on val -> reported on val.
  settings = {k: v for k, v in gin.get_bindings("linear_eval").items()}
  assert (settings["train_split"], settings["val_split"], settings["eval_split"],
          settings["refit_on_train_and_val"]) == ("train", "val", "val", False)
  assert settings["layers"] == ["pre_logits"]
  # The pixels control peaks at 1e-2: the grid reaches it.
  assert settings["l2_grid"] == [1e-2, 1e-3, 1e-4, 1e-5]
  # The MLP: 30 epochs (18 + 6 + 6) on batch-normalised features.
  sgd = gin.get_bindings("sgd_eval")
  assert (sgd["normalize"], sgd["first_decay_epochs"], sgd["second_decay_after"],
          sgd["tail_epochs"]) == (True, 18, 6, 12)
  assert inspect.signature(linear_eval.evaluate).parameters["search_tol"].default == (
      settings["tol"])
  assert gin.get_bindings("hub_export")["enabled"] is False


def test_spec_bn_momentum_stays_the_default_and_bad_values_are_named(clean_gin):
  del clean_gin
  assert layers.batch_norm("bn").momentum == 0.99
  gin.bind_parameter("trunk_batch_norm.momentum", 1.0)
  with pytest.raises(ValueError, match=r"trunk_batch_norm.momentum = 1.0: use a value in \[0, 1\)"):
    layers.batch_norm("bn")
