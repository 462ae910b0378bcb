"""The paper's figures (2 to 8) from a sweep's runs, as PNG files. TF-free."""
import collections
import os
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from study.grid import cells as study_cells  # noqa: E402
from study.report import controls as controls_lib  # noqa: E402
from study.report.runs import (LAYER_ORDER, MISSING, TASK_ORDER, Run,  # noqa: E402
                               in_order, pick, row_label, table1_entry, table1_value,
                               task_label)
from study.report.tables import rows_and_columns  # noqa: E402

MLP_PROTOCOLS = ("mlp_sgd", "mlp_sgd_features")


def _colour(trunk: str):
  names = list(study_cells.TRUNK_NAMES)
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
    rows, columns = rows_and_columns(cells)
    tasks = list(dict.fromkeys(t for t, _ in columns))
    width = 0.8 / len(rows)
    for i, trunk in enumerate(rows):
      best = [max([c.value for k, c in cells.items()
                   if k[:2] == (trunk, t) and not c.failed],
                  default=np.nan) for t in tasks]
      ax.bar(np.arange(len(tasks)) + (i - (len(rows) - 1) / 2) * width, best, width,
             label=row_label(trunk), color=_colour(trunk))
    # The pixels control, scored like the cells (tables.judge found it).
    pixels = {c.controls["pixels"]["top1"] for c in cells.values()
              if c.controls.get("pixels")}
    for value in sorted(pixels):
      ax.axhline(value, color="k", ls="--", lw=0.8,
                 label=f"pixels {value:.1f}")
    ax.set_xticks(range(len(tasks)), [task_label(t) for t in tasks], rotation=20)
    ax.set_ylabel("linear top-1 %")
    ax.set_title(target if source == target else f"{source} → {target}")
    ax.legend(fontsize=7)
  return _save(fig, fig_dir, "fig2_best_width.png")


def mlp_pairs(runs: Sequence[Run], keep_failed: bool = False) -> List[Tuple]:
  """[(run, linear top-1, MLP top-1)] on the same trunk, layer and (if any)
  split, leaving out pairs where either fit never left chance
  (controls.failed_fit); keep_failed: every pair, as (run, linear, MLP,
  the MLP entry)."""
  pairs = []
  for run in runs:
    lin = table1_entry(run)
    mlp = lin and pick(run.evaluations, prefer_splits=(lin.get("eval_split"),),
                       protocol=MLP_PROTOCOLS, layer="pre_logits", fraction=1.0,
                       trunk=lin["trunk"], dataset=run.dataset)
    if not mlp:
      continue
    if keep_failed:
      pairs.append((run, lin["top1"], mlp["top1"], mlp))
    elif not (controls_lib.failed_fit(lin) or controls_lib.failed_fit(mlp)):
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
  for trunk in in_order((r.trunk for r, _, _ in pairs), study_cells.TRUNK_NAMES):
    ax.scatter([], [], color=_colour(trunk), label=row_label(trunk))
  for task in in_order((r.task for r, _, _ in pairs), TASK_ORDER):
    ax.scatter([], [], color="grey", marker=_marker(task), label=task_label(task))
  ax.set_xlabel("linear (L-BFGS) top-1 %")
  ax.set_ylabel("MLP top-1 %")
  ax.legend(fontsize=7)
  return _save(fig, fig_dir, "fig3_linear_vs_mlp.png")


def ranking_lines(pairs) -> List[str]:
  """Whether linear and MLP order the trunks of each task alike."""
  lines = []
  for task in in_order((r.task for r, _, _ in pairs), TASK_ORDER):
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
  tasks = in_order((p["run"].task for p in points), TASK_ORDER)
  widest = max(p["run"].width or 1 for p in points)
  fig, axes = _panels(len(tasks))
  for ax, task in zip(axes, tasks):
    for trunk in in_order((p["run"].trunk for p in points), study_cells.TRUNK_NAMES):
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
  tasks = in_order((r.task for r, _, _ in series), TASK_ORDER)
  fig, axes = _panels(len(tasks))
  for ax, task in zip(axes, tasks):
    panel = [s for s in series if s[0].task == task]
    layers = in_order((l for _, _, v in panel for l in v), LAYER_ORDER)
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
  tasks = in_order((task for task, _ in series), TASK_ORDER)
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

