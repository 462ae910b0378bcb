"""Reading a sweep's runs and picking the entries the tables and figures show.

A run directory is one that holds results.json, at any depth under the sweep
root; only its results.json (through evaluation/results.py), run.json and
operative_config.gin are read, by the names training/workdir.py gives them.
TensorFlow-free.
"""
import dataclasses
import datetime
import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from evaluation import results as results_lib  # stdlib only
from study.grid import cells as study_cells
from training import workdir as workdir_lib

# Table 1's columns in the paper's order, then the supervised baseline; a task
# the grid has never heard of comes after them (in_order), under its own name.
TASK_ORDER = study_cells.TASK_NAMES + ("supervised",)
ROW_LABELS = {name: row for name, row, _, _ in study_cells.TRUNKS}
LAYER_ORDER = ("block1", "block2", "block3", "block4", "pre_logits")
SPLIT_PREFERENCE = ("val", "test")
MISSING = "–"


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
    """The table row: the grid's trunk name, `_minus` without the last ReLU."""
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

  def invocation_times(self) -> List[float]:
    """Seconds from start to end of each finished invocation in run.json
    (training, resumes after a stop, later evaluations); one still running or
    killed before it could write its end is not counted."""
    out = []
    for inv in self.meta.get("invocations", []):
      try:
        start = datetime.datetime.fromisoformat(inv["start_time"])
        end = datetime.datetime.fromisoformat(inv["end_time"])
      except (KeyError, TypeError, ValueError):
        continue
      out.append((end - start).total_seconds())
    return out


def row_label(trunk: str) -> str:
  if trunk in ROW_LABELS:
    return ROW_LABELS[trunk]
  return trunk[:-len("_minus")] + " (-)" if trunk.endswith("_minus") else trunk


def task_label(task: str) -> str:
  return study_cells.label(task)


def is_pretext(task: str) -> bool:
  """Whether a column competes as a pretext task (Rnd and Supervised are
  baselines; any other task, known or not, is one)."""
  return task not in study_cells.BASELINES


def in_order(names, order: Sequence[str]) -> List[str]:
  """The distinct `names`, those in `order` first and in its order, then sorted."""
  names = set(names)
  return [n for n in order if n in names] + sorted(names - set(order))


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
    dirs[:] = [d for d in dirs if d not in workdir_lib.BULK_DIRS]
    if workdir_lib.RESULTS_JSON in files:
      found.append(os.path.relpath(path, root))
  return sorted(found)


def read_json(path: str) -> Dict:
  """A JSON file's content, {} when there is none; ValueError when unreadable."""
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def load_runs(root: str) -> Tuple[List[Run], List[str]]:
  """(runs with ids 1..N in path order, problems: unreadable files)."""
  runs, problems = [], []
  for rel in find_run_dirs(root):
    path = os.path.join(root, rel)
    workdir = workdir_lib.Workdir(path)
    try:
      results = results_lib.load(workdir.path)
      meta = read_json(workdir.run_json)
    except ValueError as e:
      # The JSON error itself: results.load's message names the machine's path.
      problems.append(f"`{rel}`: unreadable JSON ({e.__cause__ or e}); skipped")
      continue
    gin_text = ""
    if os.path.exists(workdir.operative_config):
      with open(workdir.operative_config) as f:
        gin_text = f.read()
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
    # Not Fig. 5's pre_logits pooled to an equal dimension: another number.
    e = pick(run.evaluations, protocol=protocol, layer="pre_logits", fraction=1.0,
             trunk=f"trained@{run.steps}", dataset=dataset or run.dataset,
             settings=lambda s: not (s or {}).get("pool_to_features"))
    if e:
      return e
  return None


def table1_value(run: Run) -> Optional[float]:
  e = table1_entry(run)
  return e["top1"] if e else None


def rankme_of(run: Run, split: Optional[str], measure: str = "rankme"
              ) -> Optional[float]:
  """A label-free measure (RankMe, or 'alpha_req') of the trained trunk's
  pre_logits on the held-out split, if recorded."""
  e = pick(run.label_free, prefer_splits=(split,) if split else (), split_key="split",
           trunk=f"trained@{run.steps}", layer="pre_logits", dataset=run.dataset)
  return e.get(measure) if e else None


def table_runs(runs: Sequence[Run], dataset: str) -> List[Run]:
  # Bottleneck models (Fig. 6) are other models than the Table 1 cell's.
  return [r for r in runs if r.dataset == dataset and r.representation_size is None]
