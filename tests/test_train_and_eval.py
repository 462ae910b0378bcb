"""End to end through the CLI: train, evaluate, write the workdir, resume."""
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

import cli

ROOT = cli.ROOT

CONFIG = """
experiment.task = 'rotation'
experiment.seed = 3
experiment.evaluate_random_init = True
get_model.name = 'resnet50_v2'
get_model.width = 1
rotation.pp_train = 'decode|resize(20)|crop(16)|flip_lr|value_range(-1, 1)|rotate'
rotation.pp_representation = 'decode|resize(16)|value_range(-1, 1)'
train.batch_size = 8
train.epochs = 1
train.warmup_epochs = 0.5
train.decay_epochs = [0.75]
train.steps_per_loop = 3
train.eval_batch_size = 16
linear_eval.layers = ['pre_logits', 'block1']
linear_eval.l2_grid = [0.1, 0.001]
linear_eval.max_iter = 50
linear_eval.eval_split = 'val'  # a flat image folder has no test split
linear_eval.refit_on_train_and_val = False
linear_eval.batch_size = 16
"""


def _make_folder(root, per_class=10):
  rng = np.random.RandomState(0)
  for c, name in enumerate(["cat", "dog", "fox"]):
    os.makedirs(root / name)
    for i in range(per_class):
      image = np.full((18, 18, 3), 60 * c, np.uint8)
      image += rng.randint(0, 40, size=image.shape).astype(np.uint8)
      image[: 6 + c * 3, :4] = 255  # an orientation cue for the rotation task
      (root / name / f"{i:03d}.png").write_bytes(tf.io.encode_png(image).numpy())


def _run(args):
  return cli.run([os.path.join(ROOT, "train_and_eval.py")] + args, timeout=900)


@pytest.mark.slow
def test_train_and_eval_writes_the_workdir_contract_and_resumes(tmp_path):
  _make_folder(tmp_path / "images")
  config = tmp_path / "tiny.gin"
  config.write_text(CONFIG)
  workdir = tmp_path / "run"
  args = [f"--config={config}", f"--workdir={workdir}",
          f"--gin_bindings=experiment.dataset = 'image_folder:{tmp_path / 'images'}'"]
  first = _run(args)
  assert first.returncode == 0, first.stderr[-3000:]
  # 30 images, the 10th of each class is val: 3 val, 27 train.
  # One epoch of 27 at batch 8 is ceil(3.4) = 4 steps.
  assert "step 4/4" in first.stdout
  assert "ETA" in first.stdout and "img/s" in first.stdout

  for name in ("checkpoints", "summaries", "operative_config.gin", "run.json",
               "results.json"):
    assert os.path.exists(workdir / name), name
  run = json.loads((workdir / "run.json").read_text())
  assert run["seed"] == 3
  assert run["git_commit"] and run["end_time"]
  assert "get_model.width = 1" in (workdir / "operative_config.gin").read_text()
  results = json.loads((workdir / "results.json").read_text())
  assert results["run"]["task"] == "rotation"
  assert results["run"]["architecture"] == "resnet50_v2"
  # Read from the built trunk: last_relu is left at its default, unbound.
  assert results["run"]["width"] == 1 and results["run"]["last_relu"] is True
  assert results["run"]["steps"] == 4
  assert results["pretext"]["split"] == "val"
  assert 0.0 <= results["pretext"]["accuracy"] <= 1.0
  evals = {(e["trunk"], e["layer"]): e for e in results["evaluations"]}
  assert set(evals) == {("trained@4", "pre_logits"), ("trained@4", "block1"),
                        ("random_init", "pre_logits"), ("random_init", "block1")}
  for e in evals.values():
    assert e["protocol"] == "linear_lbfgs"
    assert e["eval_split"] == "val" and e["train_split"] == "train"
    assert 0.0 <= e["top1"] <= e["top5"] <= 100.0
    assert e["hyperparameters"]["l2"] in (0.1, 0.001)

  # RankMe of each trunk's pre_logits on the held-out split (3 val images):
  # between 1 and min(3, 512).
  measures = {e["trunk"]: e for e in results["label_free"]}
  assert set(measures) == {"trained@4", "random_init"}
  for e in measures.values():
    assert (e["layer"], e["split"], e["dataset"], e["examples"], e["dim"]) == (
        "pre_logits", "val", f"image_folder:{tmp_path / 'images'}", 3, 512)
    assert 1.0 <= e["rankme"] <= 3.0

  hub_dir = workdir / "export" / "hub" / "4"
  assert (hub_dir / "saved_model.pb").exists()

  # Same command again, now also evaluating the exported module: nothing is
  # retrained or re-evaluated, and the module's features give the same
  # classifier as the trained trunk's.
  second = _run(args + [f"--gin_bindings=experiment.hub_modules = ['{hub_dir}']"])
  assert second.returncode == 0, second.stderr[-3000:]
  assert "Training already finished (4/4 steps)" in second.stdout
  assert "already in results.json" in second.stdout
  again = json.loads((workdir / "results.json").read_text())
  assert again["pretext"] == results["pretext"]
  hub_entries = {e["layer"]: e for e in again["evaluations"]
                 if e["trunk"] == f"hub:{hub_dir}"}
  assert set(hub_entries) == {"pre_logits", "block1"}
  for layer, entry in hub_entries.items():
    trained = evals[("trained@4", layer)]
    assert entry["top1"] == pytest.approx(trained["top1"])
    assert entry["hyperparameters"]["l2"] == trained["hyperparameters"]["l2"]
  for e in results["evaluations"]:
    assert e in again["evaluations"]
  # The report builder on this real run: its Table 1 cell, linked to the run,
  # and a nearest-neighbour gallery read from its feature cache.
  report_out = tmp_path / "report"
  proc = cli.run(["-m", "study.report", str(tmp_path), "--out", str(report_out)],
                 timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = (report_out / "report.md").read_text()
  # One trunk: nothing to bold; the random trunk evaluated inside the run fills
  # the Rnd cell, marked. Four steps leave the trained trunk where its random
  # one is (the folder's orientation cue is linearly separable from either,
  # within 2 standard errors on its few images): the trained cell is marked too.
  top1 = evals[("trained@4", "pre_logits")]["top1"]
  rnd = evals[("random_init", "pre_logits")]["top1"]
  assert f"| ResNet50 v2 | [{rnd:.1f}](#run-1)† | [{top1:.1f}](#run-1)° |" in report
  assert '<a id="run-1"></a>' in report and "### run-1: `run`" in report
  safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"image_folder:{tmp_path / 'images'}")
  gallery = report_out / "figures" / f"gallery_{safe.strip('_')}_rotation.png"
  assert gallery.read_bytes()[:4] == b"\x89PNG"

  # The module's features are the trained trunk's: the same RankMe.
  again_measures = {e["trunk"]: e for e in again["label_free"]}
  assert again_measures[f"hub:{hub_dir}"]["rankme"] == pytest.approx(
      measures["trained@4"]["rankme"], abs=2e-3)
  assert again_measures["trained@4"] == measures["trained@4"]
