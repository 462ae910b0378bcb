r"""A sweep's report: the paper's tables and figures, rebuilt from its runs.

  python scripts/make_report.py /runs [--out DIR] [--title T] [--no-gallery]
                                       [--copy-runs]

Reads, for every run directory under the root (any depth; one that holds
results.json), only results.json, run.json and operative_config.gin, plus the
run's feature cache for the nearest-neighbour gallery, and writes
<out>/report.md (out defaults to the root) with PNG figures in <out>/figures/;
--copy-runs also copies those three files of every run to <out>/runs/<run>/.
Every number in a table links to its run's appendix entry, which lists the
workdir, command and evaluation entries that reproduce it. A missing cell
prints "–": nothing is filled in or interpolated. Run ids follow the runs'
paths relative to the root, so they are the same on every rebuild.

TensorFlow is imported only by the gallery (to read images).
"""
import argparse
import collections
import dataclasses
import glob
import importlib.util
import json
import os
import re
import shutil
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from evaluation import label_free  # noqa: E402  (numpy only)
from evaluation import results as results_lib  # noqa: E402  (stdlib only)


def _load_study_grid():
  # By file: `scripts` is no package, and this module is also loaded by file.
  spec = importlib.util.spec_from_file_location(
      "study_grid", os.path.join(ROOT, "scripts", "study_grid.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


study_grid = _load_study_grid()

TASK_ORDER = study_grid.TASK_NAMES + ("supervised",)
TASK_LABELS = {**{t: c for t, c, _ in study_grid.TASKS}, "supervised": "Supervised"}
# Underlining compares these only: Rnd and Supervised are baselines.
PRETEXT_TASKS = tuple(t for t in TASK_ORDER if t not in ("random_init", "supervised"))
ROW_LABELS = {name: row for name, row, _, _ in study_grid.TRUNKS}
LAYER_ORDER = ("block1", "block2", "block3", "block4", "pre_logits")
SPLIT_PREFERENCE = ("val", "test")
MLP_PROTOCOLS = ("mlp_sgd", "mlp_sgd_features")
MISSING = "–"
GALLERY_QUERIES, GALLERY_NEIGHBOURS = 6, 5


class NoRuns(Exception):
  """The sweep root holds no results.json."""


# ---------------------------------------------------------------- Reading runs


@dataclasses.dataclass
class Run:
  """One run directory, as its results.json, run.json and gin file describe it."""
  id: int
  rel: str  # the workdir relative to the sweep root
  path: str
  info: Dict  # results.json "run"
  pretext: Dict
  evaluations: List[Dict]  # every entry has a "dataset" (its run's by default)
  label_free: List[Dict]
  meta: Dict  # run.json; {} when absent
  gin: Dict[str, str]  # operative_config.gin bindings, values as text

  @property
  def anchor(self) -> str:
    return f"run-{self.id}"

  @property
  def steps(self) -> int:
    return int(self.info.get("steps") or 0)

  @property
  def is_rnd(self) -> bool:
    # 0 steps from a checkpoint (Fig. 8's runs) evaluates that checkpoint.
    init = self.gin.get("train.init_checkpoint", "None").strip("'\"")
    return self.info.get("total_steps") == 0 and init in ("None", "")

  @property
  def task(self) -> str:
    """The table column: a run trained for 0 steps is Rnd whatever its task."""
    return "random_init" if self.is_rnd else self.info.get("task", "?")

  @property
  def trunk(self) -> str:
    """The table row: study_grid's name, `_minus` without the last ReLU."""
    arch = self.info.get("architecture", "?")
    return arch if self.info.get("last_relu", True) else arch + "_minus"

  @property
  def width(self):
    return self.info.get("width")

  @property
  def dataset(self) -> str:
    return self.info.get("dataset", "?")

  @property
  def representation_size(self) -> Optional[int]:
    try:
      return int(self.gin.get("get_model.representation_size", "None"))
    except ValueError:
      return None  # None: no bottleneck

  def label(self) -> str:
    return f"{row_label(self.trunk)} k={self.width}"


def row_label(trunk: str) -> str:
  if trunk in ROW_LABELS:
    return ROW_LABELS[trunk]
  return trunk[:-len("_minus")] + " (-)" if trunk.endswith("_minus") else trunk


def task_label(task: str) -> str:
  return TASK_LABELS.get(task, task)


def parse_gin(text: str) -> Dict[str, str]:
  """{'scope/fn.param': value text} of a gin file; continued lines are joined."""
  bindings, name = {}, None
  for line in text.splitlines():
    if not line.strip() or line.lstrip().startswith("#"):
      continue
    match = re.match(r"([\w./]+)\s*=\s*(.*)$", line)
    if match and not line[0].isspace():
      name = match.group(1)
      bindings[name] = match.group(2).rstrip("\\ ").strip()
    elif name and (line[0].isspace() or line[0] in "]})"):
      bindings[name] = (bindings[name] + " " + line.strip().rstrip("\\ ")).strip()
    else:
      name = None  # include / import lines
  return bindings


def find_run_dirs(root: str) -> List[str]:
  """Paths relative to `root` of every directory holding results.json, sorted."""
  found = []
  for path, dirs, files in os.walk(root):
    # A run's bulky subdirectories never hold another run.
    dirs[:] = [d for d in dirs if d not in ("checkpoints", "features", "summaries")]
    if "results.json" in files:
      found.append(os.path.relpath(path, root))
  return sorted(found)


def _read_json(path: str) -> Dict:
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def load_runs(root: str) -> Tuple[List[Run], List[str]]:
  """(runs with ids 1..N in path order, problems: unreadable files)."""
  runs, problems = [], []
  for rel in find_run_dirs(root):
    path = os.path.join(root, rel)
    try:
      results = _read_json(os.path.join(path, "results.json"))
      meta = _read_json(os.path.join(path, "run.json"))
    except ValueError as e:
      problems.append(f"`{rel}`: unreadable JSON ({e}); skipped")
      continue
    gin_path = os.path.join(path, "operative_config.gin")
    gin_text = open(gin_path).read() if os.path.exists(gin_path) else ""
    info = results.get("run", {})
    own = info.get("dataset")
    runs.append(Run(
        id=len(runs) + 1, rel=rel, path=path, info=info,
        pretext=results.get("pretext") or {},
        # Entries that differ only in their seed become one: mean, std, seeds.
        evaluations=results_lib.over_seeds(
            [{"dataset": own, **e} for e in results.get("evaluations", [])]),
        label_free=[{"dataset": own, **e} for e in results.get("label_free", [])],
        meta=meta, gin=parse_gin(gin_text)))
  return runs, problems


# ------------------------------------------------------------- Picking entries


def _matches(want, value) -> bool:
  if callable(want):
    return want(value)
  if isinstance(want, tuple):
    return value in want
  return value == want


def pick(entries: Sequence[Dict], prefer_splits: Sequence[str] = (),
         split_key: str = "eval_split", **match) -> Optional[Dict]:
  """The entry with every `match` value (a value, tuple of values or predicate).

  Among several, the split named first in prefer_splits, then val, then test.
  """
  def value(e, k):
    return float(e.get("fraction", 1.0)) if k == "fraction" else e.get(k)
  found = [e for e in entries if all(_matches(v, value(e, k)) for k, v in match.items())]
  order = (*prefer_splits, *SPLIT_PREFERENCE)

  def rank(e):
    split = e.get(split_key)
    return (order.index(split) if split in order else len(order), str(split))
  return min(found, key=rank, default=None)


def table1_entry(run: Run, dataset: Optional[str] = None,
                 protocols: Sequence[str] = ("linear_lbfgs",)) -> Optional[Dict]:
  """The Table 1 metric's entry: linear, pre_logits, all labels, the run's trunk."""
  for protocol in protocols:
    e = pick(run.evaluations, protocol=protocol, layer="pre_logits", fraction=1.0,
             trunk=f"trained@{run.steps}", dataset=dataset or run.dataset)
    if e:
      return e
  return None


def table1_value(run: Run) -> Optional[float]:
  e = table1_entry(run)
  return e["top1"] if e else None


def rankme_of(run: Run, split: Optional[str]) -> Optional[float]:
  """RankMe of the trained trunk's pre_logits on the held-out split, if recorded."""
  e = pick(run.label_free, prefer_splits=(split,) if split else (), split_key="split",
           trunk=f"trained@{run.steps}", layer="pre_logits", dataset=run.dataset)
  return e.get("rankme") if e else None


def _table_runs(runs: Sequence[Run], dataset: str) -> List[Run]:
  # Bottleneck models (Fig. 6) are other models than the Table 1 cell's.
  return [r for r in runs if r.dataset == dataset and r.representation_size is None]


# ---------------------------------------------------------------------- Tables


@dataclasses.dataclass
class Cell:
  value: float
  run: Run
  entry: Dict
  mark: str = ""  # "†": a random_init entry of a trained run
  others: List[Tuple[Run, float]] = dataclasses.field(default_factory=list)


def grid_cells(runs: Sequence[Run], source: str, target: str
               ) -> Dict[Tuple[str, str, int], Cell]:
  """{(trunk, task, width): Cell} of runs trained on `source`, scored on `target`."""
  protocols = ("linear_lbfgs",) if source == target else ("linear_lbfgs", "linear_sgd")
  found = collections.defaultdict(list)
  for run in _table_runs(runs, source):
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
  rnd_runs = {(r.trunk, r.width) for r in _table_runs(runs, source) if r.is_rnd}
  for run in _table_runs(runs, source):
    key = (run.trunk, "random_init", run.width)
    if run.is_rnd or (run.trunk, run.width) in rnd_runs or key in cells:
      continue  # a dedicated Rnd run (or an earlier run's baseline) wins
    for protocol in protocols:
      e = pick(run.evaluations, protocol=protocol, layer="pre_logits", fraction=1.0,
               dataset=target, trunk=lambda t: str(t).startswith("random_init"))
      if e:
        cells[key] = Cell(e["top1"], run, e, mark="†")
        break
  return cells


def _in_order(names, order: Sequence[str]) -> List[str]:
  """The distinct `names`, those in `order` first and in its order, then sorted."""
  names = set(names)
  return [n for n in order if n in names] + sorted(names - set(order))


def _rows_and_columns(cells) -> Tuple[List[str], List[Tuple[str, int]]]:
  rows = _in_order((k[0] for k in cells), study_grid.TRUNK_NAMES)
  tasks = _in_order((k[1] for k in cells), TASK_ORDER)
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
  rows, columns = _rows_and_columns(cells)
  shown = {k: round(c.value, 1) for k, c in cells.items()}
  bold = set()
  for task, w in columns:
    col = {k: v for k, v in shown.items() if k[1:] == (task, w)}
    if len(col) > 1:
      bold |= {k for k, v in col.items() if v == max(col.values())}
  underline = set()
  for trunk in rows:
    best = {}  # pretext task -> its best width's value in this row
    for (t, task, w), v in shown.items():
      if t == trunk and task in PRETEXT_TASKS:
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
      out.append(MISSING if c is None else
                 link(c.value, c.run, (trunk, task, w) in bold,
                      (trunk, task, w) in underline, spread(c.entry)) + c.mark)
    lines.append(f"| {row_label(trunk)} | " + " | ".join(out) + " |")
  return "\n".join(lines)


def grid_notes(cells) -> List[str]:
  used = sorted({(c.entry["protocol"], c.entry.get("eval_split"))
                 for c in cells.values()})
  notes = ["Top-1 % of " + ", ".join(f"`{p}` on `{s}`" for p, s in used) +
           " (pre_logits, all labels, the run's final trunk). **Bold**: best trunk "
           "of the column; <u>underlined</u>: the row's best pretext task (its best "
           f"width). {MISSING}: no run."]
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
    targets = sorted({e["dataset"] for r in _table_runs(runs, source)
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
  for task in _in_order({r.task for r in runs}, TASK_ORDER):
    candidates = [r for r in _table_runs(runs, source) if r.task == task and sgd(r)]
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
  for task, run in chosen:
    out = []
    for d in datasets:
      e = sgd(run, d)
      out.append(link(e["top1"], run, std=spread(e)) if e else MISSING)
    lines.append(f"| {task_label(task)} | {run.label()} | " + " | ".join(out) + " |")
  return "\n".join(lines)


# --------------------------------------------------- Label-free model selection


def rho_text(a: Sequence[float], b: Sequence[float], n: int) -> str:
  """Spearman's rho as printed: 2 decimals, or why there is none."""
  if len(a) < 3:
    return "n/a (n<3)" if len(a) == n else f"n/a (n={len(a)}<3)"
  r = label_free.spearman(a, b)
  if r != r:  # NaN: one side constant
    return "n/a (constant)"
  return f"{r:.2f}" + ("" if len(a) == n else f" (n={len(a)})")


def selection_points(runs: Sequence[Run], dataset: str) -> List[Dict]:
  """[{run, top1, pretext %, rankme}] of the trained runs with a Table 1 metric."""
  points = []
  for run in _table_runs(runs, dataset):
    e = table1_entry(run)
    if run.is_rnd or not e:
      continue
    acc = run.pretext.get("accuracy")
    points.append(dict(run=run, top1=e["top1"],
                       pretext=None if acc is None else 100 * acc,
                       rankme=rankme_of(run, e.get("eval_split"))))
  return points


def selection_rows(points: Sequence[Dict]) -> List[Tuple[str, int, str, str]]:
  """[(group, n, rho(pretext), rho(RankMe))]: all runs, per architecture, per task."""
  groups = [("all trained runs", list(points))]
  for trunk in _in_order((p["run"].trunk for p in points), study_grid.TRUNK_NAMES):
    groups.append((f"architecture: {row_label(trunk)}",
                   [p for p in points if p["run"].trunk == trunk]))
  for task in _in_order((p["run"].task for p in points), TASK_ORDER):
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
    have = [p for p in group if p["rankme"] is not None]
    rankme = rho_text([p["rankme"] for p in have], [p["top1"] for p in have], n)
    rows.append((name, n, pretext, rankme))
  return rows


# --------------------------------------------------------------------- Figures


def _colour(trunk: str):
  names = list(study_grid.TRUNK_NAMES)
  index = names.index(trunk) if trunk in names else len(names) + sum(map(ord, trunk)) % 4
  return plt.get_cmap("tab10")(index % 10)


def _marker(task: str) -> str:
  markers = "os^DvPX*h"
  order = list(TASK_ORDER)
  return markers[order.index(task) % len(markers)] if task in order else "X"


def _panels(n: int, size=(4.5, 3.6)):
  fig, axes = plt.subplots(1, n, figsize=(size[0] * n, size[1]), squeeze=False)
  return fig, list(axes[0])


def _save(fig, fig_dir: str, name: str) -> str:
  os.makedirs(fig_dir, exist_ok=True)
  fig.tight_layout()
  fig.savefig(os.path.join(fig_dir, name), dpi=100)
  plt.close(fig)
  return name


def fig2_best_width(tables, fig_dir: str) -> Optional[str]:
  """Grouped bars: x = task, one bar per trunk (its best width); panel per table."""
  if not tables:
    return None
  fig, axes = _panels(len(tables), (5.5, 3.8))
  for ax, (source, target, cells) in zip(axes, tables):
    rows, columns = _rows_and_columns(cells)
    tasks = list(dict.fromkeys(t for t, _ in columns))
    width = 0.8 / len(rows)
    for i, trunk in enumerate(rows):
      best = [max([c.value for k, c in cells.items() if k[:2] == (trunk, t)],
                  default=np.nan) for t in tasks]
      ax.bar(np.arange(len(tasks)) + (i - (len(rows) - 1) / 2) * width, best, width,
             label=row_label(trunk), color=_colour(trunk))
    ax.set_xticks(range(len(tasks)), [task_label(t) for t in tasks], rotation=20)
    ax.set_ylabel("linear top-1 %")
    ax.set_title(target if source == target else f"{source} → {target}")
    ax.legend(fontsize=7)
  return _save(fig, fig_dir, "fig2_best_width.png")


def mlp_pairs(runs: Sequence[Run]) -> List[Tuple[Run, float, float]]:
  """[(run, linear top-1, MLP top-1)] on the same trunk, layer and (if any) split."""
  pairs = []
  for run in runs:
    lin = table1_entry(run)
    mlp = lin and pick(run.evaluations, prefer_splits=(lin.get("eval_split"),),
                       protocol=MLP_PROTOCOLS, layer="pre_logits", fraction=1.0,
                       trunk=lin["trunk"], dataset=run.dataset)
    if mlp:
      pairs.append((run, lin["top1"], mlp["top1"]))
  return pairs


def fig3_linear_vs_mlp(pairs, fig_dir: str) -> Optional[str]:
  if not pairs:
    return None
  fig, (ax,) = _panels(1, (5.5, 4.5))
  for run, x, y in pairs:
    ax.scatter(x, y, color=_colour(run.trunk), marker=_marker(run.task), s=40)
  values = [v for _, x, y in pairs for v in (x, y)]
  ax.plot([min(values), max(values)], [min(values), max(values)], "k--", lw=0.8)
  for trunk in _in_order((r.trunk for r, _, _ in pairs), study_grid.TRUNK_NAMES):
    ax.scatter([], [], color=_colour(trunk), label=row_label(trunk))
  for task in _in_order((r.task for r, _, _ in pairs), TASK_ORDER):
    ax.scatter([], [], color="grey", marker=_marker(task), label=task_label(task))
  ax.set_xlabel("linear (L-BFGS) top-1 %")
  ax.set_ylabel("MLP top-1 %")
  ax.legend(fontsize=7)
  return _save(fig, fig_dir, "fig3_linear_vs_mlp.png")


def ranking_lines(pairs) -> List[str]:
  """Whether linear and MLP order the trunks of each task alike."""
  lines = []
  for task in _in_order((r.task for r, _, _ in pairs), TASK_ORDER):
    group = [p for p in pairs if p[0].task == task]
    if len(group) < 2:
      continue
    order = lambda i: [p[0].label() for p in  # noqa: E731  (i: 1 linear, 2 MLP)
                       sorted(group, key=lambda p: (-p[i], p[0].id))]
    same = order(1) == order(2)
    lines.append(f"- {task_label(task)}: linear ranks {' > '.join(order(1))}; MLP "
                 + ("agrees." if same else f"differs: {' > '.join(order(2))}."))
  return lines


def fig4_pretext(points, fig_dir: str) -> Optional[str]:
  """Pretext accuracy vs downstream top-1; panel per task, size = width."""
  points = [p for p in points if p["pretext"] is not None]
  if not points:
    return None
  tasks = _in_order((p["run"].task for p in points), TASK_ORDER)
  widest = max(p["run"].width or 1 for p in points)
  fig, axes = _panels(len(tasks))
  for ax, task in zip(axes, tasks):
    for trunk in _in_order((p["run"].trunk for p in points), study_grid.TRUNK_NAMES):
      group = [p for p in points if p["run"].task == task and p["run"].trunk == trunk]
      if group:
        ax.scatter([p["pretext"] for p in group], [p["top1"] for p in group],
                   s=[20 + 160 * (p["run"].width or 1) / widest for p in group],
                   color=_colour(trunk), label=row_label(trunk), alpha=0.8)
    ax.set_title(task_label(task))
    ax.set_xlabel("pretext accuracy %")
    ax.set_ylabel("linear top-1 %")
    ax.legend(fontsize=7)
  return _save(fig, fig_dir, "fig4_pretext_vs_downstream.png")


def layer_series(runs: Sequence[Run]) -> List[Tuple[Run, float, Dict[str, float]]]:
  """[(run, fraction, {layer: top-1})] of runs scored on >= 3 layers at one fraction."""
  series = []
  for run in runs:
    by_fraction = collections.defaultdict(dict)
    for e in run.evaluations:
      if (e["protocol"] == "linear_lbfgs" and e["trunk"] == f"trained@{run.steps}"
          and e["dataset"] == run.dataset):
        f = float(e.get("fraction", 1.0))
        layer = pick(run.evaluations, protocol="linear_lbfgs", layer=e["layer"],
                     fraction=f, trunk=e["trunk"], dataset=run.dataset)
        by_fraction[f][e["layer"]] = layer["top1"]
    usable = {f: v for f, v in by_fraction.items() if len(v) >= 3}
    if usable:  # all labels if possible, else the fraction with most layers
      f = max(usable, key=lambda f: (f == 1.0, len(usable[f]), f))
      series.append((run, f, usable[f]))
  return series


def fig5_layers(series, fig_dir: str) -> Optional[str]:
  if not series:
    return None
  tasks = _in_order((r.task for r, _, _ in series), TASK_ORDER)
  fig, axes = _panels(len(tasks))
  for ax, task in zip(axes, tasks):
    panel = [s for s in series if s[0].task == task]
    layers = _in_order((l for _, _, v in panel for l in v), LAYER_ORDER)
    for run, _, values in panel:
      x = [i for i, l in enumerate(layers) if l in values]
      ax.plot(x, [values[layers[i]] for i in x], marker="o", label=run.label(),
              color=_colour(run.trunk))
    ax.set_xticks(range(len(layers)), layers, rotation=30)
    ax.set_title(task_label(task))
    ax.set_ylabel("linear top-1 %")
    ax.legend(fontsize=7)
  return _save(fig, fig_dir, "fig5_layers.png")


def fig6_bottleneck(runs: Sequence[Run], fig_dir: str) -> Optional[str]:
  """Heatmap per (task, trunk): rows = width, columns = representation size."""
  grid = collections.defaultdict(dict)
  for run in runs:
    value = table1_value(run)
    if run.representation_size is not None and value is not None:
      key = (run.dataset, run.task, run.trunk)
      grid[key][(run.width, run.representation_size)] = value
  if not grid:
    return None
  fig, axes = _panels(len(grid), (5.0, 4.0))
  for ax, ((dataset, task, trunk), values) in zip(axes, sorted(grid.items())):
    widths = sorted({w for w, _ in values})
    sizes = sorted({s for _, s in values})
    image = np.array([[values.get((w, s), np.nan) for s in sizes] for w in widths])
    ax.imshow(image, cmap="viridis", aspect="auto")
    middle = np.nanmean(image)  # dark text on viridis' bright (high) end
    for i, w in enumerate(widths):
      for j, s in enumerate(sizes):
        text = MISSING if np.isnan(image[i, j]) else f"{image[i, j]:.1f}"
        ax.text(j, i, text, ha="center", va="center", fontsize=8,
                color="k" if image[i, j] > middle else "w")
    ax.set_xticks(range(len(sizes)), sizes)
    ax.set_yticks(range(len(widths)), [f"k={w}" for w in widths])
    ax.set_xlabel("representation size")
    ax.set_title(f"{task_label(task)}, {row_label(trunk)} ({dataset})")
  return _save(fig, fig_dir, "fig6_width_x_representation.png")


def low_data_series(runs: Sequence[Run]) -> Dict[Tuple[str, str], Dict[float, Dict]]:
  """{(task, trunk): {fraction: {width: (top-1, run)}}} for trunks with fraction < 1."""
  series = collections.defaultdict(lambda: collections.defaultdict(dict))
  for run in runs:
    for e in run.evaluations:
      if (e["protocol"] == "linear_lbfgs" and e["layer"] == "pre_logits"
          and e["trunk"] == f"trained@{run.steps}" and e["dataset"] == run.dataset):
        f = float(e.get("fraction", 1.0))
        chosen = pick(run.evaluations, protocol="linear_lbfgs", layer="pre_logits",
                      fraction=f, trunk=e["trunk"], dataset=run.dataset)
        series[(run.task, run.trunk)][f][run.width] = (chosen["top1"], run)
  return {k: v for k, v in series.items() if any(f < 1 for f in v)}


def fig7_low_data(series, fig_dir: str) -> Optional[str]:
  if not series:
    return None
  tasks = _in_order((task for task, _ in series), TASK_ORDER)
  fig, axes = _panels(len(tasks))
  styles = ["-", "--", ":", "-."]
  for ax, task in zip(axes, tasks):
    for (t, trunk), by_fraction in series.items():
      if t != task:
        continue
      for i, f in enumerate(sorted(by_fraction, reverse=True)):
        widths = sorted(by_fraction[f])
        ax.plot(widths, [by_fraction[f][w][0] for w in widths], styles[i % 4],
                marker="o", color=_colour(trunk), label=f"{row_label(trunk)}, {f:.0%}")
    ax.set_xticks(sorted({w for (t, _), v in series.items() if t == task
                          for by_width in v.values() for w in by_width}))
    ax.set_title(task_label(task))
    ax.set_xlabel("width k")
    ax.set_ylabel("linear top-1 %")
    ax.legend(fontsize=7)
  return _save(fig, fig_dir, "fig7_low_data.png")


def fig8_curves(runs: Sequence[Run], fig_dir: str) -> Optional[str]:
  """Top-1 vs epoch of the linear SGD protocols' curves; panel per protocol.

  Fig. 8 is about the linear protocol's schedule; the MLP's curves (Fig. 3's
  runs) would crowd it, so they are left out.
  """
  curves = [(run, e) for run in runs for e in run.evaluations
            if e.get("curve") and e["protocol"].startswith("linear_sgd")]
  if not curves:
    return None
  protocols = sorted({e["protocol"] for _, e in curves})
  fig, axes = _panels(len(protocols), (5.5, 4.0))
  for ax, protocol in zip(axes, protocols):
    for run, e in curves:
      if e["protocol"] != protocol:
        continue
      decay = run.gin.get("sgd_eval.first_decay_epochs")
      label = f"{run.anchor}: " + (f"first decay {decay} ep" if decay else run.label())
      ax.plot([c["epoch"] for c in e["curve"]], [c["top1"] for c in e["curve"]],
              marker=".", label=f"{label} ({e['dataset']} {e['eval_split']})")
    ax.set_title(protocol)
    ax.set_xlabel("epoch")
    ax.set_ylabel("top-1 %")
    ax.legend(fontsize=7)
  return _save(fig, fig_dir, "fig8_sgd_curves.png")


# -------------------------------------------------- Nearest-neighbour gallery


def nearest(query: np.ndarray, reference: np.ndarray, k: int,
            chunk: int = 8192) -> np.ndarray:
  """[Q, k] int64 indices of each query's k most cosine-similar reference rows.

  Args:
    query: [Q, D] features.
    reference: [N, D] features (may be memory-mapped: read `chunk` rows at a time).
    k: neighbours per query; ties go to the lower index.
  """
  def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  q = unit(query)
  best_sim = np.full((len(q), 0), -np.inf)
  best_idx = np.zeros((len(q), 0), np.int64)
  for start in range(0, len(reference), chunk):
    sim = q @ unit(reference[start:start + chunk]).T
    # Earlier chunks come first, so a stable sort keeps ties at the lower index.
    sims = np.concatenate([best_sim, sim], axis=1)
    idx = np.concatenate([best_idx, np.broadcast_to(
        np.arange(start, start + sim.shape[1]), sim.shape)], axis=1)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    best_sim = np.take_along_axis(sims, order, axis=1)
    best_idx = np.take_along_axis(idx, order, axis=1)
  return best_idx


def query_indices(n: int, count: int = GALLERY_QUERIES) -> np.ndarray:
  """`count` evenly spaced indices in [0, n), the same on every build."""
  return np.unique(np.linspace(0, n - 1, min(count, n)).astype(np.int64))


def find_cached(run: Run, split: str, layer: str = "pre_logits",
                pooling: Optional[str] = None) -> Optional[str]:
  """The feature cache entry of the run's final trunk for (split, layer), or None."""
  root = run.gin.get("feature_cache.root", "None").strip("'\"")
  root = os.path.join(run.path, "features") if root == "None" else root
  found = []
  for entry in glob.glob(os.path.join(glob.escape(root), f"{split}-{layer}-*")):
    try:
      key = _read_json(os.path.join(entry, "key.json"))
    except ValueError:
      continue
    trunk = key.get("trunk", {})
    if (key.get("split") == split and key.get("layer") == layer
        and key.get("dataset") == run.dataset and trunk.get("kind") == "checkpoint"
        and trunk.get("step") == run.steps
        and (pooling is None or key.get("pooling") == pooling)
        and os.path.exists(os.path.join(entry, "features.npy"))):
      found.append(entry)
  # Several (a resumed run's rewritten checkpoint): the newest.
  return max(found, key=lambda e: os.path.getmtime(os.path.join(e, "key.json")),
             default=None)


def load_images(dataset: str, split: str, indices: Sequence[int],
                data_dir: Optional[str] = None, manual_dir: Optional[str] = None
                ) -> Tuple[Dict[int, np.ndarray], Optional[List[str]]]:
  """({index: uint8 [H, W, C] image}, class names or None), reading the split once."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from datasets import registry  # pylint: disable=g-import-not-at-top
  ds = registry.get_dataset(dataset, data_dir=data_dir, manual_dir=manual_dir)
  ds.prepare()
  wanted, images = {int(i) for i in indices}, {}
  # Unshuffled, so example i is feature row i.
  for i, example in enumerate(ds.as_dataset(split)):
    if i in wanted:
      image = example["image"]
      if image.dtype == tf.string:  # encoded (ImageNet, Places)
        image = tf.io.decode_image(image, channels=3, expand_animations=False)
      images[i] = image.numpy()
      if len(images) == len(wanted):
        break
  try:
    names = list(ds.builder.info.features["label"].names)
  except Exception:  # pylint: disable=broad-except  (no tfds builder: numbers)
    names = None
  return images, names


def draw_gallery(path: str, rows: Sequence[Sequence[Tuple[np.ndarray, str]]],
                 title: str) -> None:
  """A grid: each row the query image then its neighbours, titled by class."""
  fig, axes = plt.subplots(len(rows), len(rows[0]), squeeze=False,
                           figsize=(1.6 * len(rows[0]), 1.8 * len(rows)))
  for r, row in enumerate(rows):
    for c, (image, label) in enumerate(row):
      ax = axes[r][c]
      ax.imshow(image.squeeze(), cmap="gray" if image.ndim == 2 or image.shape[-1] == 1
                else None)
      ax.set_title(("query: " if c == 0 else "") + label, fontsize=7)
      ax.axis("off")
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _flag(command: str, name: str) -> Optional[str]:
  match = re.search(rf"--{name}[= ](\S+)", command or "")
  return match.group(1) if match else None


def gallery(runs: Sequence[Run], fig_dir: str, out: str) -> List[str]:
  """Report lines: a nearest-neighbour grid for each task's best run, or why not."""
  lines = []
  for dataset in sorted({r.dataset for r in runs}):
    best = {}
    for run in _table_runs(runs, dataset):
      value = table1_value(run)
      if value is not None and (run.task not in best or value > best[run.task][0]):
        best[run.task] = (value, run)
    for task in _in_order(best, TASK_ORDER):
      run = best[task][1]
      entry = table1_entry(run)
      split = entry.get("eval_split", "val")
      query_dir = find_cached(run, split, pooling=entry.get("pooling"))
      ref_dir = find_cached(run, "train", pooling=entry.get("pooling"))
      what = f"{task_label(task)} ([{run.anchor}](#{run.anchor}), {run.label()})"
      if not (query_dir and ref_dir):
        lines.append(f"- {what}: no cached pre_logits features of step {run.steps} for "
                     f"`{split}` and `train` under `{run.rel}`; no gallery.")
        continue
      query = np.load(os.path.join(query_dir, "features.npy"), mmap_mode="r")
      reference = np.load(os.path.join(ref_dir, "features.npy"), mmap_mode="r")
      q_labels = np.load(os.path.join(query_dir, "labels.npy"))
      r_labels = np.load(os.path.join(ref_dir, "labels.npy"))
      qi = query_indices(len(query))
      nn = nearest(query[qi], reference, GALLERY_NEIGHBOURS)
      command = run.meta.get("command", "")
      dirs = (_flag(command, "data_dir"), _flag(command, "manual_dir"))
      try:
        q_images, names = load_images(dataset, split, qi, *dirs)
        r_images, _ = load_images(dataset, "train", nn.ravel(), *dirs)
      except Exception as e:  # pylint: disable=broad-except  (the report goes on)
        lines.append(f"- {what}: could not load {dataset} images "
                     f"({type(e).__name__}: {e}); no gallery.")
        continue
      name = lambda y: names[y] if names and 0 <= y < len(names) else str(y)  # noqa: E731
      grid = [[(q_images[q], name(int(q_labels[q])))] +
              [(r_images[j], name(int(r_labels[j]))) for j in nn[i]]
              for i, q in enumerate(qi)]
      # Dataset names may hold a path ('image_folder:/data/x'): one safe name.
      safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset).strip("_")
      filename = f"gallery_{safe}_{task}.png"
      os.makedirs(fig_dir, exist_ok=True)
      draw_gallery(os.path.join(fig_dir, filename), grid,
                   f"{task_label(task)}: {run.label()} ({dataset})")
      rel = os.path.relpath(os.path.join(fig_dir, filename), out)
      lines.append(f"- {what}:\n\n  ![gallery {task}]({rel})\n\n  *{len(qi)} `{split}` "
                   f"queries (evenly spaced indices) and their {GALLERY_NEIGHBOURS} "
                   f"nearest `train` images by cosine similarity of pre_logits.*")
  return lines


# ---------------------------------------------------------------------- Report


def _seed_note(e: Dict) -> str:
  """' ± 3.61 (seeds 0, 1, 2)' for an entry merged over seeds, else ''."""
  if spread(e) is None:
    return ""
  return f" ± {e['top1_std']:.2f} (seeds {', '.join(str(s) for s in e['seeds'])})"


def appendix(runs: Sequence[Run], files_dir: Optional[str] = None) -> List[str]:
  """One anchored entry per run; with `files_dir` (relative to the report), links
  to the copies of its results.json, run.json and operative_config.gin there."""
  lines = ["## Appendix: runs", ""]
  for run in runs:
    info, meta = run.info, run.meta
    lines += [f'<a id="{run.anchor}"></a>', f"### {run.anchor}: `{run.rel}`", "",
              f"- task: {run.task} (column {task_label(run.task)}); trunk: "
              f"{row_label(run.trunk)} (`{info.get('architecture')}`, last_relu "
              f"{info.get('last_relu')}); width k={run.width}; dataset {run.dataset}",
              f"- steps {info.get('steps')} of {info.get('total_steps')}; seed "
              f"{info.get('seed', meta.get('seed'))}; git commit "
              f"`{meta.get('git_commit', 'unknown')}`; status {meta.get('status', '?')}"]
    if run.representation_size is not None:
      lines.append(f"- representation size {run.representation_size}")
    if run.pretext.get("accuracy") is not None:
      lines.append(f"- pretext accuracy ({run.pretext.get('split')}, step "
                   f"{run.pretext.get('step')}): {100 * run.pretext['accuracy']:.2f}%")
    for e in run.label_free:
      lines.append(f"- RankMe [{e.get('trunk')}] {e.get('layer')} on {e.get('split')}: "
                   f"{e.get('rankme')}")
    # Every invocation that wrote to the workdir (training, then the figures'
    # evaluations), each of which made some of the entries below.
    commands = [i.get("command") for i in meta.get("invocations", [])
                if i.get("command")] or [meta.get("command", "unknown (no run.json)")]
    commands = list(dict.fromkeys(commands))
    lines += [f"- command{'s' if len(commands) > 1 else ''}: "
              + "; then ".join(f"`{c}`" for c in commands)]
    if files_dir:
      lines.append("- files: " + ", ".join(
          f"[{name}]({files_dir}/{run.rel}/{name})" for name in RUN_FILES
          if os.path.exists(os.path.join(run.path, name))))
    lines.append("")
    if run.evaluations:
      lines += ["| protocol | dataset | trunk | layer | fraction | train / selected on "
                "/ eval split | top-1 | top-5 |", "|---|---|---|---|---:|---|---:|---:|"]
      for e in run.evaluations:
        top5 = e.get("top5")
        lines.append(
            f"| {e.get('protocol')} | {e['dataset']} | `{e.get('trunk')}` | "
            f"{e.get('layer')} | {float(e.get('fraction', 1.0)):g} | "
            f"{e.get('train_split')} / {e.get('selected_on')} / {e.get('eval_split')} | "
            f"{e['top1']:.2f}{_seed_note(e)} | "
            f"{'' if top5 is None else f'{top5:.2f}'} |")
    else:
      lines.append("No evaluation entries yet.")
    lines.append("")
  return lines


def tables_section(runs: Sequence[Run]) -> Tuple[List[str], List, int]:
  """(report lines, the Table 1 layouts [(source, target, cells)], tables written)."""
  lines, count = [], 0
  tables = grid_tables(runs)
  for source, target, cells in tables:
    heading = (f"Table 1 layout: {source}" if source == target else
               f"{'Places' if target.startswith('places') else 'Transfer'} table: "
               f"{target} (trunks trained on {source})")
    lines += [f"## {heading}", "", format_grid(cells), ""]
    lines += [f"{n}  " for n in grid_notes(cells)] + [""]  # "  ": a line break
    count += 1
  for source in sorted({r.dataset for r in runs}):
    text = table2(runs, source)
    if text:
      lines += [f"## Table 2 layout: {source}", "", text, "",
                "Top-1 % of `linear_sgd` on `test` (pre_logits, all labels) of each "
                "task's best run by the Table 1 metric.", ""]
      count += 1
  return lines, tables, count


def selection_section(points: Sequence[Dict], dataset: str) -> List[str]:
  """The label-free model selection tables of one dataset's trained runs."""
  if not points:
    return []
  lines = [f"### Label-free model selection ({dataset})", "",
           "Spearman ρ with the Table 1 metric across trained runs. Pretext accuracies "
           "of different tasks do not compare, so groups that mix tasks have none.", "",
           "| group | n | ρ(pretext acc) | ρ(RankMe) |", "|---|---:|---:|---:|"]
  lines += [f"| {g} | {n} | {a} | {b} |" for g, n, a, b in selection_rows(points)]
  lines += ["", "| run | task | trunk | pretext acc % | RankMe | top-1 |",
            "|---|---|---|---:|---:|---:|"]
  number = lambda v: MISSING if v is None else f"{v:.1f}"  # noqa: E731
  for p in points:
    run = p["run"]
    lines.append(f"| [{run.anchor}](#{run.anchor}) | {task_label(run.task)} | "
                 f"{run.label()} | {number(p['pretext'])} | {number(p['rankme'])} | "
                 f"{link(p['top1'], run)} |")
  return lines + [""]


def figures_section(runs: Sequence[Run], tables, fig_dir: str, out: str
                    ) -> Tuple[List[str], List[str]]:
  """(report lines, file names of the figures drawn)."""
  lines, names = ["## Figures", ""], []

  def figure(name, caption, absent):
    number = caption.split(":")[0]
    if name:
      rel = os.path.relpath(os.path.join(fig_dir, name), out)
      lines.extend([f"![{number}]({rel})", "", f"*{caption}*", ""])
      names.append(name)
    else:
      lines.extend([f"*{number} not drawn: {absent}*", ""])

  figure(fig2_best_width(tables, fig_dir), "Fig. 2: linear top-1 % of each trunk's "
         "best width per task, one panel per table.", "no Table 1 cells.")
  # Figures 3 to 7 compare the runs of one dataset: the one with most runs.
  own = sorted({r.dataset for r in runs})
  main = max(own, key=lambda d: (sum(r.dataset == d for r in runs), -own.index(d)))
  main_runs = _table_runs(runs, main)
  if len(own) > 1:
    lines += [f"Figures 3 to 7 show the runs trained on {main}.", ""]
  pairs = mlp_pairs(main_runs)
  figure(fig3_linear_vs_mlp(pairs, fig_dir), "Fig. 3: MLP top-1 % (y) against linear "
         "top-1 % (x) of the same trunk, pre_logits, all labels; colour = trunk, "
         "marker = task, dashed: y = x.", "needs runs with an `mlp_sgd` or "
         "`mlp_sgd_features` entry next to the Table 1 entry (grid `fig3`, or the "
         "miniature's k = 2 cells).")
  if pairs:
    lines += [f"Spearman ρ(linear, MLP) over {len(pairs)} runs: " + rho_text(
        [p[1] for p in pairs], [p[2] for p in pairs], len(pairs)), ""]
    lines += ranking_lines(pairs) + [""]
  points = selection_points(runs, main)
  figure(fig4_pretext(points, fig_dir), "Fig. 4: pretext accuracy % on the held-out "
         "split (x) against linear top-1 % (y), one panel per task; colour = trunk, "
         "marker size = width.", "needs trained runs with a pretext accuracy and a "
         "Table 1 entry.")
  for dataset in [main] + [d for d in own if d != main]:
    lines += selection_section(selection_points(runs, dataset), dataset)
  series = layer_series(main_runs)
  fractions = sorted({f for _, f, _ in series})
  on = ("" if fractions in ([], [1.0]) else
        " on " + ", ".join(f"{f:.0%}" for f in fractions) + " of the labels")
  figure(fig5_layers(series, fig_dir), f"Fig. 5: linear top-1 % by end point{on}, one "
         "line per trunk and width, one panel per task.", "needs runs with "
         "`linear_lbfgs` entries for 3 or more layers (grid `fig5`).")
  figure(fig6_bottleneck(runs, fig_dir), "Fig. 6: linear top-1 % by width (rows) and "
         "representation size (columns).", "needs runs whose operative_config.gin sets "
         "`get_model.representation_size` (grid `fig6`).")
  figure(fig7_low_data(low_data_series(main_runs), fig_dir), "Fig. 7: linear top-1 % "
         "by width with all and with a fraction of the labels, one panel per task.",
         "needs runs with `linear_lbfgs` entries of fraction < 1 (grid `fig7`).")
  figure(fig8_curves(runs, fig_dir), "Fig. 8: top-1 % against epoch of the linear "
         "SGD protocol's curves, one line per run.", "needs linear SGD entries with a "
         "`curve` (grid `fig8`).")
  return lines, names


RUN_FILES = ("results.json", "run.json", "operative_config.gin")


def copy_run_files(runs: Sequence[Run], out: str) -> None:
  """Copies each run's small files to <out>/runs/<rel>/ (no checkpoints or
  features), so a report can be shared or committed with what it was built from."""
  for run in runs:
    dest = os.path.join(out, "runs", run.rel)
    os.makedirs(dest, exist_ok=True)
    for name in RUN_FILES:
      if os.path.exists(os.path.join(run.path, name)):
        shutil.copyfile(os.path.join(run.path, name), os.path.join(dest, name))


def build_report(root: str, out: Optional[str] = None, title: str = "Sweep report",
                 with_gallery: bool = True, copy_runs: bool = False) -> Dict:
  """Writes <out>/report.md and <out>/figures/*.png.

  Returns:
    {runs: int, tables: int, figures: [file names], report: path}.

  Raises:
    NoRuns: no results.json under `root`.
  """
  root = os.path.abspath(root)
  out = os.path.abspath(out or root)
  runs, problems = load_runs(root)
  if not runs:
    raise NoRuns(f"no results.json under {root} (a run directory holds one); "
                 f"is this the sweep root?")
  fig_dir = os.path.join(out, "figures")
  # Figures of an earlier build whose data are gone must not linger.
  for old in glob.glob(os.path.join(fig_dir, "fig[0-9]_*.png")) + glob.glob(
      os.path.join(fig_dir, "gallery_*.png")):
    os.remove(old)
  commits = sorted({r.meta.get("git_commit", "unknown") for r in runs})
  own = sorted({r.dataset for r in runs})
  transfer = sorted({e["dataset"] for r in runs for e in r.evaluations} - set(own))
  lines = [f"# {title}", "", f"- sweep root: `{root}`", f"- runs read: {len(runs)}",
           f"- commits: {', '.join(f'`{c}`' for c in commits)}",
           f"- datasets: trained on {', '.join(own)}"
           + (f"; transfer evaluations on {', '.join(transfer)}" if transfer else "")]
  lines += [f"- problem: {p}" for p in problems] + [""]
  table_lines, tables, n_tables = tables_section(runs)
  figure_lines, figures = figures_section(runs, tables, fig_dir, out)
  lines += table_lines + figure_lines
  if with_gallery:
    lines += ["## Nearest neighbours", ""] + gallery(runs, fig_dir, out) + [""]
    figures += sorted(os.path.basename(p) for p in
                      glob.glob(os.path.join(fig_dir, "gallery_*.png")))
  if copy_runs:
    copy_run_files(runs, out)
  lines += appendix(runs, files_dir="runs" if copy_runs else None)
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  return dict(runs=len(runs), tables=n_tables, figures=figures, report=path)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("root", help="the sweep root (run directories at any depth)")
  parser.add_argument("--out", help="where report.md and figures/ go (default: root)")
  parser.add_argument("--title", default="Sweep report")
  parser.add_argument("--no-gallery", action="store_true",
                      help="skip the nearest-neighbour gallery (no TensorFlow)")
  parser.add_argument("--copy-runs", action="store_true",
                      help="copy each run's results.json, run.json and "
                           "operative_config.gin to <out>/runs/ and link them")
  args = parser.parse_args(argv)
  try:
    summary = build_report(args.root, args.out, args.title, not args.no_gallery,
                           args.copy_runs)
  except NoRuns as e:
    print(f"make_report: {e}", file=sys.stderr)
    return 2
  print(f"make_report: read {summary['runs']} runs; wrote {summary['tables']} tables "
        f"and {len(summary['figures'])} figures; report: {summary['report']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
