"""Evaluation seeds: one entry per seed, what a seed changes, mean ± std."""
import json
import os

import numpy as np
import pytest

import fake_data
from tiny_tasks import pixel_trunk
from evaluation import protocols
from evaluation import results


@pytest.fixture(scope="module")
def dataset():
  return fake_data.small_pixels(separable=False)


_trunk = pixel_trunk


def test_seeds_vary_the_low_data_subset_and_are_kept_apart(dataset, tmp_path):
  workdir = str(tmp_path)
  quiet = lambda _: None  # noqa: E731
  overrides = dict(layers=["pixels"], fraction=0.5, l2_grid=[1e-2], max_iter=50)
  entries = [protocols.run("linear_lbfgs", _trunk(), dataset, workdir=workdir,
                           overrides=overrides, seed=s, log=quiet)[0] for s in (0, 1, 2)]
  assert [e["seed"] for e in entries] == [0, 1, 2]
  assert [e["hyperparameters"]["subset_seed"] for e in entries] == [0, 1, 2]
  saved = json.loads((tmp_path / "results.json").read_text())["evaluations"]
  assert len(saved) == 3
  # Each seed is done once; a fourth call adds nothing.
  assert protocols.run("linear_lbfgs", _trunk(), dataset, workdir=workdir,
                       overrides=overrides, seed=1, log=quiet) == []
  # With every label, L-BFGS and kNN have nothing a seed could change.
  messages = []
  assert protocols.run("knn", _trunk(), dataset, workdir=workdir,
                       overrides=dict(layers=["pixels"]), seed=1,
                       log=messages.append) == []
  assert "seed 1 would repeat seed 0's result; skipped" in messages[0]
  # The SGD heads: a seed sets initialisation and shuffling, in its own folder.
  sgd = dict(layers=["pixels"], batch_size=40, first_decay_epochs=1,
             second_decay_after=1, tail_epochs=1)
  for seed in (0, 1):
    e = protocols.run("linear_sgd_features", _trunk(), dataset, workdir=workdir,
                      overrides=sgd, seed=seed, log=quiet)[0]
    assert e["seed"] == seed and e["hyperparameters"]["seed"] == seed
  base = tmp_path / "eval" / "linear_sgd_features" / "pixels"
  assert sorted(os.listdir(base)) == ["pixels-adaptive_max-f1",
                                      "pixels-adaptive_max-f1-s1"]


def test_mean_and_sample_deviation_over_seeds():
  entry = dict(protocol="linear_sgd", trunk="trained@9", dataset="d", layer="pre_logits",
               pooling="adaptive_max", train_split="train", eval_split="val",
               fraction=1.0)
  runs = [dict(entry, top1=t, top5=90.0 + t / 10, seed=s)
          for s, t in enumerate((70.0, 72.0, 77.0))]
  other = dict(entry, layer="block4", top1=50.0, top5=80.0)  # no seed field: seed 0
  merged = results.over_seeds(runs + [other])
  assert len(merged) == 2
  assert merged[0]["seeds"] == [0, 1, 2]
  assert merged[0]["top1"] == pytest.approx(73.0)
  assert merged[0]["top1_std"] == pytest.approx(np.std([70, 72, 77], ddof=1))
  assert merged[1]["seeds"] == [0] and merged[1]["top1_std"] == 0.0
  table = results.format_table(runs + [other]).splitlines()
  assert table[1].split()[-8:] == ["73.00", "±", "3.61", "(n=3)", "97.30", "±", "0.36", "(n=3)"]
  assert table[2].split()[-2:] == ["50.00", "80.00"]
  # Seed 0 and an entry from before seeds are the same evaluation: one replaces
  # the other in results.json.
  assert results._key(dict(other, seed=0)) == results._key(other)
