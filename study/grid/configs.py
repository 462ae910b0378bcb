"""The Table 1 config writer: one small gin file per cell, written from the data.

Table 1 cells live in `configs/<task>/imagenet_<trunk>_k<k>.gin`. They are
small (includes + the trunk), written by `write` from study/grid/cells.py so
that all 72 say exactly what docs/protocol.md says; tests/test_study_grid.py fails when a
committed file differs from what `write` would produce.
"""
import glob
import os
from typing import List

from study.grid import cells


def cell_text(task: str, trunk: str, k: int) -> str:
  """The gin file of one Table 1 cell."""
  _, row, model, last_relu = cells.trunk(trunk)
  column = cells.label(task)
  what = ("The trunk at initialisation" if task == "random_init"
          else f"{column} trained on ImageNet")
  if task in cells.PATCH_TASKS:
    what += (";\n# VGG19-BN has no patch mode: fc6 covers the 2x2 a 64 px patch leaves"
             if model == "vgg19_bn" else ", the trunk in patch mode")
  # The comment names the command that wrote the committed files; changing it
  # rewrites all 72.
  return (
      f"# Table 1 cell {column} / {row} / k = {k} (paper: "
      f"{cells.PAPER_TABLE1[(task, trunk, k)]}% linear top-1).\n"
      f"# {what} (docs/protocol.md §1, §2);\n"
      f"# scored by the Table 1 protocol (docs/protocol.md §5).\n"
      f"# Written by `python -m study.grid write`: edit the generator or\n"
      f"# the includes, not this file.\n"
      f"include '{cells.task_config(task)}'\n"
      f"include 'configs/common/linear_eval_table1.gin'\n"
      f"\n"
      f"get_model.name = '{model}'\n"
      f"get_model.width = {k}\n"
      f"get_model.last_relu = {last_relu}\n")


def _read(path: str):
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return f.read()


def write(root: str = cells.CHECKOUT) -> List[str]:
  """Writes every Table 1 cell's config; returns the paths it changed."""
  changed = []
  for cell in cells.table1_cells():
    path = os.path.join(root, cells.cell_config(*cell))
    text = cell_text(*cell)
    if _read(path) != text:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "w") as f:
        f.write(text)
      changed.append(os.path.relpath(path, root))
  return changed


def check(root: str = cells.CHECKOUT) -> List[str]:
  """Problems: cells that differ from `write`'s, ImageNet configs not in the grid."""
  problems = []
  table1 = {cells.cell_config(*c) for c in cells.table1_cells()}
  for cell in cells.table1_cells():
    text = _read(os.path.join(root, cells.cell_config(*cell)))
    if text is None:
      problems.append(f"missing {cells.cell_config(*cell)}")
    elif text != cell_text(*cell):
      problems.append(f"differs from the generator: {cells.cell_config(*cell)}")
  for task in cells.TASK_NAMES:
    for path in glob.glob(os.path.join(root, "configs", task, "imagenet_*.gin")):
      rel = os.path.relpath(path, root)
      if rel not in table1:
        problems.append(f"not a Table 1 cell: {rel}")
  return problems
