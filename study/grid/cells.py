"""The study as data: the paper's trunks, tasks and numbers, and the miniature's choices.

Everything here is keyed by name, so a task the paper never ran (one the
project registers later) is a task like any other: it has no paper numbers,
its column label is its name and its widths are DEFAULT_WIDTHS.
"""
import os
from typing import Dict, List, Tuple

# The checkout root: run commands name configs and programs under it.
CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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

# Table 1's columns, per task: (paper's column name, widths, {trunk: linear
# top-1 % on the own val split at each width}).
PAPER: Dict[str, Tuple[str, Tuple[int, ...], Dict[str, Tuple[float, ...]]]] = {
    "random_init": ("Rnd", (4,), {
        "revnet50": (8.1,),
        "resnet50_v2": (4.4,),
        "resnet50_v1": (2.5,),
        "revnet50_minus": (8.4,),
        "resnet50_v2_minus": (5.3,),
        "vgg19_bn": (2.7,),
    }),
    "rotation": ("Rotation", (4, 8, 12, 16), {
        "revnet50": (47.3, 50.4, 53.1, 53.7),
        "resnet50_v2": (43.8, 47.5, 47.2, 47.6),
        "resnet50_v1": (41.7, 43.4, 43.3, 43.2),
        "revnet50_minus": (45.2, 51.0, 52.8, 53.7),
        "resnet50_v2_minus": (38.6, 44.5, 47.3, 48.2),
        "vgg19_bn": (16.8, 14.6, 16.6, 22.7),
    }),
    "exemplar": ("Exemplar", (4, 8, 12), {
        "revnet50": (42.4, 45.6, 46.4),
        "resnet50_v2": (43.0, 45.7, 46.6),
        "resnet50_v1": (42.8, 46.9, 47.7),
        "revnet50_minus": (38.0, 42.6, 44.3),
        "resnet50_v2_minus": (33.7, 36.7, 38.2),
        "vgg19_bn": (26.4, 28.3, 29.0),
    }),
    "relative_patch_location": ("RelPatchLoc", (4, 8), {
        "revnet50": (40.6, 45.0),
        "resnet50_v2": (42.2, 46.7),
        "resnet50_v1": (46.8, 50.5),
        "revnet50_minus": (33.8, 43.5),
        "resnet50_v2_minus": (38.6, 43.4),
        "vgg19_bn": (28.5, 29.4),
    }),
    "jigsaw": ("Jigsaw", (4, 8), {
        "revnet50": (40.1, 43.7),
        "resnet50_v2": (38.4, 41.3),
        "resnet50_v1": (42.2, 45.4),
        "revnet50_minus": (36.1, 41.5),
        "resnet50_v2_minus": (32.5, 34.4),
        "vgg19_bn": (19.8, 21.1),
    }),
}
# (task, paper's column name, widths), in the paper's column order.
TASKS = tuple((task, label, widths) for task, (label, widths, _) in PAPER.items())
TASK_NAMES = tuple(PAPER)
PAPER_TABLE1: Dict[Tuple[str, str, int], float] = {
    (task, trunk, k): value for task, (_, widths, rows) in PAPER.items()
    for trunk, values in rows.items() for k, value in zip(widths, values)}
# Columns other than the paper's: the supervised baseline, then any task.
LABELS = {**{task: label for task, label, _ in TASKS}, "supervised": "Supervised"}
# The baselines: not pretext tasks (never compared with them).
BASELINES = ("random_init", "supervised")
# The widths of a task the paper has no column for (those every paper task has).
DEFAULT_WIDTHS = (4, 8)

# Table 2: the best Table 1 model of each task, evaluated with the SGD
# protocol on trainval -> test (paper, ImageNet: Rotation 55.4, RelPatchLoc
# 51.4, Exemplar 46.0, Jigsaw 44.6).
TABLE2 = (("rotation", "revnet50", 16, 55.4),
          ("exemplar", "resnet50_v1", 12, 46.0),
          ("relative_patch_location", "resnet50_v1", 8, 51.4),
          ("jigsaw", "resnet50_v1", 8, 44.6))

