"""The paper's figures (2 to 8) from a sweep's runs, as PNG files. TF-free."""
import collections
import os
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from study.grid import cells as study_cells  # noqa: E402
from study.report import baselines  # noqa: E402
from study.report import controls as controls_lib  # noqa: E402
from study.report.runs import (LAYER_ORDER, TASK_ORDER, Run, in_order,  # noqa: E402
                               pick, row_label, table1_entry, task_label)
from study.report.tables import rows_and_columns  # noqa: E402

MLP_PROTOCOLS = ("mlp_sgd", "mlp_sgd_features")


def colour(trunk: str):
  names = list(study_cells.TRUNK_NAMES)
  index = names.index(trunk) if trunk in names else len(names) + sum(map(ord, trunk)) % 4
  return plt.get_cmap("tab10")(index % 10)


def _marker(task: str) -> str:
  markers = "os^DvPX*h"
  order = list(TASK_ORDER)
  return markers[order.index(task) % len(markers)] if task in order else "X"


# Panels per row: the miniature's seven tasks in one row would be unreadable.
MAX_COLUMNS = 4


def panels(n: int, size=(4.5, 3.6)):
  """(figure, n axes) in rows of up to MAX_COLUMNS, each panel `size` inches."""
  columns = min(n, MAX_COLUMNS)
  rows = -(-n // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(size[0] * columns, size[1] * rows),
                           squeeze=False)
  for ax in axes.flat[n:]:
    ax.set_visible(False)
  return fig, list(axes.flat[:n])


def save(fig, fig_dir: str, name: str) -> str:
  os.makedirs(fig_dir, exist_ok=True)
  fig.tight_layout()
  fig.savefig(os.path.join(fig_dir, name), dpi=100)
  plt.close(fig)
  return name


def fig2_best_width(tables, fig_dir: str) -> Optional[str]:
  """Grouped bars: x = task, one bar per trunk (its best width); panel per table."""
  if not tables:
    return None
  fig, axes = panels(len(tables), (5.5, 3.8))
  for ax, (source, target, cells) in zip(axes, tables):
    rows, columns = rows_and_columns(cells)
    tasks = list(dict.fromkeys(t for t, _ in columns))
    width = 0.8 / len(rows)
    for i, trunk in enumerate(rows):
      best = [max([c.value for k, c in cells.items()
                   if k[:2] == (trunk, t) and not c.failed],
                  default=np.nan) for t in tasks]
      ax.bar(np.arange(len(tasks)) + (i - (len(rows) - 1) / 2) * width, best, width,
             label=row_label(trunk), color=colour(trunk))
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
  return save(fig, fig_dir, "fig2_best_width.png")


def mlp_pairs(runs: Sequence[Run], keep_failed: bool = False) -> List[Tuple]:
  """[(run, linear top-1, MLP top-1, linear entry, MLP entry)] on the same
  trunk, layer and (if any) split, leaving out pairs where either fit never
  left chance (controls.failed_fit) unless keep_failed."""
  pairs = []
  for run in runs:
    lin = table1_entry(run)
    mlp = lin and pick(run.evaluations, prefer_splits=(lin.get("eval_split"),),
                       protocol=MLP_PROTOCOLS, layer="pre_logits", fraction=1.0,
                       trunk=lin["trunk"], dataset=run.dataset)
    if not mlp:
      continue
    if keep_failed or not (controls_lib.failed_fit(lin) or controls_lib.failed_fit(mlp)):
      pairs.append((run, lin["top1"], mlp["top1"], lin, mlp))
  return pairs


def _control_pairs(runs: Sequence[Run], pairs) -> List[Tuple[str, str, float, float]]:
  """[(kind, trunk, linear top-1, MLP top-1)] of the pairs' controls (pixels
  once; the random trunk of each pair's architecture and width once)."""
  out, seen = [], set()
  for run, _, _, lin, mlp in pairs:
    a, b = baselines.controls_for(runs, run, lin), baselines.controls_for(runs, run, mlp)
    for kind in controls_lib.CONTROLS:
      key = (kind, None if kind == "pixels" else (run.trunk, run.width))
      if a[kind] and b[kind] and key not in seen:
        seen.add(key)
        out.append((kind, run.trunk, a[kind]["top1"], b[kind]["top1"]))
  return out


