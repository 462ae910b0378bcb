"""Table 1 cells run end to end: the committed ImageNet configs, unchanged but for
size (width 1, a few steps, tiny L-BFGS), train and evaluate through
train_and_eval.py on a small image folder with train / val / test splits.

One cell per task, chosen to cover each kind of trunk: a RevNet without its
last ReLU, ResNet v1 and v2, VGG19-BN on 64 px patches, the random baseline.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import cli

CLASSES = ("a", "b", "c")

CELLS = [
    ("rotation", "revnet50_minus", "revnet50", False),
    ("exemplar", "resnet50_v1", "resnet50_v1", True),
    ("jigsaw", "vgg19_bn", "vgg19_bn", True),
    ("relative_patch_location", "resnet50_v2", "resnet50_v2", True),
    ("random_init", "resnet50_v2_minus", "resnet50_v2", False),
]


def _image_folder(root, classes, seed):
  rng = np.random.RandomState(seed)
  for split, per_class in (("train", 4), ("val", 2), ("test", 2)):
    for c in classes:
      os.makedirs(root / split / c)
      for i in range(per_class):
        image = rng.randint(0, 256, size=(40, 48, 3), dtype=np.uint8)
        (root / split / c / f"{i}.jpg").write_bytes(tf.io.encode_jpeg(image).numpy())
  return str(root)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
  return _image_folder(tmp_path_factory.mktemp("imagenet_like"), CLASSES, 0)


def _train_and_eval(config, workdir, bindings, data_dir):
  proc = cli.run(["train_and_eval.py", f"--config={config}", f"--workdir={workdir}",
                  f"--data_dir={data_dir}"] + [f"--gin_bindings={b}" for b in bindings],
                 timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


def _small(image_root, task):
  bindings = [
      f"experiment.dataset = 'image_folder:{image_root}'",
      "get_model.width = 1", "train.batch_size = 4", "train.eval_batch_size = 4",
      "train.steps_per_loop = 2",
      "hub_export.enabled = False",
      "linear_eval.l2_grid = [1e-3]", "linear_eval.max_iter = 20",
      "linear_eval.batch_size = 4"]
  if task != "random_init":  # Rnd keeps its own 0 epochs
    bindings.append("train.epochs = 0.5")
  if task == "exemplar":
    bindings.append("exemplar.mining_group_images = 2")
  return bindings


@pytest.mark.slow
@pytest.mark.parametrize("task,trunk,model,last_relu", CELLS)
def test_a_table1_cell_trains_and_is_scored_on_val(task, trunk, model, last_relu,
                                                   image_root, tmp_path):
  workdir = str(tmp_path / "run")
  out = _train_and_eval(f"configs/{task}/imagenet_{trunk}_k4.gin", workdir,
                        _small(image_root, task), str(tmp_path / "tfds"))
  # Places is asked for by every cell (Places205, else Places365); without
  # their data the run goes on.
  assert "Transfer dataset places205 skipped: its data is not here" in out
  assert "Transfer dataset places365 skipped: its data is not here" in out

  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  run = results["run"]
  steps = 0 if task == "random_init" else 2  # ceil(0.5 * 12 / 4)
  assert (run["architecture"], run["width"], run["last_relu"], run["steps"]) == (
      model, 1, last_relu, steps)
  assert run["task"] == ("supervised" if task == "random_init" else task)
  assert results["pretext"]["split"] == "val"
  [entry] = results["evaluations"]
  assert (entry["protocol"], entry["trunk"], entry["layer"], entry["dataset"]) == (
      "linear_lbfgs", f"trained@{steps}", "pre_logits", f"image_folder:{image_root}")
  # The Table 1 protocol: fitted on train, L2 chosen on val, scored on val.
  assert (entry["train_split"], entry["selected_on"], entry["eval_split"]) == (
      "train", "val", "val")
  assert entry["hyperparameters"]["train_examples"] == 12
  assert 0 <= entry["top1"] <= 100


@pytest.mark.slow
def test_a_cell_is_also_scored_on_a_transfer_dataset_that_is_present(
    image_root, tmp_path):
  other = _image_folder(tmp_path / "places_like", ("p", "q", "r", "s"), 1)
  workdir = str(tmp_path / "run")
  # Alternatives: Places205 is not here, so the image folder is used.
  bindings = _small(image_root, "rotation") + [
      f"experiment.transfer_datasets = ['places205|image_folder:{other}']"]
  config = "configs/rotation/imagenet_revnet50_k4.gin"
  first = _train_and_eval(config, workdir, bindings, str(tmp_path / "tfds"))
  assert "Transfer dataset places205 skipped: its data is not here" in first
  with open(os.path.join(workdir, "results.json")) as f:
    entries = json.load(f)["evaluations"]
  assert [(e["dataset"], e["eval_split"], e["hyperparameters"]["train_examples"])
          for e in entries] == [(f"image_folder:{image_root}", "val", 12),
                                (f"image_folder:{other}", "val", 16)]
  # Both are found again: nothing is redone.
  out = _train_and_eval(config, workdir, bindings, str(tmp_path / "tfds"))
  assert out.count("already in results.json") == 2
  assert f"image_folder:{other}:val" in out  # the summary table names it


def test_an_unknown_transfer_dataset_fails_before_training(tmp_path):
  proc = cli.run(["train_and_eval.py", "--config=configs/rotation/imagenet_revnet50_k4.gin",
                  f"--workdir={tmp_path}",
                  "--gin_bindings=experiment.transfer_datasets = ['sun397']"], timeout=300)
  assert proc.returncode != 0
  assert "Unknown dataset 'sun397'; use one of" in proc.stderr
  assert not os.path.exists(tmp_path / "checkpoints")


@pytest.mark.slow
def test_the_evaluation_cli_scores_a_supervised_trunk_on_another_dataset(
    image_root, tmp_path):
  # The trunk has 3 classes of logits; the other dataset has 4.
  other = _image_folder(tmp_path / "places_like", ("p", "q", "r", "s"), 1)
  workdir = str(tmp_path / "run")
  bindings = _small(image_root, "supervised") + ["experiment.transfer_datasets = []"]
  _train_and_eval("configs/supervised/imagenet_resnet50_v2_k4.gin", workdir,
                  bindings, str(tmp_path / "tfds"))
  proc = cli.run(["-m", "evaluation", f"--workdir={workdir}",
                  f"--dataset=image_folder:{other}", "--protocol=linear_lbfgs",
                  "--gin_bindings=linear_eval.l2_grid = [1e-3]"], timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  with open(os.path.join(workdir, "results.json")) as f:
    entries = json.load(f)["evaluations"]
  assert [e["dataset"] for e in entries] == [f"image_folder:{image_root}",
                                             f"image_folder:{other}"]
  assert entries[1]["hyperparameters"]["train_examples"] == 16
