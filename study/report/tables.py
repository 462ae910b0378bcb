"""The paper's tables from a sweep's runs: the Table 1 layout (own and transfer
datasets), Table 2 and the label-free model selection statistics. TF-free."""
import collections
import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

from evaluation import label_free  # numpy only
from study.grid import cells as study_cells
from study.report import baselines
from study.report import controls as controls_lib
from study.report.runs import (MISSING, TASK_ORDER, Run, in_order, is_pretext, pick,
                               rankme_of, row_label, table1_entry, table1_value,
                               table_runs, task_label)


@dataclasses.dataclass
class Cell:
  value: float
  run: Run
  entry: Dict
  mark: str = ""  # "†": a random_init entry of a trained run
  others: List[Tuple[Run, float]] = dataclasses.field(default_factory=list)
  # A pretext task's cell: its controls' entries (controls.CONTROLS and
  # 'supervised'), whether it beats both (controls.verdict), whether its fit
  # never left chance (controls.failed_fit).
  controls: Dict[str, Optional[Dict]] = dataclasses.field(default_factory=dict)
  verdict: Optional[bool] = None
  failed: bool = False


def pixels_entry(runs: Sequence[Run], run: Run, entry: Dict) -> Optional[Dict]:
  """The pixels control scored like `entry`: same protocol, dataset, split,
  all labels; the run's own, else another run's trained on the same dataset."""
  match = dict(protocol=entry["protocol"], dataset=entry["dataset"],
               eval_split=entry.get("eval_split"), fraction=1.0, trunk="pixels")
  for candidate in [run] + [r for r in runs if r.dataset == run.dataset and r is not run]:
    e = pick(candidate.evaluations, **match)
    if e:
      return e
  return None


def judge(cells: Dict[Tuple[str, str, int], Cell], runs: Sequence[Run]) -> None:
  """Sets each cell's failed flag, and each pretext cell's controls and verdict."""
  for (trunk, task, w), c in cells.items():
    c.failed = controls_lib.failed_fit(c.entry)
    if not is_pretext(task):
      continue
    random = cells.get((trunk, "random_init", w))
    supervised = cells.get((trunk, "supervised", w))
    c.controls = dict(pixels=pixels_entry(runs, c.run, c.entry),
                      random=random.entry if random and not random.failed else None,
                      supervised=supervised.entry if supervised else None)
    c.verdict = False if c.failed else controls_lib.verdict(c.entry, c.controls)


def grid_cells(runs: Sequence[Run], source: str, target: str
               ) -> Dict[Tuple[str, str, int], Cell]:
  """{(trunk, task, width): Cell} of runs trained on `source`, scored on `target`."""
  protocols = ("linear_lbfgs",) if source == target else ("linear_lbfgs", "linear_sgd")
  found = collections.defaultdict(list)
  for run in table_runs(runs, source):
    e = table1_entry(run, target, protocols)
    if e:
      found[(run.trunk, run.task, run.width)].append((run, e))
  cells = {}
  for key, candidates in found.items():
    # Several runs of a cell (seeds): the first seed is shown, the others listed.
    candidates.sort(key=lambda c: (c[0].info.get("seed") or 0, c[0].id))
    run, e = candidates[0]
    cells[key] = Cell(e["top1"], run, e,
                      others=[(r, x["top1"]) for r, x in candidates[1:]])
  rnd_runs = {(r.trunk, r.width) for r in table_runs(runs, source) if r.is_rnd}
  for run in table_runs(runs, source):
    key = (run.trunk, "random_init", run.width)
    if run.is_rnd or (run.trunk, run.width) in rnd_runs or key in cells:
      continue  # a dedicated Rnd run (or an earlier run's baseline) wins
    for protocol in protocols:
      e = pick(run.evaluations, protocol=protocol, layer="pre_logits", fraction=1.0,
               dataset=target, trunk=lambda t: str(t).startswith("random_init"),
               settings=lambda s: not (s or {}).get("pool_to_features"))
      if e:
        cells[key] = Cell(e["top1"], run, e, mark="†")
        break
  judge(cells, runs)
  return cells



def rows_and_columns(cells) -> Tuple[List[str], List[Tuple[str, int]]]:
  rows = in_order((k[0] for k in cells), study_cells.TRUNK_NAMES)
  tasks = in_order((k[1] for k in cells), TASK_ORDER)
  columns = [(t, w) for t in tasks for w in sorted({k[2] for k in cells if k[1] == t})]
  return rows, columns


def spread(entry: Optional[Dict]) -> Optional[float]:
  """The standard deviation over an entry's seeds, None for a single seed."""
  if not entry or len(entry.get("seeds", [0])) < 2:
    return None
  return entry.get("top1_std")