def fig3_linear_vs_mlp(pairs, fig_dir: str, runs: Sequence[Run] = ()) -> Optional[str]:
  if not pairs:
    return None
  fig, (ax,) = panels(1, (5.5, 4.5))
  values = []
  for run, x, y, lin, mlp in pairs:
    marked = baselines.mark_for(runs, run, lin) or baselines.mark_for(runs, run, mlp)
    ax.scatter(x, y, marker=_marker(run.task), s=40, edgecolors=colour(run.trunk),
               facecolors="none" if marked else colour(run.trunk))
    if marked:
      ax.annotate(controls_lib.MARK, (x, y), textcoords="offset points", xytext=(4, 2))
    values += [x, y]
  for kind, trunk, x, y in _control_pairs(runs, pairs):
    ax.scatter(x, y, marker="x" if kind == "pixels" else "+", s=60,
               color="k" if kind == "pixels" else colour(trunk))
    values += [x, y]
  ax.plot([min(values), max(values)], [min(values), max(values)], "k--", lw=0.8)
  for trunk in in_order((p[0].trunk for p in pairs), study_cells.TRUNK_NAMES):
    ax.scatter([], [], color=colour(trunk), label=row_label(trunk))
  for task in in_order((p[0].task for p in pairs), TASK_ORDER):
    ax.scatter([], [], color="grey", marker=_marker(task), label=task_label(task))
  ax.scatter([], [], color="k", marker="x", label="pixels (control)")
  ax.scatter([], [], color="grey", marker="+", label="random trunk (control)")
  ax.scatter([], [], edgecolors="grey", facecolors="none",
             label=f"{controls_lib.MARK} not above both controls")
  ax.set_xlabel("linear (L-BFGS) top-1 %")
  ax.set_ylabel("MLP top-1 %")
  ax.legend(fontsize=7)
  return save(fig, fig_dir, "fig3_linear_vs_mlp.png")


def _ranked(group, i: int, marks) -> str:
  """'A > B ≈ C': the group's labels by top-1 (i: 1 linear, 2 MLP), '≈'
  between neighbours within controls.Z standard errors of each other."""
  ordered = sorted(group, key=lambda p: (-p[i], p[0].id))
  text = ordered[0][0].label() + marks[(ordered[0][0].id, i)]
  for above, below in zip(ordered, ordered[1:]):
    diff = controls_lib.difference(above[i + 2], below[i + 2])
    tie = diff is not None and diff[0] <= controls_lib.Z * diff[1]
    text += (" ≈ " if tie else " > ") + below[0].label() + marks[(below[0].id, i)]
  return text


def _resolved(a, b, i: int) -> int:
  """+1 / -1: a above / below b by more than Z standard errors (or, without
  them, at all); 0: within them."""
  diff = controls_lib.difference(a[i + 2], b[i + 2])
  d = a[i] - b[i] if diff is None else diff[0]
  if diff is not None and abs(d) <= controls_lib.Z * diff[1]:
    return 0
  return (d > 0) - (d < 0)


