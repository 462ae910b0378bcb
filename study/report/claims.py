"""Two of the paper's claims tested without their confounds (docs/protocol.md §9):

  Fig. 6   wider is better: width at a fixed representation size and size at
           a fixed width, each beside the random trunk of the same model, so
           width and dimension are told apart; which step exceeds 2 SE
  MLP      linear vs MLP needs MLP heads trained to convergence: each fit's
           curve, and a fit whose last epochs still gained more than one
           standard error flagged "not converged"

TF-free.
"""
import collections
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib.pyplot as plt

from study.report import baselines
from study.report import controls as controls_lib
from study.report.figures import MLP_PROTOCOLS, colour, level, panels, save
from study.report.runs import (TASK_ORDER, Run, in_order, pick, row_label, table1_entry,
                               task_label)

# "The last epochs": the final fifth of a curve's epochs (at least its last
# two points).
CONVERGENCE_TAIL = 0.2


# --------------------------------------------------------------------- Fig. 6


def bottleneck_points(runs: Sequence[Run]
                      ) -> Dict[Tuple[str, str, str], Dict[Tuple[int, int], Tuple]]:
  """{(dataset, task, trunk): {(width, size): (run, entry)}} of the runs with a
  representation bottleneck (grid `fig6`, `miniature_fig6`)."""
  points = collections.defaultdict(dict)
  for run in runs:
    e = table1_entry(run)
    if run.representation_size is None or not e or run.is_rnd:
      continue
    if not controls_lib.failed_fit(e):
      points[(run.dataset, run.task, run.trunk)][(run.width, run.representation_size)] = (
          run, e)
  return dict(points)


def axes_of(values: Dict) -> List[Tuple[str, int, List[Tuple[int, int]]]]:
  """[(axis, fixed value, [(width, size) in order])]: width at each fixed
  size, then size at each fixed width; lines of two or more points only."""
  out = []
  for size in sorted({s for _, s in values}):
    line = sorted(k for k in values if k[1] == size)
    if len(line) > 1:
      out.append(("width", size, line))
  for width in sorted({w for w, _ in values}):
    line = sorted(k for k in values if k[0] == width)
    if len(line) > 1:
      out.append(("size", width, line))
  return out


def fig6_axes(points, fig_dir: str, runs: Sequence[Run] = ()) -> Optional[str]:
  """Up to two panels per (dataset, task, trunk): top-1 against width (one
  line per representation size) and against size (one line per width); each
  model's random trunk dashed, pixels dotted; hollow: not above both controls."""
  drawn = [(key, values, axis) for key, values in sorted(points.items())
           for axis in ("width", "size") if any(l[0] == axis for l in axes_of(values))]
  if not drawn:
    return None
  fig, axes = panels(len(drawn), (4.5, 3.8))
  for ax, ((dataset, task, trunk), values, axis) in zip(axes, drawn):
    pixels = set()
    lines = [l for l in axes_of(values) if l[0] == axis]
    for n, (_, fixed, keys) in enumerate(lines):
      c = plt.get_cmap("tab10")(n % 10)
      x = [k[0] if axis == "width" else k[1] for k in keys]
      y = [values[k][1]["top1"] for k in keys]
      label = f"size {fixed}" if axis == "width" else f"k={fixed}"
      ax.plot(x, y, color=c, label=label)
      marked = [bool(baselines.mark_for(runs, *values[k])) for k in keys]
      ax.scatter(x, y, edgecolors=c, facecolors=["none" if m else c for m in marked],
                 zorder=3)
      found = [baselines.controls_for(runs, *values[k]) for k in keys]
      rnd = [(xi, f["random"]["top1"]) for xi, f in zip(x, found) if f["random"]]
      if rnd:
        ax.plot(*zip(*rnd), ls="--", marker="+", color=c, label=f"random, {label}")
      pixels |= {f["pixels"]["top1"] for f in found if f["pixels"]}
    for value in sorted(pixels):
      level(ax, value, f"pixels {value:.1f}", ":")
    ticks = sorted({k[0] if axis == "width" else k[1] for k in values})
    if axis == "size":
      ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("width k" if axis == "width" else "representation size")
    ax.set_ylabel("linear top-1 %")
    ax.set_title(f"{task_label(task)}, {row_label(trunk)} ({dataset}): by {axis}")
    ax.legend(fontsize=7)
  return save(fig, fig_dir, "fig6_width_x_representation.png")