def link(value: float, run: Run, bold: bool = False, underline: bool = False,
         std: Optional[float] = None) -> str:
  """`[**53.7**](#run-7)`, underlined as `<u>[53.7](#run-7)</u>`; with several
  seeds `[53.7 ± 0.4](#run-7)` (mean ± standard deviation)."""
  text = f"{value:.1f}" + (f" ± {std:.1f}" if std is not None else "")
  text = f"[**{text}**](#{run.anchor})" if bold else f"[{text}](#{run.anchor})"
  return f"<u>{text}</u>" if underline else text


def format_grid(cells: Dict[Tuple[str, str, int], Cell]) -> str:
  """The Table 1 layout: bold = column's best, underlined = row's best task.

  Comparisons use the printed (1 decimal) values, so ties are marked alike,
  and need two or more competitors.
  """
  rows, columns = rows_and_columns(cells)
  # A failed fit is no number: it competes for nothing.
  shown = {k: round(c.value, 1) for k, c in cells.items() if not c.failed}
  bold = set()
  for task, w in columns:
    col = {k: v for k, v in shown.items() if k[1:] == (task, w)}
    if len(col) > 1:
      bold |= {k for k, v in col.items() if v == max(col.values())}
  underline = set()
  for trunk in rows:
    best = {}  # pretext task -> its best width's value in this row
    for (t, task, w), v in shown.items():
      if t == trunk and is_pretext(task):
        best[task] = max(best.get(task, v), v)
    if len(best) > 1:
      top = max(best.values())
      underline |= {k for k, v in shown.items()
                    if k[0] == trunk and k[1] in best and best[k[1]] == top and v == top}
  lines = ["| Trunk | " + " | ".join(f"{task_label(t)} k={w}" for t, w in columns) + " |",
           "|---|" + "---:|" * len(columns)]
  for trunk in rows:
    out = []
    for task, w in columns:
      c = cells.get((trunk, task, w))
      if c is None:
        out.append(MISSING)
      elif c.failed:
        out.append(f"[failed](#{c.run.anchor}){c.mark}")
      else:
        out.append(link(c.value, c.run, (trunk, task, w) in bold,
                        (trunk, task, w) in underline, spread(c.entry)) + c.mark
                   + (controls_lib.MARK if c.verdict is False else ""))
    lines.append(f"| {row_label(trunk)} | " + " | ".join(out) + " |")
  return "\n".join(lines)


def grid_notes(cells, runs: Sequence[Run] = ()) -> List[str]:
  used = sorted({(c.entry["protocol"], c.entry.get("eval_split"))
                 for c in cells.values()})
  notes = ["Top-1 % of " + ", ".join(f"`{p}` on `{s}`" for p, s in used) +
           " (pre_logits, all labels, the run's final trunk). **Bold**: best trunk "
           "of the column; <u>underlined</u>: the row's best pretext task (its best "
           f"width). {MISSING}: no run."]
  # A baseline's cell has no controls of its own: the pixels scored like it.
  pixels = {(e["protocol"], e.get("eval_split")): e for c in cells.values()
            for e in [c.controls.get("pixels") or baselines.pixels_of(runs, c.run, c.entry)]
            if e}
  notes.append(
      "Controls: " + ("; ".join(
          f"pixels {controls_lib.entry_text(e)} (`{p}` on `{s}`)"
          for (p, s), e in sorted(pixels.items())) or "no pixels entry (evaluate one: "
          "`experiment.evaluate_pixels = True` or `python -m evaluation --trunk=pixels`)")
      + "; the random trunk of each architecture and width is its Rnd column, the "
      f"supervised trunk its Supervised column. {controls_lib.MARK}: a pretext "
      f"cell that does not beat the better of pixels and its random trunk by more "
      f"than {controls_lib.Z:g} standard errors (binomial on the scored split, "
      "docs/protocol.md §9). failed: a fit that never left chance.")
  if any(c.mark for c in cells.values()):
    notes.append("†: no Rnd run for that trunk and width; the random-init baseline "
                 "evaluated inside the linked trained run.")
  for (trunk, task, w), c in sorted(cells.items(), key=lambda kv: kv[1].run.id):
    if c.others:
      rest = ", ".join(f"[{v:.1f}](#{r.anchor})" for r, v in c.others)
      notes.append(f"{row_label(trunk)} / {task_label(task)} k={w} has "
                   f"{len(c.others) + 1} runs; shown: the first seed; others: {rest}.")
  return notes


def grid_tables(runs: Sequence[Run]) -> List[Tuple[str, str, Dict]]:
  """[(source dataset, scored dataset, cells)]: own datasets, then transfer."""
  own = sorted({r.dataset for r in runs})
  tables = []
  for source in own:
    cells = grid_cells(runs, source, source)
    if cells:
      tables.append((source, source, cells))
  for source in own:
    targets = sorted({e["dataset"] for r in table_runs(runs, source)
                      for e in r.evaluations if e["dataset"] != source})
    for target in targets:
      cells = grid_cells(runs, source, target)
      if cells:
        tables.append((source, target, cells))
  return tables


