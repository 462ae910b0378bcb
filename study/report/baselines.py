"""The controls of any trained entry a table or figure shows, found in a sweep.

Table 1's cells find theirs in the grid itself (tables.judge: the Rnd and
Supervised columns); a figure's point (another layer, a fraction of the
labels, an MLP head, a bottleneck model) needs the controls scored exactly
like it (docs/protocol.md §9): the same protocol, dataset, split, layer,
fraction and, for equal-dimension entries, the same pooled size. TF-free.

  pixels      the `pixels` trunk's entry of that protocol, dataset, split and
              fraction (it has one end point and keeps its own size), from
              the run itself, else from any run trained on the same dataset
  random      the random trunk of the same architecture, width and
              representation size: a dedicated Rnd run's, else the run's own
              `random_init` entry
  supervised  the supervised run of the same architecture and width
"""
from typing import Dict, Optional, Sequence

from study.report import controls as controls_lib
from study.report.runs import Run, pick


# The end point that is a vector in every trunk (the global pool's output).
VECTOR_LAYER = "pre_logits"


def pooled_to(entry: Dict) -> Optional[int]:
  """The equal-dimension size an entry was scored at (linear_eval's
  `pool_to_features` setting), None for the usual pooling."""
  return (entry.get("settings") or {}).get("pool_to_features")


def _scored_like(entry: Dict, layer: bool = True) -> Dict:
  match = dict(protocol=entry["protocol"], dataset=entry["dataset"],
               eval_split=entry.get("eval_split"),
               fraction=float(entry.get("fraction", 1.0)))
  if not layer:
    return match
  match["layer"] = entry["layer"]
  if entry["layer"] == VECTOR_LAYER and entry.get("features"):
    # A vector pooled to n features has n, and pooled to its own size it is
    # unchanged (evaluation/pooling.py): the count, not the setting, tells two
    # pre_logits entries apart. A workdir's later evaluations inherit its last
    # run's settings, e.g. Fig. 5's pool_to_features = 512 on a 512-d pre_logits.
    match["features"] = entry["features"]
  else:
    size = pooled_to(entry)
    match["settings"] = lambda s, size=size: (s or {}).get("pool_to_features") == size
  return match


def _same_model(a: Run, b: Run) -> bool:
  return (a.trunk, a.width, a.dataset, a.representation_size) == (
      b.trunk, b.width, b.dataset, b.representation_size)


def pixels_of(runs: Sequence[Run], run: Run, entry: Dict) -> Optional[Dict]:
  match = dict(_scored_like(entry, layer=False), trunk="pixels")
  for candidate in [run] + [r for r in runs if r.dataset == run.dataset and r is not run]:
    e = pick(candidate.evaluations, **match)
    if e:
      return e
  return None


def random_of(runs: Sequence[Run], run: Run, entry: Dict) -> Optional[Dict]:
  match = _scored_like(entry)
  for r in runs:
    if r.is_rnd and _same_model(r, run):
      e = pick(r.evaluations, trunk=lambda t, r=r: t == f"trained@{r.steps}"
               or str(t).startswith("random_init"), **match)
      if e:
        return e
  return pick(run.evaluations, trunk=lambda t: str(t).startswith("random_init"),
              **match)


def supervised_of(runs: Sequence[Run], run: Run, entry: Dict) -> Optional[Dict]:
  match = _scored_like(entry)
  for r in runs:
    if r.task == "supervised" and _same_model(r, run):
      e = pick(r.evaluations, trunk=f"trained@{r.steps}", **match)
      if e:
        return e
  return None


def controls_for(runs: Sequence[Run], run: Run, entry: Dict) -> Dict[str, Optional[Dict]]:
  """{pixels, random, supervised: entry or None} scored like `entry`; a
  control whose own fit never left chance is no control (None)."""
  found = dict(pixels=pixels_of(runs, run, entry), random=random_of(runs, run, entry),
               supervised=supervised_of(runs, run, entry))
  return {k: None if e is None or controls_lib.failed_fit(e) else e
          for k, e in found.items()}


def verdict_for(runs: Sequence[Run], run: Run, entry: Dict) -> Optional[bool]:
  """controls.verdict of a trained entry against its controls; False for a
  failed fit, None for a baseline run (it is a control, not judged)."""
  if run.is_rnd or run.task == "supervised":
    return None
  if controls_lib.failed_fit(entry):
    return False
  return controls_lib.verdict(entry, controls_for(runs, run, entry))


def mark_for(runs: Sequence[Run], run: Run, entry: Dict) -> str:
  """controls.MARK when a trained entry does not beat both controls, else ''."""
  return controls_lib.MARK if verdict_for(runs, run, entry) is False else ""
