"""Every named grid of the study: Table 1 and its rows and columns, Table 2,
the width and architecture sweeps, the figures' runs, the Fashion-MNIST configs
and the miniature.

A task is a name: `table1:<task>` and `miniature:<task>` plan the cells of any
task whose config exists (configs/common/<task>_imagenet.gin,
configs/miniature/<task>.gin), including one the paper never ran.
"""
import dataclasses
import glob
import os
import shlex
from typing import Dict, List, Optional, Tuple

from study.grid import cells
from study.grid.cells import LINEAR, TABLE2, TASK_NAMES, TRUNK_NAMES


@dataclasses.dataclass(frozen=True)
class Run:
  """One sweep run: a workdir, the command that fills it, and what 'done' means.

  expect: (protocol, layer, fraction, eval_split) entries results.json must
  hold for the trunk of the run's final step.
  workdir_name: where under the root it runs, when not `name` (Table 2 and
  the figures that evaluate a Table 1 cell more run in that cell's workdir).
  """
  name: str
  configs: Tuple[str, ...]
  bindings: Tuple[str, ...] = ()
  expect: Tuple[Tuple[str, str, float, str], ...] = (LINEAR,)
  program: Tuple[str, ...] = ("train_and_eval.py",)
  workdir_name: Optional[str] = None
  dataset: Optional[str] = None  # whose entries `expect` means ('a|b': either's);
  # None: the run's
  flags: Tuple[str, ...] = ()

  def workdir(self, root: str) -> str:
    return os.path.join(root, *(self.workdir_name or self.name).split("/"))

  def command(self, root: str, python: str = "python",
              checkout: str = cells.CHECKOUT) -> str:
    """The shell command, with absolute paths: it runs from any directory."""
    args = [python, *(os.path.join(checkout, p) if p.endswith(".py") else p
                      for p in self.program)]
    # `-m evaluation` finds the package from the repository root.
    cd = f"cd {shlex.quote(checkout)} && " if self.program[0] == "-m" else ""
    args += [f"--config={os.path.join(checkout, c)}" for c in self.configs]
    args.append(f"--workdir={self.workdir(root)}")
    args += list(self.flags)
    args += [f"--gin_bindings={b}" for b in self.bindings]
    return cd + " ".join(shlex.quote(a) for a in args)


def trunk_bindings(trunk: str, k: int) -> Tuple[str, ...]:
  """The gin bindings that make a Table 1 row's trunk at width k."""
  _, _, model, last_relu = cells.trunk(trunk)
  return (f"get_model.name = '{model}'", f"get_model.width = {k}",
          f"get_model.last_relu = {last_relu}")


def _cell_run(task, trunk, k, extra_configs=(), grid="table1", suffix="",
              **kwargs) -> Run:
  """A run in the workdir of Table 1 cell (task, trunk, k)."""
  cell = f"{task}/{trunk}_k{k}"
  configs = () if kwargs.get("program", ("train_and_eval.py",))[0] == "-m" else (
      cells.cell_config(task, trunk, k),)
  return Run(name=f"{grid}/{cell}{suffix}", workdir_name=f"table1/{cell}",
             configs=(*configs, *extra_configs), **kwargs)


def table1_task_cells(task: str) -> List[Run]:
  """Table 1 cells of a task without committed cell configs: its ImageNet
  settings and the Table 1 protocol, the trunk by bindings (what a written
  cell config says)."""
  return [Run(name=f"table1/{task}/{trunk}_k{k}",
              configs=(cells.task_config(task), "configs/common/linear_eval_table1.gin"),
              bindings=trunk_bindings(trunk, k))
          for k in cells.widths(task) for trunk in TRUNK_NAMES]


def _widest(task):
  return cells.widths(task)[-1]


