"""The compute of Table 1 and Table 2, counted from models/flops.py."""
from typing import Tuple

from study.grid import cells

# ImageNet as the study splits it (docs/protocol.md §7).
IMAGENET_TRAIN = 1_281_167 - 50_000
IMAGENET_TRAINVAL = 1_281_167
IMAGENET_TEST = 50_000
# Network inputs per training image of the tasks that see whole images.
COPIES = {"rotation": 4, "exemplar": 8, "random_init": 0}


def cell_flops(task: str, trunk: str, k: int) -> Tuple[float, float]:
  """(training, Table 1 evaluation) FLOPs of one cell, from models/flops.py.

  Training: 3 x forward (forward + backward) of every network input per image
  (rotation 4 copies at 224, exemplar 8 crops at 224, the patch tasks 9 patches
  of 64 px in patch mode plus their head), over docs/protocol.md §4's 35 epochs of `train`.
  Evaluation: one forward of the representation (9 patches for the patch
  tasks) of every `train` and `val` image; L-BFGS runs on the host.
  """
  from models import flops  # pylint: disable=g-import-not-at-top  (only `cost` needs it)
  if task not in cells.PATCH_TASKS and task not in COPIES:
    raise ValueError(f"No compute model for task {task!r}: add its network inputs "
                     f"per image to study/grid/cost.py's COPIES.")
  model = cells.trunk(trunk)[2]
  full = flops.count_flops(model, k, image_size=224)
  patch = flops.count_flops(model, k, image_size=64, patch_mode=True,
                            num_classes=1000)
  if task in cells.PATCH_TASKS:
    fc = 2 * 4096 * (9000 + 100) * 8 if task == "jigsaw" else 2 * 4096 * (2000 + 8) * 8
    per_image, represent = 9 * patch + fc, 9 * patch
  else:
    per_image, represent = COPIES[task] * full, full
  epochs = 0 if task == "random_init" else 35
  return (3 * per_image * IMAGENET_TRAIN * epochs,
          represent * (IMAGENET_TRAIN + 50_000))


def cost_table(tflops: float) -> str:
  """Compute per Table 1 column and trunk, and days at `tflops` sustained."""
  days = lambda f: f / (tflops * 1e12) / 86400  # noqa: E731
  lines = [f"Table 1 compute (EFLOP = 1e18; days at {tflops:g} TFLOP/s sustained):",
           f"{'cell':44s} {'train EFLOP':>11s} {'eval EFLOP':>10s} {'days':>7s}"]
  total = 0.0
  for task, _, widths in cells.TASKS:
    column = 0.0
    for k in widths:
      for trunk in cells.TRUNK_NAMES:
        train, evaluate = cell_flops(task, trunk, k)
        column += train + evaluate
        lines.append(f"{task + '/' + trunk + '_k' + str(k):44s} {train / 1e18:11.2f} "
                     f"{evaluate / 1e18:10.3f} {days(train + evaluate):7.2f}")
    total += column
    lines.append(f"{'  column ' + task:44s} {column / 1e18:22.2f} {days(column):7.1f}")
  lines.append(f"{'Table 1 (72 cells)':44s} {total / 1e18:22.2f} {days(total):7.1f}")
  table2 = 0.0
  for task, trunk, k, _ in cells.TABLE2:
    _, evaluate = cell_flops(task, trunk, k)
    per_image = evaluate / (IMAGENET_TRAIN + 50_000)
    # 70 epochs of trainval through the frozen trunk, then test once.
    table2 += per_image * (70 * IMAGENET_TRAINVAL + IMAGENET_TEST)
  lines.append(f"{'Table 2 (4 SGD evaluations, 70 epochs)':44s} {table2 / 1e18:22.2f} "
               f"{days(table2):7.1f}")
  return "\n".join(lines)