def ranking_lines(pairs, runs: Sequence[Run] = ()) -> List[str]:
  """Whether linear and MLP order the trunks of each task alike: '≈' joins
  neighbours within 2 standard errors, a label marked controls.MARK does not
  beat both controls under that protocol, and orders that differ only
  within 2 standard errors are said to."""
  lines = []
  for task in in_order((p[0].task for p in pairs), TASK_ORDER):
    group = [p for p in pairs if p[0].task == task]
    if len(group) < 2:
      continue
    marks = {(p[0].id, i): baselines.mark_for(runs, p[0], p[i + 2])
             for p in group for i in (1, 2)}
    order = lambda i: [p[0].id for p in  # noqa: E731  (i: 1 linear, 2 MLP)
                       sorted(group, key=lambda p: (-p[i], p[0].id))]
    line = f"- {task_label(task)}: linear ranks {_ranked(group, 1, marks)}; MLP "
    if order(1) == order(2):
      line += "agrees."
    else:
      opposite = any(_resolved(a, b, 1) * _resolved(a, b, 2) < 0
                     for a in group for b in group if a is not b)
      line += ("differs: " if opposite else
               f"differs only within {controls_lib.Z:g} standard errors: ") + _ranked(
                   group, 2, marks) + "."
    lines.append(line)
  return lines


def level(ax, value: float, label: str, style: str = "--") -> None:
  ax.axhline(value, color="k", ls=style, lw=0.8, label=label)


def fig4_pretext(points, fig_dir: str, runs: Sequence[Run] = ()) -> Optional[str]:
  """Pretext accuracy vs downstream top-1; panel per task, size = width;
  hollow (and listed with controls.MARK): not above both controls; the
  pixels level dashed, each trunk's random trunk dotted in its colour."""
  points = [p for p in points if p["pretext"] is not None]
  if not points:
    return None
  tasks = in_order((p["run"].task for p in points), TASK_ORDER)
  widest = max(p["run"].width or 1 for p in points)
  fig, axes = panels(len(tasks))
  for ax, task in zip(axes, tasks):
    levels = {}
    for trunk in in_order((p["run"].trunk for p in points), study_cells.TRUNK_NAMES):
      group = [p for p in points if p["run"].task == task and p["run"].trunk == trunk]
      if not group:
        continue
      entries = [table1_entry(p["run"]) for p in group]
      marked = [bool(baselines.mark_for(runs, p["run"], e)) for p, e in zip(group, entries)]
      ax.scatter([p["pretext"] for p in group], [p["top1"] for p in group],
                 s=[20 + 160 * (p["run"].width or 1) / widest for p in group],
                 edgecolors=colour(trunk), label=row_label(trunk), alpha=0.8,
                 facecolors=[("none" if m else colour(trunk)) for m in marked])
      for p, e in zip(group, entries):
        found = baselines.controls_for(runs, p["run"], e)
        if found["pixels"]:
          levels["pixels"] = found["pixels"]["top1"]
        if found["random"]:
          levels[(trunk, p["run"].width)] = found["random"]["top1"]
    for key, value in sorted(levels.items(), key=str):
      if key == "pixels":
        level(ax, value, f"pixels {value:.1f}")
      else:
        ax.axhline(value, color=colour(key[0]), ls=":", lw=0.8,
                   label=f"random {row_label(key[0])} k={key[1]}")
    ax.set_title(task_label(task))
    ax.set_xlabel("pretext accuracy %")
    ax.set_ylabel("linear top-1 %")
    ax.legend(fontsize=7)
  return save(fig, fig_dir, "fig4_pretext_vs_downstream.png")


def layer_series(runs: Sequence[Run]
                 ) -> List[Tuple[Run, float, Dict[str, Dict], Optional[int]]]:
  """[(run, fraction, {layer: entry}, equal-dimension size or None)] of runs
  scored on >= 3 layers at one fraction and one pooled size; a run scored at
  equal dimension (baselines.pooled_to) shows that series."""
  series = []
  for run in runs:
    groups = collections.defaultdict(dict)
    for e in run.evaluations:
      if (e["protocol"] == "linear_lbfgs" and e["trunk"] == f"trained@{run.steps}"
          and e["dataset"] == run.dataset):
        key = (float(e.get("fraction", 1.0)), baselines.pooled_to(e))
        groups[key][e["layer"]] = pick(
            run.evaluations, protocol="linear_lbfgs", layer=e["layer"],
            fraction=key[0], trunk=e["trunk"], dataset=run.dataset,
            settings=lambda s, size=key[1]: (s or {}).get("pool_to_features") == size)
    usable = {k: v for k, v in groups.items() if len(v) >= 3}
    if usable:  # equal dimension, all labels if possible, else most layers
      f, size = max(usable, key=lambda k: (k[1] is not None, k[0] == 1.0,
                                           len(usable[k]), k[0], k[1] or 0))
      series.append((run, f, usable[(f, size)], size))
  return series