def _grid_runs() -> Dict[str, List[Run]]:
  grids = {"table1": [_cell_run(*c) for c in cells.table1_cells()]}
  for task in TASK_NAMES:
    grids[f"table1:{task}"] = [_cell_run(*c) for c in cells.table1_cells()
                               if c[0] == task]
  for trunk in TRUNK_NAMES:
    grids[f"table1:{trunk}"] = [_cell_run(*c) for c in cells.table1_cells()
                                if c[1] == trunk]
  # Table 2 evaluates in the Table 1 cell's own workdir: it trains once.
  grids["table2"] = [
      _cell_run(task, trunk, k, grid="table2",
                extra_configs=("configs/common/linear_eval_table2.gin",),
                expect=(LINEAR, ("linear_sgd", "pre_logits", 1.0, "test")))
      for task, trunk, k, _ in TABLE2] + [
      # Places: Places205 when its archives are there, else Places365
      # (docs/protocol.md §7's stand-in); the same protocol on the trained cell, through the
      # evaluation CLI (it needs the Places data).
      _cell_run(task, trunk, k, grid="table2", suffix="_places",
                program=("-m", "evaluation"), extra_configs=(),
                dataset="places205|places365",
                flags=("--dataset=places205|places365", "--protocol=linear_sgd"),
                expect=(("linear_sgd", "pre_logits", 1.0, "test"),))
      for task, trunk, k, _ in TABLE2]
  # Widths beyond Table 1 for the best rotation model (k = 1, 2 are cheap
  # first points of the curve), and all six trunks at k = 4.
  grids["widths"] = [
      Run(name=f"widths/rotation/revnet50_k{k}",
          configs=(cells.cell_config("rotation", "revnet50", 4),),
          bindings=(f"get_model.width = {k}",)) if k not in (4, 8, 12, 16)
      else _cell_run("rotation", "revnet50", k) for k in (1, 2, 4, 8, 12, 16)]
  grids["architectures"] = [_cell_run("rotation", trunk, 4) for trunk in TRUNK_NAMES]
  # Fig. 3: MLP next to linear for the widest model of every task and trunk.
  grids["fig3"] = [
      _cell_run(task, trunk, _widest(task), grid="fig3",
                bindings=("experiment.protocols = ['linear_lbfgs', 'mlp_sgd']",
                          "sgd_eval.train_split = 'train'",
                          "sgd_eval.eval_split = 'val'"),
                expect=(LINEAR, ("mlp_sgd", "pre_logits", 1.0, "val")))
      for task in TASK_NAMES if task != "random_init" for trunk in TRUNK_NAMES]
  # Fig. 5: five end points of ResNet50 v2, RevNet50 and VGG19-BN.
  layers = ("block1", "block2", "block3", "block4", "pre_logits")
  grids["fig5"] = [
      _cell_run(task, trunk, _widest(task), grid="fig5",
                bindings=(f"linear_eval.layers = {list(layers)}",),
                expect=tuple(("linear_lbfgs", l, 1.0, "val") for l in layers))
      for task in TASK_NAMES if task != "random_init"
      for trunk in ("resnet50_v2", "revnet50", "vgg19_bn")]
  # Fig. 6: width x representation size for rotation on RevNet50, each a
  # model of its own (a linear bottleneck before pre_logits).
  grids["fig6"] = [
      Run(name=f"fig6/rotation/revnet50_k{k}_r{size}",
          configs=(cells.cell_config("rotation", "revnet50", k),),
          bindings=(f"get_model.representation_size = {size}",))
      for k in (4, 8, 12, 16) for size in (512, 1024, 2048, 4096, 8192)]
  # Fig. 7: 10% and 5% of the labels for every width of each task's best trunk.
  grids["fig7"] = [
      _cell_run(task, trunk, k, grid="fig7", suffix=f"_f{f:g}",
                bindings=(f"linear_eval.fraction = {f}",),
                expect=(("linear_lbfgs", "pre_logits", f, "val"),))
      for task, trunk, _, _ in TABLE2 for k in cells.widths(task) for f in (0.1, 0.05)]
  # Fig. 8: the linear SGD protocol on train -> val with the first decay after
  # 30, 120 or 480 epochs, on the best rotation model; one workdir each (the
  # schedule is not part of a results entry's key).
  grids["fig8"] = [
      Run(name=f"fig8/rotation/revnet50_k16_decay{d}",
          configs=(cells.cell_config("rotation", "revnet50", 16),),
          bindings=("train.init_checkpoint = '{root}/table1/rotation/revnet50_k16'",
                    "train.epochs = 0",
                    "experiment.protocols = ['linear_sgd']",
                    "sgd_eval.train_split = 'train'", "sgd_eval.eval_split = 'val'",
                    f"sgd_eval.first_decay_epochs = {d}"),
          expect=(("linear_sgd", "pre_logits", 1.0, "val"),))
      for d in (30, 120, 480)]
  # The Fashion-MNIST configs (the demo and one per task): minutes each on a
  # laptop; the sweep's own smoke test runs two of them.
  fashion = ("linear_lbfgs", "pre_logits", 1.0, "test")
  grids["fashion_mnist"] = [Run(name="fashion_mnist/demo",
                                configs=("configs/demo_fashion_mnist.gin",),
                                expect=(fashion,))] + [
      Run(name=f"fashion_mnist/{os.path.basename(os.path.dirname(p))}",
          configs=(os.path.relpath(p, cells.CHECKOUT),), expect=(fashion,))
      for p in sorted(glob.glob(os.path.join(cells.CHECKOUT, "configs", "*",
                                             "fashion_mnist.gin")))
      if os.path.basename(os.path.dirname(p)) != "common"]
  grids["miniature"] = _miniature_grid()
  grids["miniature_fig6"] = miniature_fig6()
  return grids


