"""results.json: entries keyed by what produced them, including their dataset."""
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
