r"""The study as data: every Table 1 cell, Table 2 and the figures' runs.

  python scripts/study_grid.py write            # (re)writes the Table 1 configs
  python scripts/study_grid.py check            # exit 1 if a committed one differs
  python scripts/study_grid.py grids            # the grid names sweep.sh accepts
  python scripts/study_grid.py plan table1:rotation --root /runs
  python scripts/study_grid.py cost [--tflops 100]   # compute of Table 1, 2

`plan` prints one line per run, tab-separated: state (done, partial or new),
name, workdir, and the shell command that runs it. `scripts/sweep.sh` drives
it; reports read the same names. A run is `done` when its results.json holds
every evaluation the run asks for on the trunk of its final training step.

Table 1 cells live in `configs/<task>/imagenet_<trunk>_k<k>.gin`. They are
small (includes + the trunk), written by `write` from the tables below so that
all 72 say exactly what SPEC says; tests/test_study_grid.py fails when a
committed file differs from what `write` would produce.
"""
import argparse
import dataclasses
import glob
import json
import os
import shlex
import sys
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from evaluation import results as results_lib  # noqa: E402  (stdlib only)

# Table 1's rows: (file name, paper's row name, model name, last_relu).
TRUNKS = (
    ("revnet50", "RevNet50", "revnet50", True),
    ("resnet50_v2", "ResNet50 v2", "resnet50_v2", True),
    ("resnet50_v1", "ResNet50 v1", "resnet50_v1", True),
    ("revnet50_minus", "RevNet50 (-)", "revnet50", False),
    ("resnet50_v2_minus", "ResNet50 v2 (-)", "resnet50_v2", False),
    ("vgg19_bn", "VGG19-BN", "vgg19_bn", True),
)
TRUNK_NAMES = tuple(t[0] for t in TRUNKS)

# Table 1's columns: (task, paper's column name, widths).
TASKS = (
    ("random_init", "Rnd", (4,)),
    ("rotation", "Rotation", (4, 8, 12, 16)),
    ("exemplar", "Exemplar", (4, 8, 12)),
    ("relative_patch_location", "RelPatchLoc", (4, 8)),
    ("jigsaw", "Jigsaw", (4, 8)),
)
TASK_NAMES = tuple(t[0] for t in TASKS)

# Paper Table 1 (linear top-1 %, own val split), rows in TRUNKS order, columns
# in TASKS order and widths: Rnd 4x | Rot 4, 8, 12, 16 | Ex 4, 8, 12 | RPL 4, 8
# | Jig 4, 8.
_PAPER_ROWS = {
    "revnet50": (8.1, 47.3, 50.4, 53.1, 53.7, 42.4, 45.6, 46.4, 40.6, 45.0, 40.1, 43.7),
    "resnet50_v2": (4.4, 43.8, 47.5, 47.2, 47.6, 43.0, 45.7, 46.6, 42.2, 46.7, 38.4, 41.3),
    "resnet50_v1": (2.5, 41.7, 43.4, 43.3, 43.2, 42.8, 46.9, 47.7, 46.8, 50.5, 42.2, 45.4),
    "revnet50_minus": (8.4, 45.2, 51.0, 52.8, 53.7, 38.0, 42.6, 44.3, 33.8, 43.5, 36.1, 41.5),
    "resnet50_v2_minus": (5.3, 38.6, 44.5, 47.3, 48.2, 33.7, 36.7, 38.2, 38.6, 43.4, 32.5, 34.4),
    "vgg19_bn": (2.7, 16.8, 14.6, 16.6, 22.7, 26.4, 28.3, 29.0, 28.5, 29.4, 19.8, 21.1),
}
_COLUMNS = [(task, k) for task, _, widths in TASKS for k in widths]
PAPER_TABLE1: Dict[Tuple[str, str, int], float] = {
    (task, trunk, k): row[i]
    for trunk, row in _PAPER_ROWS.items() for i, (task, k) in enumerate(_COLUMNS)}

# Table 2: the best Table 1 model of each task, evaluated with the SGD
# protocol on trainval -> test (paper, ImageNet: Rotation 55.4, RelPatchLoc
# 51.4, Exemplar 46.0, Jigsaw 44.6).
TABLE2 = (("rotation", "revnet50", 16, 55.4),
          ("exemplar", "resnet50_v1", 12, 46.0),
          ("relative_patch_location", "resnet50_v1", 8, 51.4),
          ("jigsaw", "resnet50_v1", 8, 44.6))

