"""What each run of a grid still has to do: the sweep driver's plan.

A run is `done` when its results.json holds every evaluation the run asks for
on the trunk of its final training step, `partial` when its workdir holds
anything else (the run resumes) and `new` when there is nothing.
"""
import dataclasses
import os
from typing import List, Tuple

from evaluation import results as results_lib  # stdlib only
from study.grid import cells
from study.grid import grids
from training import workdir as workdir_lib


def state(workdir: str, run: grids.Run) -> str:
  """'done', 'partial' (something there: resumes) or 'new'."""
  wd = workdir_lib.Workdir(workdir)
  if not os.path.exists(wd.results_json):
    return "partial" if wd.exists() and os.listdir(wd.path) else "new"
  try:
    results = results_lib.load(wd.path)
  except (OSError, ValueError):
    return "partial"
  info = results.get("run", {})
  steps = info.get("steps")
  if steps is None or steps != info.get("total_steps"):
    return "partial"
  # The run's own dataset (transfer entries, e.g. Places, come when present).
  own = info.get("dataset")
  # 'a|b': an entry on either dataset will do.
  datasets = (run.dataset or own or "").split("|")
  done = all(any(results_lib.has_entry(
      results, default_dataset=own, trunk=f"trained@{steps}",
      dataset=name or own, protocol=protocol, layer=layer,
      fraction=fraction, eval_split=split) for name in datasets)
             for protocol, layer, fraction, split in run.expect)
  return "done" if done else "partial"


def plan(grid: str, root: str, python: str = "python",
         checkout: str = cells.CHECKOUT) -> List[Tuple[str, str, str, str]]:
  """[(state, name, workdir, command)] for every run of `grid`."""
  out = []
  for run in grids.runs(grid, checkout):
    run = dataclasses.replace(
        run, bindings=tuple(b.replace("{root}", root) for b in run.bindings))
    workdir = run.workdir(root)
    out.append((state(workdir, run), run.name, workdir,
                run.command(root, python, checkout)))
  return out
