"""The run's results.json: identity of the run plus every metric it produced.

Reports and sweeps read these files alone, so writes are atomic and entries of
the same evaluation (same protocol, trunk, layer, splits, fraction, pooling)
replace each other instead of piling up.
"""
import json
import os
from typing import Dict, List

_ENTRY_KEY = ("protocol", "trunk", "dataset", "layer", "pooling", "train_split",
              "eval_split", "fraction")
_LABEL_FREE_KEY = ("trunk", "dataset", "layer", "pooling", "split")


def load(workdir: str) -> Dict:
  path = os.path.join(workdir, "results.json")
  if not os.path.exists(path):
    return {"run": {}, "pretext": {}, "evaluations": []}
  with open(path) as f:
    try:
      return json.load(f)
    except ValueError as e:
      raise ValueError(
          f"{path} is not valid JSON ({e}); it was damaged outside this code (its "
          f"writes are atomic). Restore it from a backup or delete it: rerunning "
          f"the run rebuilds it from the checkpoints and the feature cache.") from e


def _key(entry):
  return tuple(entry.get(k) for k in _ENTRY_KEY)


def has_entry(results: Dict, default_dataset=None, **match) -> bool:
  """Whether an entry has every `match` value; one without a `dataset` field
  (written before entries named theirs) counts as `default_dataset`'s."""
  def value(e, k):
    return e.get(k, default_dataset) if k == "dataset" else e.get(k)
  return any(all(value(e, k) == v for k, v in match.items())
             for e in results.get("evaluations", []))


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
  path = os.path.join(workdir, "results.json")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(results, f, indent=2, sort_keys=False)
  os.replace(tmp, path)
  return results


def format_table(evaluations: List[Dict]) -> str:
  """A plain-text table of evaluation entries (one row each)."""
  rows = [("protocol", "trunk", "layer", "fraction", "eval split", "top-1 %",
           "top-5 %")]
  for e in evaluations:
    trunk = e["trunk"]
    if len(trunk) > 28:
      trunk = "..." + trunk[-25:]
    split = e["eval_split"]
    if len({x.get("dataset") for x in evaluations}) > 1 and e.get("dataset"):
      split = f"{e['dataset']}:{split}"
    rows.append((e["protocol"], trunk, e["layer"], f"{e.get('fraction', 1.0):g}",
                 split, f"{e['top1']:.2f}", f"{e['top5']:.2f}"))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = []
  for r in rows:
    cells = [c.ljust(w) if i < 5 else c.rjust(w)
             for i, (c, w) in enumerate(zip(r, widths))]
    lines.append("  ".join(cells))
  return "\n".join(lines)