LINEAR = ("linear_lbfgs", "pre_logits", 1.0, "val")


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

  def command(self, root: str, python: str = "python") -> str:
    """The shell command, with absolute paths: it runs from any directory."""
    args = [python, *(os.path.join(ROOT, p) if p.endswith(".py") else p
                      for p in self.program)]
    # `-m evaluation` finds the package from the repository root.
    cd = f"cd {shlex.quote(ROOT)} && " if self.program[0] == "-m" else ""
    args += [f"--config={os.path.join(ROOT, c)}" for c in self.configs]
    args.append(f"--workdir={self.workdir(root)}")
    args += list(self.flags)
    args += [f"--gin_bindings={b}" for b in self.bindings]
    return cd + " ".join(shlex.quote(a) for a in args)


def cell_config(task: str, trunk: str, k: int) -> str:
  return f"configs/{task}/imagenet_{trunk}_k{k}.gin"


def cell_text(task: str, trunk: str, k: int) -> str:
  """The gin file of one Table 1 cell."""
  _, row, model, last_relu = TRUNKS[TRUNK_NAMES.index(trunk)]
  column = dict((t, c) for t, c, _ in TASKS)[task]
  what = ("The trunk at initialisation" if task == "random_init"
          else f"{column} trained on ImageNet")
  if task in ("jigsaw", "relative_patch_location"):
    what += (";\n# VGG19-BN has no patch mode: fc6 covers the 2x2 a 64 px patch leaves"
             if model == "vgg19_bn" else ", the trunk in patch mode")
  return (
      f"# Table 1 cell {column} / {row} / k = {k} (paper: "
      f"{PAPER_TABLE1[(task, trunk, k)]}% linear top-1).\n"
      f"# {what} (SPEC §1, §2);\n"
      f"# scored by the Table 1 protocol (SPEC §5).\n"
      f"# Written by `python scripts/study_grid.py write`: edit the generator or\n"
      f"# the includes, not this file.\n"
      f"include 'configs/common/{task}_imagenet.gin'\n"
      f"include 'configs/common/linear_eval_table1.gin'\n"
      f"\n"
      f"get_model.name = '{model}'\n"
      f"get_model.width = {k}\n"
      f"get_model.last_relu = {last_relu}\n")


def table1_cells() -> List[Tuple[str, str, int]]:
  """The 72 (task, trunk, k) cells, column by column."""
  return [(task, trunk, k) for task, _, widths in TASKS for k in widths
          for trunk in TRUNK_NAMES]


def _cell_run(task, trunk, k, extra_configs=(), grid="table1", suffix="",
              **kwargs) -> Run:
  """A run in the workdir of Table 1 cell (task, trunk, k)."""
  cell = f"{task}/{trunk}_k{k}"
  configs = () if kwargs.get("program", ("train_and_eval.py",))[0] == "-m" else (
      cell_config(task, trunk, k),)
  return Run(name=f"{grid}/{cell}{suffix}", workdir_name=f"table1/{cell}",
             configs=(*configs, *extra_configs), **kwargs)


def _widest(task):
  return dict((t, w) for t, _, w in TASKS)[task][-1]


def _grid_runs() -> Dict[str, List[Run]]:
  grids = {"table1": [_cell_run(*c) for c in table1_cells()]}
  for task in TASK_NAMES:
    grids[f"table1:{task}"] = [_cell_run(*c) for c in table1_cells() if c[0] == task]
  for trunk in TRUNK_NAMES:
    grids[f"table1:{trunk}"] = [_cell_run(*c) for c in table1_cells() if c[1] == trunk]
  # Table 2 evaluates in the Table 1 cell's own workdir: it trains once.
  grids["table2"] = [
      _cell_run(task, trunk, k, grid="table2",
                extra_configs=("configs/common/linear_eval_table2.gin",),
                expect=(LINEAR, ("linear_sgd", "pre_logits", 1.0, "test")))
      for task, trunk, k, _ in TABLE2] + [
      # Places: Places205 when its archives are there, else Places365 (SPEC
      # §7's stand-in); the same protocol on the trained cell, through the
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
          configs=(cell_config("rotation", "revnet50", 4),),
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
          configs=(cell_config("rotation", "revnet50", k),),
          bindings=(f"get_model.representation_size = {size}",))
      for k in (4, 8, 12, 16) for size in (512, 1024, 2048, 4096, 8192)]
  # Fig. 7: 10% and 5% of the labels for every width of each task's best trunk.
  grids["fig7"] = [
      _cell_run(task, trunk, k, grid="fig7", suffix=f"_f{f:g}",
                bindings=(f"linear_eval.fraction = {f}",),
                expect=(("linear_lbfgs", "pre_logits", f, "val"),))
      for task, trunk, _, _ in TABLE2
      for k in dict((t, w) for t, _, w in TASKS)[task] for f in (0.1, 0.05)]
  # Fig. 8: the linear SGD protocol on train -> val with the first decay after
  # 30, 120 or 480 epochs, on the best rotation model; one workdir each (the
  # schedule is not part of a results entry's key).
  grids["fig8"] = [
      Run(name=f"fig8/rotation/revnet50_k16_decay{d}",
          configs=(cell_config("rotation", "revnet50", 16),),
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
          configs=(os.path.relpath(p, ROOT),), expect=(fashion,))
      for p in sorted(glob.glob(os.path.join(ROOT, "configs", "*", "fashion_mnist.gin")))
      if os.path.basename(os.path.dirname(p)) != "common"]
  grids.update(_miniature_grids())
  return grids