def step_text(a: Dict, b: Dict) -> str:
  """'+1.3 ± 0.6 (exceeds 2 SE)' for b minus a, or '+1.3' without SEs."""
  diff = controls_lib.difference(b, a)
  if diff is None:
    return f"{b['top1'] - a['top1']:+.1f} (no standard error)"
  d, se = diff
  beyond = abs(d) > controls_lib.Z * se
  return (f"{d:+.1f} ± {se:.1f} ("
          f"{'exceeds' if beyond else 'within'} {controls_lib.Z:g} SE)")


def fig6_lines(points, runs: Sequence[Run] = ()) -> List[str]:
  """One line per step along each axis: the trained model's difference, and
  its random trunk's, each against 2 standard errors of the difference."""
  lines = []
  for (dataset, task, trunk), values in sorted(points.items()):
    for axis, fixed, keys in axes_of(values):
      for a, b in zip(keys, keys[1:]):
        (run_a, e_a), (run_b, e_b) = values[a], values[b]
        step = (f"k={a[0]} → {b[0]} at size {fixed}" if axis == "width"
                else f"size {a[1]} → {b[1]} at k={fixed}")
        text = (f"- {task_label(task)}, {row_label(trunk)} ({dataset}), {step}: "
                f"{step_text(e_a, e_b)}")
        rnd_a = baselines.controls_for(runs, run_a, e_a)["random"]
        rnd_b = baselines.controls_for(runs, run_b, e_b)["random"]
        text += ("; its random trunk " + step_text(rnd_a, rnd_b) if rnd_a and rnd_b
                 else "; no random trunk of these models to compare")
        marks = [f"k={k[0]} size {k[1]}" for k in (a, b)
                 if baselines.mark_for(runs, *values[k])]
        if marks:
          text += (f"; {controls_lib.MARK} {' and '.join(marks)} not above both "
                   f"controls")
        lines.append(text + ".")
  return lines


# ------------------------------------------------------------- MLP convergence


def still_improving(entry: Dict) -> Optional[Tuple[float, float]]:
  """(gain over the curve's last epochs, the entry's standard error) when the
  gain exceeds one standard error (the fit is not converged), else None.

  The gain is the last point's top-1 minus that of the last point at or
  before (1 - CONVERGENCE_TAIL) of the final epoch (the point before the
  last when none is). None too without a curve of two points or a standard
  error: nothing to judge.
  """
  curve = [c for c in entry.get("curve") or [] if "top1" in c]
  se = controls_lib.standard_error(entry)
  if len(curve) < 2 or se is None:
    return None
  last = float(curve[-1]["epoch"])
  earlier = [c for c in curve[:-1] if float(c["epoch"]) <= (1 - CONVERGENCE_TAIL) * last]
  reference = earlier[-1] if earlier else curve[-2]
  gain = float(curve[-1]["top1"]) - float(reference["top1"])
  return (gain, se) if gain > se else None


def mlp_curves(runs: Sequence[Run]) -> List[Tuple[Run, Dict]]:
  """[(run, MLP entry with a curve)] of the runs' pre_logits MLP fits: each
  run's own trunk's, and each pixels fit once (a control's fit can fail too)."""
  out, pixels = [], set()
  for run in runs:
    for e in run.evaluations:
      if (e["protocol"] not in MLP_PROTOCOLS
          or not any("top1" in c for c in e.get("curve") or [])
          or e["dataset"] != run.dataset):
        continue
      if e["trunk"] == "pixels":
        key = (e["protocol"], e["dataset"], e.get("eval_split"), e.get("fraction", 1.0))
        if key not in pixels:
          pixels.add(key)
          out.append((run, e))
      elif e["layer"] == "pre_logits" and e["trunk"] == f"trained@{run.steps}":
        out.append((run, e))
  return out


def curve_group(run: Run, entry: Dict) -> str:
  """A fit's panel: its run's task, 'pixels' for the pixels control."""
  return "pixels" if entry["trunk"] == "pixels" else run.task


def fit_label(run: Run, entry: Dict) -> str:
  """'Rotation, ResNet50 v2 k=1' or 'pixels' (the fit's trunk)."""
  if entry["trunk"] == "pixels":
    return "pixels"
  return f"{task_label(run.task)}, {run.label()}"


def linear_of(run: Run, entry: Dict) -> Optional[Dict]:
  """The L-BFGS entry of the same trunk, layer, dataset, split and fraction
  as an MLP entry: what its MLP should at least match."""
  return pick(run.evaluations, prefer_splits=(entry.get("eval_split"),),
              protocol="linear_lbfgs", trunk=entry["trunk"], layer=entry["layer"],
              dataset=entry["dataset"], fraction=float(entry.get("fraction", 1.0)),
              settings=lambda s: not (s or {}).get("pool_to_features"))


