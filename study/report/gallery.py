"""The nearest-neighbour gallery: for each task's best run, a few held-out
images and their nearest training images by the trunk's pre_logits.

The neighbours are the kNN protocol's search (evaluation/knn.py) over the
features the run's evaluation cached (read through evaluation/feature_cache.py);
nothing is extracted here. TensorFlow: the one part of the report that needs it
(images are read with the dataset registry, neighbours searched as kNN does).
"""
import glob
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from evaluation import feature_cache  # noqa: E402
from evaluation import knn  # noqa: E402
from study.report.runs import (TASK_ORDER, Run, in_order, read_json,  # noqa: E402
                               table1_entry, table1_value, table_runs, task_label)
from training import workdir as workdir_lib  # noqa: E402

GALLERY_QUERIES, GALLERY_NEIGHBOURS = 6, 5


def query_indices(n: int, count: int = GALLERY_QUERIES) -> np.ndarray:
  """`count` evenly spaced indices in [0, n), the same on every build."""
  return np.unique(np.linspace(0, n - 1, min(count, n)).astype(np.int64))


def cache_root(run: Run) -> str:
  """Where the run's evaluation cached its features (feature_cache.root, else
  the workdir's own)."""
  root = run.gin.get("feature_cache.root", "None").strip("'\"")
  return workdir_lib.Workdir(run.path).features if root == "None" else root


def find_cached(run: Run, split: str, layer: str = "pre_logits",
                pooling: Optional[str] = None
                ) -> Optional[Tuple[np.ndarray, np.ndarray]]:
  """(features [N, D] memory-mapped, labels [N]) the run's final trunk cached
  for (split, layer), or None.

  The entry's full key (dataset size, preprocessing, checkpoint files) is not
  known here, so the stored keys are matched on what is; the cache itself then
  reads the entry back, checking it is whole and stored where its key says.
  """
  root = cache_root(run)
  found = []
  for key_path in glob.glob(os.path.join(glob.escape(root), "*", "key.json")):
    try:
      key = read_json(key_path)
    except ValueError:
      continue
    trunk = key.get("trunk", {})
    if (key.get("split") == split and key.get("layer") == layer
        and key.get("dataset") == run.dataset and trunk.get("kind") == "checkpoint"
        and trunk.get("step") == run.steps
        and (pooling is None or key.get("pooling") == pooling)):
      found.append((os.path.getmtime(key_path), key))
  # Several (a resumed run's rewritten checkpoint): the newest that reads back.
  for _, key in sorted(found, key=lambda f: f[0], reverse=True):
    cache = feature_cache.FeatureCache(root, dtype=key.get("dtype", "float32"))
    hit = cache.load(key)
    if hit is not None:
      return hit
  return None


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
    for run in table_runs(runs, dataset):
      value = table1_value(run)
      if value is not None and (run.task not in best or value > best[run.task][0]):
        best[run.task] = (value, run)
    for task in in_order(best, TASK_ORDER):
      run = best[task][1]
      entry = table1_entry(run)
      split = entry.get("eval_split", "val")
      queries = find_cached(run, split, pooling=entry.get("pooling"))
      references = find_cached(run, "train", pooling=entry.get("pooling"))
      what = f"{task_label(task)} ([{run.anchor}](#{run.anchor}), {run.label()})"
      if not (queries and references):
        lines.append(f"- {what}: no cached pre_logits features of step {run.steps} for "
                     f"`{split}` and `train` under `{run.rel}`; no gallery.")
        continue
      (query, q_labels), (reference, r_labels) = queries, references
      qi = query_indices(len(query))
      _, nn = knn.nearest(reference, query[qi], min(GALLERY_NEIGHBOURS, len(reference)))
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