# The Fashion-MNIST miniature of Table 1 (configs/miniature/, README "The
# miniature"): every trunk x Rnd, the four tasks and supervised at k = 1 (the
# paper's 4 over four); k = 2 (a cell costs 4x: FLOPs grow with k^2) for Rnd
# on every trunk and the four tasks on three trunks, the paper's best for
# rotation (RevNet50), for the patch tasks (ResNet50 v1) and its worst
# (VGG19-BN); the figures' evaluations on a subset. k = 1 cells run first.
MINIATURE_TASKS = ("random_init", "rotation", "exemplar", "relative_patch_location",
                   "jigsaw", "supervised")
MINIATURE_WIDTHS = (1, 2)
MINIATURE_WIDE_TRUNKS = ("revnet50", "resnet50_v1", "vgg19_bn")
MINIATURE_PATCH_TASKS = ("relative_patch_location", "jigsaw")
# VGG19-BN has no patch mode and needs inputs of 32 px (five pools): its patch
# cells take the ImageNet geometry at half size (resize 146, crop 128, 3x3 cells
# of 42 px, 32 px patches) where the others take it at an eighth (8 px
# patches). They cost ~9x a 32 px image per image, so VGG19-BN's patch cells
# are at k = 1 only.
MINIATURE_VGG_PATCH_PP = (
    "{task}.pp_train = 'decode|resize(146)|crop(128)|crop_patches(3, patch_size=32, "
    "jitter=8)|standardize'",
    "{task}.pp_representation = 'decode|resize_small(112)|central_crop(96)|"
    "crop_patches(3, patch_size=32)|standardize'")
MINIATURE_LINEAR = ("linear_lbfgs", "pre_logits", 1.0, "val")
MINIATURE_MLP = ("mlp_sgd_features", "pre_logits", 1.0, "val")
MINIATURE_LAYERS = ("block1", "block2", "block3", "block4", "pre_logits")
# Fig. 5 on 20% of the labels (L-BFGS on 55,000 x 4,096 block1 features for
# every L2 would cost more than the rest of the cell); Fig. 7 at 10%.
MINIATURE_FIG5 = dict(tasks=("random_init", "rotation"), width=1, fraction=0.2,
                      trunks=("resnet50_v2", "revnet50", "vgg19_bn"))
MINIATURE_FIG7 = dict(trunk="revnet50", fractions=(0.1,))


def _miniature_trunk_bindings(trunk: str, k: int) -> Tuple[str, ...]:
  _, _, model, last_relu = TRUNKS[TRUNK_NAMES.index(trunk)]
  return (f"get_model.name = '{model}'", f"get_model.width = {k}",
          f"get_model.last_relu = {last_relu}")


def miniature_cell(task: str, trunk: str, k: int) -> Run:
  """One miniature cell; the k = 2 cells also train Fig. 3's MLP."""
  mlp = k == 2
  vgg_patches = tuple(b.format(task=task) for b in MINIATURE_VGG_PATCH_PP) if (
      trunk == "vgg19_bn" and task in MINIATURE_PATCH_TASKS) else ()
  return Run(
      name=f"miniature/{task}/{trunk}_k{k}",
      configs=(f"configs/miniature/{task}.gin",),
      bindings=_miniature_trunk_bindings(trunk, k) + vgg_patches + (
          ("experiment.protocols = ['linear_lbfgs', 'mlp_sgd_features']",)
          if mlp else ()),
      expect=(MINIATURE_LINEAR,) + ((MINIATURE_MLP,) if mlp else ()))


