"""results.json: entries keyed by what produced them, including their dataset."""
import json
import os
import subprocess
import sys

import pytest

from evaluation import results


def _entry(**kw):
  e = dict(protocol="linear_lbfgs", trunk="trained@10", layer="pre_logits",
           pooling="adaptive_max", train_split="train", eval_split="val",
           fraction=1.0, top1=50.0, top5=80.0)
  e.update(kw)
  return e


def test_entries_of_other_datasets_live_beside_the_runs_own(tmp_path):
  workdir = str(tmp_path)
  results.update(workdir, run=dict(dataset="imagenet2012"))
  # An entry written before entries named their dataset: the run's.
  results.update(workdir, evaluations=[_entry()])
  results.update(workdir, evaluations=[_entry(dataset="places365", top1=40.0)])
  doc = results.update(workdir, evaluations=[_entry(dataset="places365", top1=41.0)])
  assert [(e.get("dataset"), e["top1"]) for e in doc["evaluations"]] == [
      (None, 50.0), ("places365", 41.0)]
  match = dict(protocol="linear_lbfgs", trunk="trained@10", layer="pre_logits")
  assert results.has_entry(doc, dataset="imagenet2012",
                           default_dataset="imagenet2012", **match)
  assert results.has_entry(doc, dataset="places365", **match)
  assert not results.has_entry(doc, dataset="imagenet2012", **match)
  assert not results.has_entry(doc, dataset="image_folder:/x",
                               default_dataset="imagenet2012", **match)
  table = results.format_table(doc["evaluations"]).splitlines()
  assert table[1].split()[4] == "val" and table[2].split()[4] == "places365:val"
  assert results.format_table([_entry(dataset="a")]).splitlines()[1].split()[4] == "val"


# results.json as runs wrote it before documents had a schema_version: entries
# without `seed` (seed 0) and without `dataset` (the run's own).
SCHEMA_1 = """{
  "run": {"task": "rotation", "dataset": "imagenet2012", "steps": 10},
  "pretext": {"accuracy": 0.5},
  "evaluations": [
    {"protocol": "linear_lbfgs", "trunk": "trained@10", "layer": "pre_logits",
     "pooling": "adaptive_max", "train_split": "train", "eval_split": "val",
     "fraction": 1.0, "top1": 50.0, "top5": 80.0},
    {"protocol": "linear_lbfgs", "trunk": "trained@10", "layer": "pre_logits",
     "pooling": "adaptive_max", "train_split": "train", "eval_split": "val",
     "fraction": 1.0, "top1": 40.0, "top5": 70.0, "dataset": "places365",
     "seed": 1}
  ],
  "label_free": [{"trunk": "trained@10", "dataset": "imagenet2012",
                  "layer": "pre_logits", "split": "val",
                  "pooling": "adaptive_max", "examples": 8, "dim": 4,
                  "rankme": 3.5}]
}"""


def test_a_schema_1_document_loads_with_the_same_answers(tmp_path):
  (tmp_path / "results.json").write_text(SCHEMA_1)
  doc = results.load(str(tmp_path))
  assert doc["schema_version"] == results.SCHEMA_VERSION == 3
  assert [(e["dataset"], e["seed"], e["top1"]) for e in doc["evaluations"]] == [
      ("imagenet2012", 0, 50.0), ("places365", 1, 40.0)]
  assert doc["run"]["steps"] == 10 and doc["pretext"] == {"accuracy": 0.5}
  assert doc["label_free"][0]["rankme"] == 3.5
  match = dict(protocol="linear_lbfgs", trunk="trained@10", layer="pre_logits",
               fraction=1.0)
  # What protocols.run and the sweep asked of it before (the run's dataset as
  # the default) they get from the migrated document, with or without it.
  for default in ("imagenet2012", None):
    assert results.has_entry(doc, dataset="imagenet2012", seed=0,
                             default_dataset=default, **match)
    assert results.has_entry(doc, dataset="places365", seed=1,
                             default_dataset=default, **match)
    assert not results.has_entry(doc, dataset="places365", seed=0,
                                 default_dataset=default, **match)
  table = results.format_table(doc["evaluations"]).splitlines()
  assert [r.split()[4:] for r in table[1:]] == [
      ["imagenet2012:val", "50.00", "80.00"], ["places365:val", "40.00", "70.00"]]
  # Written back at the current schema; the same evaluation replaces the old
  # entry instead of piling up beside it.
  results.update(str(tmp_path), evaluations=[_entry(dataset="imagenet2012",
                                                    seed=0, top1=51.0)])
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["schema_version"] == 3
  assert [(e["dataset"], e["top1"]) for e in saved["evaluations"]] == [
      ("imagenet2012", 51.0), ("places365", 40.0)]


def test_a_document_of_a_newer_schema_names_the_fix(tmp_path):
  (tmp_path / "results.json").write_text('{"schema_version": 4, "run": {}}')
  with pytest.raises(ValueError, match="schema_version 4.*Update the code"):
    results.load(str(tmp_path))


def test_results_reads_without_tensorflow():
  # The report builder imports it on machines without TensorFlow.
  code = ("import sys; from evaluation import results; "
          "assert 'tensorflow' not in sys.modules, 'imports TF'")
  root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
  subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
