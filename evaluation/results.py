"""The run's results.json: identity of the run plus every metric it produced.

Reports and sweeps read these files alone, so writes are atomic and entries of
the same evaluation (same protocol, trunk, layer, splits, fraction, pooling,
dataset, seed) replace each other instead of piling up.

The document carries a `schema_version`; `migrate` is the one place that
knows what earlier versions meant, and every read goes through it:

  1 (no version field): an evaluation entry may lack `seed` (it was seed 0)
    and `dataset` (it was the run's own, `run.dataset`).
  2: every entry written names its dataset and seed.
"""
import json
import os
from typing import Dict, List, Optional

# Not training.strategy: reading results (study/report) needs no TF.
from training import role
from training import workdir as workdir_lib

SCHEMA_VERSION = 2

_ENTRY_KEY = ("protocol", "trunk", "dataset", "layer", "pooling", "train_split",
              "eval_split", "fraction", "seed")
_LABEL_FREE_KEY = ("trunk", "dataset", "layer", "pooling", "split")


def empty() -> Dict:
  """The document of a run that has no results yet."""
  return {"schema_version": SCHEMA_VERSION, "run": {}, "pretext": {},
          "evaluations": []}


def upgrade_entry(entry: Dict, run_dataset: Optional[str] = None) -> Dict:
  """An evaluation entry as schema 2 reads it (a copy; `entry` is left as is).

  A schema-1 entry without `seed` was made with seed 0; one without `dataset`
  was made on `run_dataset` (the run's own), left unnamed when that is None.
  """
  out = dict(entry)
  out.setdefault("seed", 0)
  if run_dataset is not None:
    out.setdefault("dataset", run_dataset)
  return out


def migrate(doc: Dict) -> Dict:
  """Any results.json document upgraded to SCHEMA_VERSION (in place; returned).

  Raises:
    ValueError: a document of a newer schema than this code knows.
  """
  version = doc.get("schema_version", 1)
  if not isinstance(version, int) or version > SCHEMA_VERSION:
    raise ValueError(
        f"results.json has schema_version {version!r}; this code reads up to "
        f"{SCHEMA_VERSION}. Update the code to the version that wrote it.")
  for part, default in (("run", {}), ("pretext", {}), ("evaluations", [])):
    doc.setdefault(part, default)
  if version < 2:
    own = doc["run"].get("dataset")
    doc["evaluations"] = [upgrade_entry(e, own) for e in doc["evaluations"]]
  doc["schema_version"] = SCHEMA_VERSION
  return doc


def load(workdir: str) -> Dict:
  """workdir/results.json at the current schema (an empty one when absent)."""
  path = workdir_lib.of(workdir).results_json
  if not os.path.exists(path):
    return empty()
  with open(path) as f:
    try:
      doc = json.load(f)
    except ValueError as e:
      raise ValueError(
          f"{path} is not valid JSON ({e}); it was damaged outside this code (its "
          f"writes are atomic). Restore it from a backup or delete it: rerunning "
          f"the run rebuilds it from the checkpoints and the feature cache.") from e
  try:
    return migrate(doc)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from e


def _key(entry):
  entry = upgrade_entry(entry)
  return tuple(entry.get(k) for k in _ENTRY_KEY)


def has_entry(results: Dict, default_dataset=None, **match) -> bool:
  """Whether an entry has every `match` value; one that names no dataset
  counts as `default_dataset`'s (upgrade_entry)."""
  return any(all(e.get(k) == v for k, v in match.items())
             for e in (upgrade_entry(e, default_dataset)
                       for e in results.get("evaluations", [])))


def update(workdir: str, *, run: Dict = None, pretext: Dict = None,
           evaluations: List[Dict] = (), label_free: List[Dict] = ()) -> Dict:
  """Merges into workdir/results.json (atomically) and returns the document.

  label_free: evaluation/label_free.py entries (RankMe of a trunk's layer on a
  split), kept in their own list: they have no protocol, labels or top-1.
  """
  results = load(workdir)
  if run:
    results["run"].update(run)
  if pretext:
    results["pretext"].update(pretext)
  by_key = {_key(e): e for e in results["evaluations"]}
  for e in evaluations:
    by_key[_key(e)] = e
  results["evaluations"] = list(by_key.values())
  if label_free or "label_free" in results:
    key = lambda e: tuple(e.get(k) for k in _LABEL_FREE_KEY)  # noqa: E731
    measures = {key(e): e for e in results.get("label_free", [])}
    for e in label_free:
      measures[key(e)] = e
    results["label_free"] = list(measures.values())
  if not role.is_chief():
    return results  # the chief writes the same document
  path = workdir_lib.of(workdir).results_json
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(results, f, indent=2, sort_keys=False)
  os.replace(tmp, path)
  return results


def over_seeds(evaluations: List[Dict]) -> List[Dict]:
  """Entries that differ only in their seed, merged into one.

  The merged entry is the first's, with top1/top5 the mean over seeds,
  top1_std/top5_std the sample standard deviation (n - 1; 0 for one seed)
  and `seeds` the seeds, in order. Single-seed entries come back with
  `seeds` = [their seed] and zero deviations.
  """
  groups = {}
  for e in evaluations:
    key = tuple(e.get(k) for k in _ENTRY_KEY if k != "seed")
    groups.setdefault(key, []).append(e)
  merged = []
  for entries in groups.values():
    out = dict(entries[0])
    out["seeds"] = [upgrade_entry(e)["seed"] for e in entries]
    for metric in ("top1", "top5"):
      values = [float(e[metric]) for e in entries]
      mean = sum(values) / len(values)
      var = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)
             if len(values) > 1 else 0.0)
      out[metric], out[f"{metric}_std"] = mean, var ** 0.5
    merged.append(out)
  return merged


def format_table(evaluations: List[Dict]) -> str:
  """A plain-text table of evaluation entries: one row each, or one per group
  of seeds with mean ± standard deviation (n = number of seeds)."""
  rows = [("protocol", "trunk", "layer", "fraction", "eval split", "top-1 %",
           "top-5 %")]
  for e in over_seeds(evaluations):
    trunk = e["trunk"]
    if len(trunk) > 28:
      trunk = "..." + trunk[-25:]
    split = e["eval_split"]
    if len({x.get("dataset") for x in evaluations}) > 1 and e.get("dataset"):
      split = f"{e['dataset']}:{split}"
    n = len(e["seeds"])
    metric = lambda m: (f"{e[m]:.2f}" if n == 1 else  # noqa: E731
                        f"{e[m]:.2f} ± {e[m + '_std']:.2f} (n={n})")
    rows.append((e["protocol"], trunk, e["layer"], f"{e.get('fraction', 1.0):g}",
                 split, metric("top1"), metric("top5")))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = []
  for r in rows:
    cells = [c.ljust(w) if i < 5 else c.rjust(w)
             for i, (c, w) in enumerate(zip(r, widths))]
    lines.append("  ".join(cells))
  return "\n".join(lines)