def fig5_layers(series, fig_dir: str, runs: Sequence[Run] = ()) -> Optional[str]:
  """Top-1 by end point, one line per trained run, its random trunk's curve
  dashed beside it and the pixels level dotted; hollow: not above both
  controls at that layer."""
  if not series:
    return None
  tasks = in_order((s[0].task for s in series), TASK_ORDER)
  fig, axes = panels(len(tasks))
  for ax, task in zip(axes, tasks):
    panel = [s for s in series if s[0].task == task]
    layers = in_order((l for s in panel for l in s[2]), LAYER_ORDER)
    pixels = set()
    for run, _, entries, _ in panel:
      x = [i for i, l in enumerate(layers) if l in entries]
      tint = colour(run.trunk)
      ax.plot(x, [entries[layers[i]]["top1"] for i in x], color=tint,
              label=run.label())
      found = [baselines.controls_for(runs, run, entries[layers[i]]) for i in x]
      marked = [bool(baselines.mark_for(runs, run, entries[layers[i]])) for i in x]
      ax.scatter(x, [entries[layers[i]]["top1"] for i in x], edgecolors=tint,
                 facecolors=[("none" if m else tint) for m in marked], zorder=3)
      rnd = [(i, c["random"]["top1"]) for i, c in zip(x, found) if c["random"]]
      if rnd:
        ax.plot(*zip(*rnd), ls="--", marker="+", color=tint,
                label=f"random {run.label()}")
      pixels |= {c["pixels"]["top1"] for c in found if c["pixels"]}
    for value in sorted(pixels):
      level(ax, value, f"pixels {value:.1f}", ":")
    ax.set_xticks(range(len(layers)), layers, rotation=30)
    ax.set_title(task_label(task))
    ax.set_ylabel("linear top-1 %")
    ax.legend(fontsize=7)
  return save(fig, fig_dir, "fig5_layers.png")


def low_data_series(runs: Sequence[Run]) -> Dict[Tuple[str, str], Dict[float, Dict]]:
  """{(task, trunk): {fraction: {width: (top-1, run, entry)}}} for trunks with
  fraction < 1."""
  series = collections.defaultdict(lambda: collections.defaultdict(dict))
  for run in runs:
    for e in run.evaluations:
      if (e["protocol"] == "linear_lbfgs" and e["layer"] == "pre_logits"
          and e["trunk"] == f"trained@{run.steps}" and e["dataset"] == run.dataset):
        f = float(e.get("fraction", 1.0))
        chosen = pick(run.evaluations, protocol="linear_lbfgs", layer="pre_logits",
                      fraction=f, trunk=e["trunk"], dataset=run.dataset)
        series[(run.task, run.trunk)][f][run.width] = (chosen["top1"], run, chosen)
  return {k: v for k, v in series.items() if any(f < 1 for f in v)}


def fig7_by_width(series) -> bool:
  """Whether Fig. 7 is drawn by width (the runs span several), else by the
  labelled fraction."""
  return len({w for v in series.values() for by_width in v.values()
              for w in by_width}) > 1


