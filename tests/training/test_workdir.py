"""The workdir layout: the names runs have always used, in one place."""
import os

from training import workdir as workdir_lib


def test_named_paths():
  w = workdir_lib.Workdir("/runs/a")
  assert w.checkpoints == "/runs/a/checkpoints"
  assert w.summaries == "/runs/a/summaries"
  assert w.features == "/runs/a/features"
  assert w.lock == "/runs/a/lock"
  assert w.run_json == "/runs/a/run.json"
  assert w.results_json == "/runs/a/results.json"
  assert w.operative_config == "/runs/a/operative_config.gin"
  assert w.hub_export(1200) == "/runs/a/export/hub/1200"
  assert os.fspath(w) == "/runs/a" and str(w) == "/runs/a"
  assert workdir_lib.Workdir(w) == w and workdir_lib.of("/runs/a") == w


def test_head_directories_keep_their_historic_names():
  w = workdir_lib.Workdir("/r")
  head = w.head("linear_sgd", "trained@600", "block1", "avg", 0.1)
  assert head.path == "/r/eval/linear_sgd/trained@600/block1-avg-f0.1"
  assert head.checkpoints == head.path + "/checkpoints"
  assert head.summaries == head.path + "/summaries"
  assert head.curve == head.path + "/curve.json"
  # Seed 0 has no suffix (folders made before seeds were part of the name).
  assert w.head("mlp_sgd", "t", "pre_logits", "none", 1.0, seed=2).path == (
      "/r/eval/mlp_sgd/t/pre_logits-none-f1-s2")


def test_transfer_tree():
  w = workdir_lib.Workdir("/r").transfer("tfds:places365_small/1")
  assert w.path == "/r/transfer/tfds_places365_small_1"
  assert w.head("linear_sgd", "t", "x", "avg", 1.0).path == (
      "/r/transfer/tfds_places365_small_1/eval/linear_sgd/t/x-avg-f1")
