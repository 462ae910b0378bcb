"""The run's results.json: identity of the run plus every metric it produced.

Reports and sweeps read these files alone, so writes are atomic and entries of
the same evaluation (same protocol, trunk, layer, splits, fraction, pooling,
dataset, seed and `settings`) replace each other instead of piling up.

An entry's `settings` (evaluation/protocols.py `entry_settings`) hold
everything that changes its number: the representation pipeline, the
extraction precision, the splits, the selection rule and the protocol's own
settings. An evaluation counts as done only when an entry with the same
settings is there, so a changed setting evaluates anew instead of keeping a
number it did not make (`has_entry`); a deliberate change of the run's model
config sets aside what it invalidates (`set_aside`).

The document carries a `schema_version`; `migrate` is the one place that
knows what earlier versions meant, and every read goes through it:

  1 (no version field): an evaluation entry may lack `seed` (it was seed 0)
    and `dataset` (it was the run's own, `run.dataset`).
  2: every entry written names its dataset and seed.
  3: every entry written carries its `settings`. Earlier entries have none:
    they are matched on what they record (splits, selection rule, precision;
    `legacy_matches`), and kept beside entries of other settings.
"""
import json
import os
from typing import Dict, List, Mapping, Optional, Sequence

# Not training.strategy: reading results (study/report) needs no TF.
from training import role
from training import workdir as workdir_lib

SCHEMA_VERSION = 3

_ENTRY_KEY = ("protocol", "trunk", "dataset", "layer", "pooling", "train_split",
              "eval_split", "fraction", "seed", "settings")
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


def _hashable(value):
  # Settings are JSON: a canonical dump orders their keys and lists alike.
  if isinstance(value, (dict, list)):
    return json.dumps(value, sort_keys=True)
  return value


def _key(entry, skip=()):
  entry = upgrade_entry(entry)
  return tuple(_hashable(entry.get(k)) for k in _ENTRY_KEY if k not in skip)


def legacy_matches(entry: Mapping, recorded: Mapping) -> bool:
  """Whether an entry written without `settings` (schema < 3) agrees with what
  an entry of these settings records (`recorded`: e.g. train_split,
  selected_on, eval_split, extraction_precision; None where it records none).

  Only what the old entry itself recorded can be compared: its pipeline was
  not, so a changed pipeline is caught by `set_aside` on --overwrite_config.
  """
  return all(entry.get(k) == v for k, v in recorded.items())


def has_entry(results: Dict, default_dataset=None, settings: Optional[Dict] = None,
              recorded: Optional[Mapping] = None, **match) -> bool:
  """Whether an entry has every `match` value; one that names no dataset
  counts as `default_dataset`'s (upgrade_entry).

  settings: when given, the entry must also have been made with these
  settings (equal `settings`), or, written before entries had any, agree
  with `recorded` (legacy_matches).
  """
  def same_settings(e):
    if settings is None:
      return True
    if "settings" in e:
      return _hashable(e["settings"]) == _hashable(settings)
    return legacy_matches(e, recorded or {})
  return any(all(e.get(k) == v for k, v in match.items()) and same_settings(e)
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
  _write(workdir, results)
  return results


def _write(workdir: str, results: Dict) -> None:
  if not role.is_chief():
    return  # the chief writes the same document
  path = workdir_lib.of(workdir).results_json
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(results, f, indent=2, sort_keys=False)
  os.replace(tmp, path)


def invalidated_by(changed: Sequence[str]) -> Dict[str, bool]:
  """What a deliberate change of these model-config settings makes stale.

  changed: run.json `model_config` keys whose value changed
  (training/run_record.py: experiment.*, get_model.*, <task>.pp_<mode>).

  Returns {part: bool} for 'evaluations' and 'label_free' (of the run's own
  trunks: a hub module's features depend on none of these) and 'pretext'.
  A pp_train change invalidates nothing recorded: the trunk it trains is
  another step, named in every entry.
  """
  pipelines = {k.rsplit(".pp_", 1)[1] for k in changed if ".pp_" in k}
  model = any(not (".pp_" in k) for k in changed)
  representation = model or "representation" in pipelines
  return dict(evaluations=representation, label_free=representation,
              pretext=model or "pretext_eval" in pipelines)


def set_aside(workdir: str, changed: Sequence[str]) -> Dict[str, int]:
  """Moves the results `changed` settings invalidate to results.json's
  `set_aside` (kept for the record, read by no table), atomically.

  Returns {'evaluations': n, 'label_free': n, 'pretext': 0 or 1}: how many
  were set aside (all zero when results.json holds none).
  """
  results = load(workdir)
  stale = invalidated_by(changed)
  aside = results.setdefault("set_aside", {})
  counts = {}
  for part in ("evaluations", "label_free"):
    moved = [e for e in results.get(part, [])
             if stale[part] and not str(e.get("trunk", "")).startswith("hub:")]
    results[part] = [e for e in results.get(part, []) if e not in moved]
    aside.setdefault(part, []).extend(
        dict(e, set_aside_for=list(changed)) for e in moved)
    counts[part] = len(moved)
  counts["pretext"] = int(bool(stale["pretext"] and results.get("pretext")))
  if counts["pretext"]:
    aside.setdefault("pretext", []).append(
        dict(results["pretext"], set_aside_for=list(changed)))
    results["pretext"] = {}
  if not any(counts.values()):
    if not aside:
      results.pop("set_aside")
    return counts
  _write(workdir, results)
  return counts


def set_aside_line(counts: Mapping[str, int], changed: Sequence[str]) -> str:
  """The one line --overwrite_config prints about `set_aside`'s counts."""
  parts = [f"{counts.get('evaluations', 0)} evaluation entries",
           f"{counts.get('label_free', 0)} label-free measures"]
  if counts.get("pretext"):
    parts.append("the pretext accuracy")
  return (f"--overwrite_config changed {', '.join(changed)}: set aside "
          f"{', '.join(parts)} made with the old settings (results.json "
          f"'set_aside'); they are evaluated anew.")


def over_seeds(evaluations: List[Dict]) -> List[Dict]:
  """Entries that differ only in their seed, merged into one.

  The merged entry is the first's, with top1/top5 the mean over seeds,
  top1_std/top5_std the sample standard deviation (n - 1; 0 for one seed)
  and `seeds` the seeds, in order. Single-seed entries come back with
  `seeds` = [their seed] and zero deviations.
  """
  groups = {}
  for e in evaluations:
    groups.setdefault(_key(e, skip=("seed",)), []).append(e)
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