def below_linear(lin: Optional[Dict], mlp: Dict) -> Optional[Tuple[float, float]]:
  """(MLP minus linear top-1, SE of the difference) when the MLP is below its
  linear probe beyond Z standard errors: an MLP head can fit what a linear
  one does, so it was not trained enough. None otherwise or without SEs."""
  diff = controls_lib.difference(mlp, lin) if lin else None
  if diff is None or diff[0] >= -controls_lib.Z * diff[1]:
    return None
  return diff


def mlp_problem(lin: Optional[Dict], mlp: Dict) -> Optional[str]:
  """Why an MLP fit is not counted in a claim: failed (never left chance), not
  converged (still_improving), below its linear probe; None for a usable fit."""
  if controls_lib.failed_fit(mlp) or (lin and controls_lib.failed_fit(lin)):
    return "failed (never left chance)"
  late = still_improving(mlp)
  if late:
    return f"not converged ({late[0]:+.1f} over its last epochs)"
  low = below_linear(lin, mlp)
  if low:
    return f"below its linear probe ({low[0]:+.1f} ± {low[1]:.1f})"
  return None


def fig3_curves(curves, fig_dir: str) -> Optional[str]:
  """Top-1 against epoch of every MLP fit, one panel per task (and one for
  the pixels); dashed: not converged or below its linear probe
  (mlp_problem), grey: a failed fit."""
  if not curves:
    return None
  groups = in_order((curve_group(r, e) for r, e in curves), TASK_ORDER)
  fig, axes = panels(len(groups), (4.5, 3.6))
  for ax, group in zip(axes, groups):
    for run, e in curves:
      if curve_group(run, e) != group:
        continue
      failed = controls_lib.failed_fit(e)
      curve = [c for c in e["curve"] if "top1" in c]
      label = run.label() if group != "pixels" else "pixels"
      ax.plot([c["epoch"] for c in curve], [c["top1"] for c in curve],
              ls="--" if mlp_problem(linear_of(run, e), e) else "-", marker=".",
              color="grey" if failed else "k" if group == "pixels" else colour(run.trunk),
              label=f"{run.anchor}: {label}" + (" (failed)" if failed else ""))
    ax.set_title("Pixels (control)" if group == "pixels" else task_label(group))
    ax.set_xlabel("epoch")
    ax.set_ylabel("MLP top-1 %")
    ax.legend(fontsize=7)
  return save(fig, fig_dir, "fig3_mlp_curves.png")


def convergence_lines(curves) -> List[str]:
  """The report's verdict on the MLP fits: converged, and not below their
  linear probes."""
  if not curves:
    return []
  usable = [(run, e) for run, e in curves if not controls_lib.failed_fit(e)]
  late = [(run, e, still_improving(e)) for run, e in usable if still_improving(e)]
  low = [(run, e, below_linear(linear_of(run, e), e)) for run, e in usable
         if not still_improving(e) and below_linear(linear_of(run, e), e)]
  lines = []
  if not late:
    lines.append(f"All {len(curves)} MLP fits with a curve converged (no gain over "
                 f"their last {CONVERGENCE_TAIL:.0%} of epochs above one standard "
                 "error).")
  else:
    lines.append(
        f"Not converged ({len(late)} of {len(curves)} MLP fits: their last "
        f"{CONVERGENCE_TAIL:.0%} of epochs still gained more than one standard "
        "error; train them longer before reading Fig. 3): "
        + ", ".join(f"[{r.anchor}](#{r.anchor}) {fit_label(r, e)} ({g:+.1f} ± {se:.1f})"
                    for r, e, (g, se) in late) + ".")
  if low:
    lines.append(
        f"Below their linear probe ({len(low)} of {len(curves)} MLP fits, beyond "
        f"{controls_lib.Z:g} standard errors: an MLP head can fit what a linear one "
        "does, so these stopped short, e.g. at a learning-rate decay; not counted in "
        "the claims): " + ", ".join(
            f"[{r.anchor}](#{r.anchor}) {fit_label(r, e)} ({e['top1']:.1f} vs "
            f"{linear_of(r, e)['top1']:.1f}: {d:+.1f} ± {se:.1f})"
            for r, e, (d, se) in low) + ".")
  return lines