LINEAR = ("linear_lbfgs", "pre_logits", 1.0, "val")
# The tasks that see patches (the trunk in patch mode).
PATCH_TASKS = ("relative_patch_location", "jigsaw")


def trunk(name: str) -> Tuple[str, str, str, bool]:
  """(file name, paper's row name, model name, last_relu) of a Table 1 row."""
  if name not in TRUNK_NAMES:
    raise ValueError(f"Unknown trunk {name!r}; Table 1's trunks: {', '.join(TRUNK_NAMES)}.")
  return TRUNKS[TRUNK_NAMES.index(name)]


def label(task: str) -> str:
  """A task's column name: the paper's, else the task's own name."""
  return LABELS.get(task, task)


def widths(task: str) -> Tuple[int, ...]:
  """The widths k of a task's Table 1 cells."""
  return PAPER[task][1] if task in PAPER else DEFAULT_WIDTHS


def cell_config(task: str, trunk_name: str, k: int) -> str:
  """A committed Table 1 cell's config, relative to the checkout."""
  return f"configs/{task}/imagenet_{trunk_name}_k{k}.gin"


def task_config(task: str) -> str:
  """A task's ImageNet settings, which every cell of it includes."""
  return f"configs/common/{task}_imagenet.gin"


def table1_cells() -> List[Tuple[str, str, int]]:
  """The 72 (task, trunk, k) cells, column by column."""
  return [(task, trunk_name, k) for task, _, ks in TASKS for k in ks
          for trunk_name in TRUNK_NAMES]


# The Fashion-MNIST miniature of Table 1 (configs/miniature/, docs/miniature/):
# fewer cells with a few epochs each (docs/miniature/regime_search.md), all at
# k = 1 in patch mode. Every task, Rnd and supervised on ResNet50 v2; on
# RevNet50, the paper's best rotation trunk, Rnd, supervised, rotation and the
# two patch tasks (the cheapest cells: about 10 minutes each), so three
# pretext tasks rank the same two architectures (the paper's first claim)
# and exemplar, the dearest, runs once. Every cell also trains the MLP
# head (Fig. 3) on its cached pre_logits; the Rnd cell of the first trunk scores
# the pixels control. A task this list does not name runs on the first trunk.
MINIATURE_TASKS = ("random_init", "rotation", "exemplar", "relative_patch_location",
                   "jigsaw", "supervised")
MINIATURE_WIDTHS = (1,)
MINIATURE_TRUNKS = ("resnet50_v2", "revnet50")
MINIATURE_SECOND_TRUNK_TASKS = ("random_init", "supervised", "rotation",
                                "relative_patch_location", "jigsaw")
MINIATURE_LINEAR = ("linear_lbfgs", "pre_logits", 1.0, "val")
MINIATURE_MLP = ("mlp_sgd_features", "pre_logits", 1.0, "val")
MINIATURE_LAYERS = ("block1", "block2", "block3", "block4", "pre_logits")
# Fig. 5 at equal dimension: every end point pooled to pre_logits' size at k = 1
# (512), so "the layer learned more" is told apart from "the layer has more
# numbers"; the Rnd cells give each layer's random-trunk control.
MINIATURE_FIG5 = dict(tasks=("random_init", "rotation"), width=1, fraction=1.0,
                      trunks=MINIATURE_TRUNKS, pool_to_features=512)


def miniature_config(task: str) -> str:
  return f"configs/miniature/{task}.gin"
# Fig. 6 in miniature (grid `miniature_fig6`, run after `miniature` into the
# same root): rotation on RevNet50 with a linear bottleneck of 512 or 2048
# (pre_logits is 512 x k without one) at k = 1 and 2, so width at a fixed
# size and size at a fixed width are both measured; each run also scores
# the random trunk of its own model and the pixels, the controls its steps
# are read against.
MINIATURE_FIG6 = dict(task="rotation", trunk="revnet50", widths=(1, 2),
                      sizes=(512, 2048))