def _miniature_grids() -> Dict[str, List[Run]]:
  cells = [miniature_cell(task, trunk, k) for k in MINIATURE_WIDTHS
           for task in MINIATURE_TASKS for trunk in TRUNK_NAMES
           if k == 1 or task == "random_init" or (
               task != "supervised" and trunk in MINIATURE_WIDE_TRUNKS
               and not (trunk == "vgg19_bn" and task in MINIATURE_PATCH_TASKS))]
  # The figures evaluate a trained cell again in its workdir (training is done).
  f5 = MINIATURE_FIG5
  fig5 = [dataclasses.replace(
      miniature_cell(task, trunk, f5["width"]),
      name=f"miniature_fig5/{task}/{trunk}_k{f5['width']}",
      workdir_name=f"miniature/{task}/{trunk}_k{f5['width']}",
      bindings=_miniature_trunk_bindings(trunk, f5["width"]) + (
          f"linear_eval.layers = {list(MINIATURE_LAYERS)}",
          f"linear_eval.fraction = {f5['fraction']}"),
      expect=tuple(("linear_lbfgs", layer, f5["fraction"], "val")
                   for layer in MINIATURE_LAYERS))
          for task in f5["tasks"] for trunk in f5["trunks"]]
  f7 = MINIATURE_FIG7
  fig7 = [dataclasses.replace(
      miniature_cell(task, f7["trunk"], k),
      name=f"miniature_fig7/{task}/{f7['trunk']}_k{k}_f{f:g}",
      workdir_name=f"miniature/{task}/{f7['trunk']}_k{k}",
      bindings=_miniature_trunk_bindings(f7["trunk"], k) + (
          f"linear_eval.fraction = {f}",),
      expect=(("linear_lbfgs", "pre_logits", f, "val"),))
          for task in MINIATURE_TASKS if task not in ("random_init", "supervised")
          for k in MINIATURE_WIDTHS for f in f7["fractions"]]
  return {"miniature": cells + fig5 + fig7}


GRIDS = _grid_runs()


def runs(grid: str) -> List[Run]:
  if grid not in GRIDS:
    raise SystemExit(f"Unknown grid {grid!r}; known grids: {', '.join(GRIDS)}.")
  return GRIDS[grid]


def state(workdir: str, run: Run) -> str:
  """'done', 'partial' (something there: resumes) or 'new'."""
  path = os.path.join(workdir, "results.json")
  if not os.path.exists(path):
    return "partial" if os.path.isdir(workdir) and os.listdir(workdir) else "new"
  try:
    with open(path) as f:
      results = json.load(f)
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


def plan(grid: str, root: str, python: str = "python") -> List[Tuple[str, str, str, str]]:
  """[(state, name, workdir, command)] for every run of `grid`."""
  out = []
  for run in runs(grid):
    run = dataclasses.replace(
        run, bindings=tuple(b.replace("{root}", root) for b in run.bindings))
    workdir = run.workdir(root)
    out.append((state(workdir, run), run.name, workdir, run.command(root, python)))
  return out


# ImageNet as the study splits it (SPEC §7).
IMAGENET_TRAIN = 1_281_167 - 50_000
IMAGENET_TRAINVAL = 1_281_167
IMAGENET_TEST = 50_000


def cell_flops(task: str, trunk: str, k: int) -> Tuple[float, float]:
  """(training, Table 1 evaluation) FLOPs of one cell, from models/flops.py.

  Training: 3 x forward (forward + backward) of every network input per image
  (rotation 4 copies at 224, exemplar 8 crops at 224, the patch tasks 9 patches
  of 64 px in patch mode plus their head), over SPEC §4's 35 epochs of `train`.
  Evaluation: one forward of the representation (9 patches for the patch
  tasks) of every `train` and `val` image; L-BFGS runs on the host.
  """
  from models import flops  # pylint: disable=g-import-not-at-top
  model = TRUNKS[TRUNK_NAMES.index(trunk)][2]
  full = flops.count_flops(model, k, image_size=224)
  patch = flops.count_flops(model, k, image_size=64, patch_mode=True,
                            num_classes=1000)
  if task in ("jigsaw", "relative_patch_location"):
    fc = 2 * 4096 * (9000 + 100) * 8 if task == "jigsaw" else 2 * 4096 * (2000 + 8) * 8
    per_image, represent = 9 * patch + fc, 9 * patch
  else:
    copies = {"rotation": 4, "exemplar": 8, "random_init": 0}[task]
    per_image, represent = copies * full, full
  epochs = 0 if task == "random_init" else 35
  return (3 * per_image * IMAGENET_TRAIN * epochs,
          represent * (IMAGENET_TRAIN + 50_000))