def table2(runs: Sequence[Run], source: str) -> Optional[str]:
  """Each task's best run (by the Table 1 metric) scored by linear_sgd on test."""
  def sgd(run, dataset=lambda d: True):
    return pick(run.evaluations, protocol="linear_sgd", eval_split="test",
                layer="pre_logits", fraction=1.0, trunk=f"trained@{run.steps}",
                dataset=dataset)
  chosen = []
  for task in in_order({r.task for r in runs}, TASK_ORDER):
    candidates = [r for r in table_runs(runs, source) if r.task == task and sgd(r)]
    if candidates:
      best = max(candidates, key=lambda r: (
          table1_value(r) is not None, table1_value(r) or 0.0, -r.id))
      chosen.append((task, best))
  if not chosen:
    return None
  others = sorted({e["dataset"] for _, r in chosen for e in r.evaluations
                   if sgd(r, e["dataset"])} - {source})
  datasets = [source] + others
  lines = ["| Task | Run | " + " | ".join(datasets) + " |",
           "|---|---|" + "---:|" * len(datasets)]
  controls = collections.defaultdict(dict)  # (kind, trunk label): {dataset: entry}
  for task, run in chosen:
    out = []
    for d in datasets:
      e = sgd(run, d)
      out.append(link(e["top1"], run, std=spread(e)) + baselines.mark_for(runs, run, e)
                 if e else MISSING)
      found = baselines.controls_for(runs, run, e) if e else {}
      for kind in controls_lib.CONTROLS:
        if found.get(kind):
          label = "–" if kind == "pixels" else run.label()
          controls[(kind, label)][d] = found[kind]
    lines.append(f"| {task_label(task)} | {run.label()} | " + " | ".join(out) + " |")
  # The controls scored by the same protocol on the same split.
  for (kind, label), by_dataset in sorted(controls.items()):
    lines.append(f"| {kind} (control) | {label} | " + " | ".join(
        controls_lib.entry_text(by_dataset.get(d)) for d in datasets) + " |")
  return "\n".join(lines)


def rho_text(a: Sequence[float], b: Sequence[float], n: int) -> str:
  """Spearman's rho as printed: 2 decimals with its sample size and two-sided
  permutation p-value (label_free.permutation_p), or why there is none."""
  if len(a) < 3:
    return "n/a (n<3)" if len(a) == n else f"n/a (n={len(a)}<3)"
  r = label_free.spearman(a, b)
  if r != r:  # NaN: one side constant
    return "n/a (constant)"
  return f"{r:.2f} (n={len(a)}, p={label_free.permutation_p(a, b):.2g})"


def selection_points(runs: Sequence[Run], dataset: str) -> List[Dict]:
  """[{run, top1, pretext %, rankme, alpha_req}] of the trained runs with a
  Table 1 metric; a failed fit (controls.failed_fit) is no point."""
  points = []
  for run in table_runs(runs, dataset):
    e = table1_entry(run)
    if run.is_rnd or not e or controls_lib.failed_fit(e):
      continue
    acc = run.pretext.get("accuracy")
    points.append(dict(run=run, top1=e["top1"],
                       pretext=None if acc is None else 100 * acc,
                       rankme=rankme_of(run, e.get("eval_split")),
                       alpha_req=rankme_of(run, e.get("eval_split"), "alpha_req")))
  return points


def selection_rows(points: Sequence[Dict]) -> List[Tuple[str, int, str, str, str]]:
  """[(group, n, rho(pretext), rho(RankMe), rho(alpha-ReQ))]: all runs, per
  architecture, per task."""
  groups = [("all trained runs", list(points))]
  for trunk in in_order((p["run"].trunk for p in points), study_cells.TRUNK_NAMES):
    groups.append((f"architecture: {row_label(trunk)}",
                   [p for p in points if p["run"].trunk == trunk]))
  for task in in_order((p["run"].task for p in points), TASK_ORDER):
    groups.append((f"task: {task_label(task)}",
                   [p for p in points if p["run"].task == task]))
  rows = []
  for name, group in groups:
    n = len(group)
    if len({p["run"].task for p in group}) > 1:
      pretext = "n/a (tasks differ)"  # pretext accuracies of two tasks don't compare
    else:
      have = [p for p in group if p["pretext"] is not None]
      pretext = rho_text([p["pretext"] for p in have], [p["top1"] for p in have], n)
    measures = []
    for measure in ("rankme", "alpha_req"):
      have = [p for p in group if p.get(measure) is not None]
      measures.append(rho_text([p[measure] for p in have],
                               [p["top1"] for p in have], n))
    rows.append((name, n, pretext, *measures))
  return rows