def _fig7_by_fraction(ax, task, series, runs) -> None:
  """One width: x = the fraction of the labels, a line per trunk, its random
  trunk dashed ('+'), the pixels dotted ('x'); hollow: not above both
  controls."""
  fractions = sorted({f for (t, _), v in series.items() if t == task for f in v})
  x = {f: i for i, f in enumerate(fractions)}
  pixels = {}
  for (t, trunk), by_fraction in series.items():
    if t != task:
      continue
    tint = colour(trunk)
    points = [(f, p) for f in sorted(by_fraction) for p in by_fraction[f].values()]
    xs = [x[f] for f, _ in points]
    ax.plot(xs, [p[0] for _, p in points], "-", color=tint, label=row_label(trunk))
    ax.scatter(xs, [p[0] for _, p in points], edgecolors=tint, zorder=3,
               facecolors=[("none" if baselines.mark_for(runs, p[1], p[2]) else tint)
                           for _, p in points])
    found = [(f, baselines.controls_for(runs, p[1], p[2])) for f, p in points]
    rnd = [(x[f], c["random"]["top1"]) for f, c in found if c["random"]]
    if rnd:
      ax.plot(*zip(*rnd), "--", marker="+", color=tint, alpha=0.6,
              label=f"random {row_label(trunk)}")
    pixels.update({f: c["pixels"]["top1"] for f, c in found if c["pixels"]})
  if pixels:
    ax.plot([x[f] for f in sorted(pixels)], [pixels[f] for f in sorted(pixels)],
            ":", marker="x", color="k", lw=0.8, label="pixels")
  ax.set_xticks(range(len(fractions)), [f"{f:.0%}" for f in fractions])
  ax.set_xlabel("labelled fraction of train")


def _fig7_by_width(ax, task, series, runs) -> None:
  """Several widths: x = width, a line per trunk and fraction, the random
  trunk of each width dashed ('+'), the pixels level at each fraction."""
  styles = ["-", "--", ":", "-."]
  pixels = {}
  for (t, trunk), by_fraction in series.items():
    if t != task:
      continue
    tint = colour(trunk)
    for i, f in enumerate(sorted(by_fraction, reverse=True)):
      widths = sorted(by_fraction[f])
      points = [by_fraction[f][w] for w in widths]
      ax.plot(widths, [p[0] for p in points], styles[i % 4], color=tint,
              label=f"{row_label(trunk)}, {f:.0%}")
      ax.scatter(widths, [p[0] for p in points], edgecolors=tint, zorder=3,
                 facecolors=[("none" if baselines.mark_for(runs, p[1], p[2]) else tint)
                             for p in points])
      found = [baselines.controls_for(runs, p[1], p[2]) for p in points]
      rnd = [(w, c["random"]["top1"]) for w, c in zip(widths, found) if c["random"]]
      if rnd:
        ax.plot(*zip(*rnd), "--", marker="+", color=tint, alpha=0.6,
                label=f"random {row_label(trunk)}, {f:.0%}")
      pixels.update({f: c["pixels"]["top1"] for c in found if c["pixels"]})
  for i, (f, value) in enumerate(sorted(pixels.items(), reverse=True)):
    level(ax, value, f"pixels, {f:.0%}: {value:.1f}", styles[i % 4])
  ax.set_xticks(sorted({w for (t, _), v in series.items() if t == task
                        for by_width in v.values() for w in by_width}))
  ax.set_xlabel("width k")


def fig7_low_data(series, fig_dir: str, runs: Sequence[Run] = ()) -> Optional[str]:
  """Top-1 with all and with a fraction of the labels, a panel per task: by
  width when the runs span several (the paper's Fig. 7), else by fraction (a
  width axis with one tick would stack every point on it)."""
  if not series:
    return None
  draw = _fig7_by_width if fig7_by_width(series) else _fig7_by_fraction
  tasks = in_order((task for task, _ in series), TASK_ORDER)
  fig, axes = panels(len(tasks))
  for ax, task in zip(axes, tasks):
    draw(ax, task, series, runs)
    ax.set_title(task_label(task))
    ax.set_ylabel("linear top-1 %")
    ax.legend(fontsize=7)
  return save(fig, fig_dir, "fig7_low_data.png")


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
  fig, axes = panels(len(protocols), (5.5, 4.0))
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
  return save(fig, fig_dir, "fig8_sgd_curves.png")

