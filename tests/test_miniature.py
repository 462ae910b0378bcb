"""The Fashion-MNIST miniature: its grid (every trunk, task, Rnd and supervised
at two widths, the figures' runs in their cells' workdirs) and its configs."""
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
  # k = 1: every trunk x Rnd, 4 tasks, supervised; k = 2: Rnd on every trunk,
  # the 4 tasks on RevNet50 and ResNet50 v1, rotation and exemplar on
  # VGG19-BN. All k = 1 cells first.
  assert len(cells) == 36 + 6 + 10
  names = [tuple(r.name.split("/")[1:]) for r in cells]
  assert set(names[:36]) == {(task, f"{trunk}_k1") for task in study_cells.MINIATURE_TASKS
                             for trunk in study_cells.TRUNK_NAMES}
  assert set(names[36:]) == {("random_init", f"{trunk}_k2")
                             for trunk in study_cells.TRUNK_NAMES} | {
      (task, f"{trunk}_k2") for task in ("rotation", "exemplar", "jigsaw",
                                         "relative_patch_location")
      for trunk in ("revnet50", "resnet50_v1", "vgg19_bn")} - {
          ("jigsaw", "vgg19_bn_k2"), ("relative_patch_location", "vgg19_bn_k2")}
  # VGG19-BN needs 32 px inputs: its patch cells cut 32 px patches.
  vgg = by_name_of(runs)["miniature/jigsaw/vgg19_bn_k1"]
  assert "crop_patches(3, patch_size=32, jitter=8)" in vgg.bindings[3]
  assert "crop_patches(3, patch_size=32)|standardize" in vgg.bindings[4]
  assert len({r.workdir(str(tmp_path)) for r in cells}) == len(cells)
  by_name = {r.name: r for r in runs}
  minus = by_name["miniature/random_init/revnet50_minus_k2"]
  assert minus.configs == ("configs/miniature/random_init.gin",)
  assert minus.bindings == (
      "get_model.name = 'revnet50'", "get_model.width = 2",
      "get_model.last_relu = False",
      "experiment.protocols = ['linear_lbfgs', 'mlp_sgd_features']")
  assert minus.expect == (study_cells.MINIATURE_LINEAR, study_cells.MINIATURE_MLP)
  assert by_name["miniature/exemplar/vgg19_bn_k2"].expect == minus.expect
  assert by_name["miniature/rotation/vgg19_bn_k1"].expect == (
      study_cells.MINIATURE_LINEAR,)
  # Fig. 5: five layers on 20% of the labels; Fig. 7: 10%; both in the cell's
  # workdir, after it in the grid (the sweep joins them into one job).
  cell_dirs = {r.workdir(str(tmp_path)) for r in cells}
  figures = [r for r in runs if not r.name.startswith("miniature/")]
  assert len(figures) == 6 + 8
  for r in figures:
    assert r.workdir(str(tmp_path)) in cell_dirs
  fig5 = by_name["miniature_fig5/rotation/vgg19_bn_k1"]
  assert fig5.workdir(str(tmp_path)) == str(tmp_path / "miniature/rotation/vgg19_bn_k1")
  assert fig5.expect == tuple(("linear_lbfgs", layer, 0.2, "val") for layer in
                              ("block1", "block2", "block3", "block4", "pre_logits"))
  fig7 = by_name["miniature_fig7/exemplar/revnet50_k2_f0.1"]
  assert fig7.bindings[-1] == "linear_eval.fraction = 0.1"
  assert fig7.expect == (("linear_lbfgs", "pre_logits", 0.1, "val"),)
  assert runs.index(fig7) > runs.index(by_name["miniature/exemplar/revnet50_k2"])


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
  # of 32 x 8, the others 3 of 128; Rnd none.
  steps = schedule.epochs_to_steps(train("epochs"), FASHION_TRAIN, train("batch_size"))
  assert steps == dict(random_init=0, rotation=1719, exemplar=1719).get(task, 1290)
  assert train("optimizer") == "sgd"
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
  assert inspect.signature(linear_eval.evaluate).parameters["search_tol"].default == (
      settings["tol"])
  assert gin.get_bindings("hub_export")["enabled"] is False


def test_spec_bn_momentum_stays_the_default_and_bad_values_are_named(clean_gin):
  del clean_gin
  assert layers.batch_norm("bn").momentum == 0.99
  gin.bind_parameter("trunk_batch_norm.momentum", 1.0)
  with pytest.raises(ValueError, match=r"trunk_batch_norm.momentum = 1.0: use a value in \[0, 1\)"):
    layers.batch_norm("bn")