def cost_table(tflops: float) -> str:
  """Compute per Table 1 column and trunk, and days at `tflops` sustained."""
  days = lambda f: f / (tflops * 1e12) / 86400  # noqa: E731
  lines = [f"Table 1 compute (EFLOP = 1e18; days at {tflops:g} TFLOP/s sustained):",
           f"{'cell':44s} {'train EFLOP':>11s} {'eval EFLOP':>10s} {'days':>7s}"]
  total = 0.0
  for task, _, widths in TASKS:
    column = 0.0
    for k in widths:
      for trunk in TRUNK_NAMES:
        train, evaluate = cell_flops(task, trunk, k)
        column += train + evaluate
        lines.append(f"{task + '/' + trunk + '_k' + str(k):44s} {train / 1e18:11.2f} "
                     f"{evaluate / 1e18:10.3f} {days(train + evaluate):7.2f}")
    total += column
    lines.append(f"{'  column ' + task:44s} {column / 1e18:22.2f} {days(column):7.1f}")
  lines.append(f"{'Table 1 (72 cells)':44s} {total / 1e18:22.2f} {days(total):7.1f}")
  table2 = 0.0
  for task, trunk, k, _ in TABLE2:
    _, evaluate = cell_flops(task, trunk, k)
    per_image = evaluate / (IMAGENET_TRAIN + 50_000)
    # 70 epochs of trainval through the frozen trunk, then test once.
    table2 += per_image * (70 * IMAGENET_TRAINVAL + IMAGENET_TEST)
  lines.append(f"{'Table 2 (4 SGD evaluations, 70 epochs)':44s} {table2 / 1e18:22.2f} "
               f"{days(table2):7.1f}")
  return "\n".join(lines)


def write(root: str = ROOT) -> List[str]:
  """Writes every Table 1 cell's config; returns the paths it changed."""
  changed = []
  for cell in table1_cells():
    path = os.path.join(root, cell_config(*cell))
    text = cell_text(*cell)
    old = open(path).read() if os.path.exists(path) else None
    if old != text:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "w") as f:
        f.write(text)
      changed.append(os.path.relpath(path, root))
  return changed


def check(root: str = ROOT) -> List[str]:
  """Problems: cells that differ from `write`'s, ImageNet configs not in the grid."""
  problems = []
  cells = {cell_config(*c) for c in table1_cells()}
  for cell in table1_cells():
    path = os.path.join(root, cell_config(*cell))
    if not os.path.exists(path):
      problems.append(f"missing {cell_config(*cell)}")
    elif open(path).read() != cell_text(*cell):
      problems.append(f"differs from the generator: {cell_config(*cell)}")
  for task in TASK_NAMES:
    for path in glob.glob(os.path.join(root, "configs", task, "imagenet_*.gin")):
      rel = os.path.relpath(path, root)
      if rel not in cells:
        problems.append(f"not a Table 1 cell: {rel}")
  return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  sub.add_parser("write", help="(re)write the Table 1 configs")
  sub.add_parser("check", help="exit 1 if a committed Table 1 config differs")
  sub.add_parser("grids", help="list the grid names")
  c = sub.add_parser("cost", help="compute of Table 1 and Table 2")
  c.add_argument("--tflops", type=float, default=100.0,
                 help="sustained TFLOP/s of the machine a run gets")
  p = sub.add_parser("plan", help="state, name, workdir, command per run")
  p.add_argument("grid")
  p.add_argument("--root", required=True)
  p.add_argument("--python", default="python")
  args = parser.parse_args(argv)
  if args.command == "write":
    for path in write():
      print(f"wrote {path}")
  elif args.command == "check":
    problems = check()
    for p in problems:
      print(p, file=sys.stderr)
    if problems:
      print("Run `python scripts/study_grid.py write`.", file=sys.stderr)
      return 1
    print(f"{len(table1_cells())} Table 1 configs match the generator.")
  elif args.command == "grids":
    for name, grid_runs in GRIDS.items():
      print(f"{name}\t{len(grid_runs)} runs")
  elif args.command == "cost":
    print(cost_table(args.tflops))
  else:
    for row in plan(args.grid, os.path.abspath(args.root), args.python):
      print("\t".join(row))
  return 0


if __name__ == "__main__":
  sys.exit(main())