def miniature_cell(task: str, trunk: str, k: int) -> Run:
  """One miniature cell: the linear probe and Fig. 3's MLP on pre_logits; the
  first trunk's Rnd cell also scores the pixels control."""
  pixels = ("experiment.evaluate_pixels = True",) if (
      task == "random_init" and trunk == cells.MINIATURE_TRUNKS[0]) else ()
  return Run(
      name=f"miniature/{task}/{trunk}_k{k}",
      configs=(cells.miniature_config(task),),
      bindings=trunk_bindings(trunk, k) + (
          "experiment.protocols = ['linear_lbfgs', 'mlp_sgd_features']",) + pixels,
      expect=(cells.MINIATURE_LINEAR, cells.MINIATURE_MLP))


def miniature_cells(tasks) -> List[Run]:
  """The miniature's cells of `tasks` (any task: one the study does not name
  runs on the first trunk only), trunk by trunk."""
  return [miniature_cell(task, trunk, k) for k in cells.MINIATURE_WIDTHS
          for trunk in cells.MINIATURE_TRUNKS for task in tasks
          if trunk == cells.MINIATURE_TRUNKS[0]
          or task in cells.MINIATURE_SECOND_TRUNK_TASKS]


def _miniature_grid() -> List[Run]:
  # Fig. 5 evaluates a trained cell again in its workdir (training is done),
  # every end point pooled to the same size.
  f5 = cells.MINIATURE_FIG5
  fig5 = [dataclasses.replace(
      miniature_cell(task, trunk, f5["width"]),
      name=f"miniature_fig5/{task}/{trunk}_k{f5['width']}",
      workdir_name=f"miniature/{task}/{trunk}_k{f5['width']}",
      bindings=trunk_bindings(trunk, f5["width"]) + (
          f"linear_eval.layers = {list(cells.MINIATURE_LAYERS)}",
          f"linear_eval.fraction = {f5['fraction']}",
          f"linear_eval.pool_to_features = {f5['pool_to_features']}"),
      expect=tuple(("linear_lbfgs", layer, f5["fraction"], "val")
                   for layer in cells.MINIATURE_LAYERS))
          for trunk in f5["trunks"] for task in f5["tasks"]]
  return miniature_cells(cells.MINIATURE_TASKS) + fig5


def miniature_fig6() -> List[Run]:
  """Fig. 6's two axes on Fashion-MNIST (cells.MINIATURE_FIG6): each a model
  of its own, with its random trunk and the pixels evaluated beside it."""
  f6 = cells.MINIATURE_FIG6
  return [dataclasses.replace(
      miniature_cell(f6["task"], f6["trunk"], k),
      name=f"miniature_fig6/{f6['task']}/{f6['trunk']}_k{k}_r{size}",
      bindings=trunk_bindings(f6["trunk"], k) + (
          f"get_model.representation_size = {size}",
          "experiment.evaluate_random_init = True",
          "experiment.evaluate_pixels = True"),
      expect=(cells.MINIATURE_LINEAR,))
          for k in f6["widths"] for size in f6["sizes"]]


GRIDS = _grid_runs()
# Grids of any task, by the config its cells need.
TASK_GRIDS = {"table1": (cells.task_config, table1_task_cells),
              "miniature": (cells.miniature_config, lambda t: miniature_cells((t,)))}


def runs(grid: str, checkout: str = cells.CHECKOUT) -> List[Run]:
  """The runs of a named grid; `table1:<task>` and `miniature:<task>` of any
  task whose config exists under `checkout`."""
  if grid in GRIDS:
    return GRIDS[grid]
  kind, _, task = grid.partition(":")
  if kind in TASK_GRIDS and task and task not in TRUNK_NAMES:
    config, task_runs = TASK_GRIDS[kind]
    if os.path.exists(os.path.join(checkout, config(task))):
      return task_runs(task)
  raise SystemExit(
      f"Unknown grid {grid!r}; known grids: {', '.join(GRIDS)}; and for any task "
      f"table1:<task> (needs {cells.task_config('<task>')}) or miniature:<task> "
      f"(needs {cells.miniature_config('<task>')}).")
