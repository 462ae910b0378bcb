"""The report's first lines: the controls, how many trained cells beat them,
each cell's margin, and whether any run ran on uncommitted code.

docs/protocol.md §9: a trained cell's number means something only beside the
pixels and the random trunk of its architecture and width, scored alike; the
supervised trunk is a ceiling, listed but not a control to beat. Every number
is top-1 % ± one standard error. TF-free.
"""
from typing import Dict, List, Optional, Sequence, Tuple

from study.grid import cells as study_cells
from study.report import baselines
from study.report import claims
from study.report import controls as controls_lib
from study.report.figures import low_data_series, mlp_pairs
from study.report.runs import TASK_ORDER, Run, in_order, row_label, table_runs, task_label
from study.report.tables import Cell


def margin_text(entry: Dict, control: Optional[Dict], name: str) -> Optional[str]:
  """'+1.3 ± 0.7 over pixels (86.1)', '1.6 ± 0.7 under pixels (86.1)', or
  None without the control."""
  if control is None:
    return None
  diff = controls_lib.difference(entry, control)
  d = float(entry["top1"]) - float(control["top1"]) if diff is None else diff[0]
  text = f"+{d:.1f}" if d >= 0 else f"{-d:.1f}"
  if diff is not None:
    text += f" ± {diff[1]:.1f}"
  return f"{text} {'over' if d >= 0 else 'under'} {name} ({control['top1']:.1f})"


def better_control(found: Dict[str, Optional[Dict]]) -> Tuple[Optional[str], Optional[Dict]]:
  """(name, entry) of the higher of pixels and the random trunk."""
  named = [(("its random trunk" if k == "random" else k), found.get(k))
           for k in controls_lib.CONTROLS if found.get(k)]
  return max(named, key=lambda kv: kv[1]["top1"], default=(None, None))


def cell_line(label: str, entry: Dict, found: Dict[str, Optional[Dict]],
              verdict: Optional[bool], failed: bool = False) -> str:
  """'- Rotation, ResNet50 v2 k=1: 88.0 ± 0.5, +1.5 ± 0.7 over its random
  trunk (86.5)°': a cell against the better of its controls."""
  if failed:
    return f"- {label}: {controls_lib.entry_text(entry)}, a failed fit (never left chance)"
  name, control = better_control(found)
  text = f"- {label}: {controls_lib.entry_text(entry)}"
  margin = margin_text(entry, control, name) if control else None
  text += f", {margin}" if margin else ", no control to judge it by"
  if verdict is False:
    text += f" {controls_lib.MARK} (not above it by more than {controls_lib.Z:g} SE)"
  elif verdict is None and control:
    missing = ("no random trunk of its architecture and width" if not found.get("random")
               else "no pixels control" if not found.get("pixels")
               else "no standard error")
    text += f" ({missing}: not judged)"
  return text


def _controls_block(cells: Dict[Tuple[str, str, int], Cell], runs: Sequence[Run]
                    ) -> List[str]:
  trunks = in_order((k[0] for k in cells), study_cells.TRUNK_NAMES)
  keys = sorted(cells, key=lambda k: (trunks.index(k[0]), k))
  pixels = {(e["protocol"], e.get("eval_split")): e for c in cells.values()
            for e in [c.controls.get("pixels")] if e}
  if not pixels:  # no pretext cell: the pixels beside a baseline's entry
    for c in cells.values():
      e = baselines.pixels_of(runs, c.run, c.entry)
      if e:
        pixels[(e["protocol"], e.get("eval_split"))] = e
  lines = ["- pixels: " + ("; ".join(controls_lib.entry_text(e) for e in pixels.values())
                           if pixels else "none scored (`experiment.evaluate_pixels = "
                           "True` in one run of the dataset)")]
  random = [f"{row_label(t)} k={w} {controls_lib.entry_text(cells[(t, task, w)].entry)}"
            + (" (failed fit: no control)" if cells[(t, task, w)].failed else "")
            for t, task, w in keys if task == "random_init"]
  lines.append("- random trunk: " + ("; ".join(random) or "no Rnd cell"))
  supervised = []
  for t, task, w in keys:
    if task != "supervised":
      continue
    c = cells[(t, task, w)]
    rnd = cells.get((t, "random_init", w))
    name, control = better_control(dict(
        pixels=baselines.pixels_of(runs, c.run, c.entry),
        random=rnd.entry if rnd and not rnd.failed else None))
    margin = margin_text(c.entry, control, name) if control else None
    supervised.append(f"{row_label(t)} k={w} {controls_lib.entry_text(c.entry)}"
                      + (f" ({margin})" if margin else ""))
  lines.append("- supervised (a ceiling, not a control): "
               + ("; ".join(supervised) or "no Supervised cell"))
  return lines


def _mlp_lines(runs: Sequence[Run], dataset: str) -> List[str]:
  """The same judgement under the MLP head, where the cells ran one."""
  pairs = mlp_pairs(table_runs(runs, dataset), keep_failed=True)
  trained = [(run, mlp) for run, _, _, _, mlp in pairs
             if not (run.is_rnd or run.task == "supervised")]
  if not trained:
    return []
  protocols = sorted({mlp["protocol"] for _, mlp in trained})
  verdicts = [baselines.verdict_for(runs, run, mlp) for run, mlp in trained]
  beat = sum(v is True for v in verdicts)
  controls, seen, weak = [], set(), False
  for run, mlp in trained:
    found = baselines.controls_for(runs, run, mlp)
    for kind, key in (("pixels", None), ("random", (run.trunk, run.width))):
      e = found[kind]
      if e and (kind, key) not in seen:
        seen.add((kind, key))
        owner = next((r for r in runs if any(x is e for x in r.evaluations)), None)
        problem = owner and claims.mlp_problem(claims.linear_of(owner, e), e)
        weak = weak or bool(problem)
        controls.append(f"{kind}{'' if key is None else ' ' + run.label()} "
                        f"{controls_lib.entry_text(e)}"
                        + (f", {problem.split(' (')[0]}" if problem else ""))
  failed = [run for run, mlp in trained if controls_lib.failed_fit(mlp)]
  line = (f"Under the MLP head ({', '.join(f'`{p}`' for p in protocols)}): {beat} of "
          f"{len(trained)} trained cells beat both controls scored alike ("
          + ("; ".join(controls) or "none found") + ")")
  if weak:
    line += (f"; a control whose own fit stopped short (not converged, or below its "
             f"linear probe) is a weak one, so {beat} is an upper bound")
  if failed:
    line += "; failed fits: " + ", ".join(f"[{r.anchor}](#{r.anchor})" for r in failed)
  return [line + ". Convergence of each fit: see Fig. 3 (curves).", ""]


def _low_data_lines(runs: Sequence[Run], dataset: str) -> List[str]:
  """The same count with a fraction of the labels (Fig. 7's entries), naming
  the cells that beat both controls there."""
  series = low_data_series(table_runs(runs, dataset))
  fractions = sorted({f for v in series.values() for f in v if f < 1}, reverse=True)
  lines = []
  for f in fractions:
    trained = [(task, trunk, w, run, e)
               for (task, trunk), by_fraction in sorted(series.items())
               for w, (_, run, e) in sorted(by_fraction.get(f, {}).items())
               if not (run.is_rnd or task == "supervised")]
    if not trained:
      continue
    verdicts = [baselines.verdict_for(runs, run, e) for *_, run, e in trained]
    found = [baselines.controls_for(runs, run, e) for *_, run, e in trained]
    pixels = next((c["pixels"] for c in found if c["pixels"]), None)
    line = (f"With {f:.0%} of the labels (`linear_lbfgs`, pre_logits; pixels "
            f"{controls_lib.entry_text(pixels)}): "
            f"{sum(v is True for v in verdicts)} of {len(trained)} trained cells "
            "beat both controls scored alike")
    winners = [f"{task_label(task)}, {row_label(trunk)} k={w}: "
               f"{controls_lib.entry_text(e)}, "
               + margin_text(e, *reversed(better_control(c)))
               for (task, trunk, w, _, e), c, v in zip(trained, found, verdicts)
               if v is True]
    lines += [line + (" (" + "; ".join(winners) + ")" if winners else "") + ".", ""]
  return lines


def dirty_lines(runs: Sequence[Run]) -> List[str]:
  """The warning when an invocation ran on uncommitted code (a `-dirty` commit)."""
  dirty = {}  # commit: [run anchors]
  for run in runs:
    commits = [run.meta.get("git_commit")] + [
        i.get("git_commit") for i in run.meta.get("invocations", [])]
    for commit in commits:
      if commit and str(commit).endswith("-dirty"):
        anchors = dirty.setdefault(commit, [])
        if run.anchor not in anchors:
          anchors.append(run.anchor)
  if not dirty:
    return []
  return ["**Run on uncommitted code**: " + "; ".join(
      f"`{commit}` by " + ", ".join(f"[{a}](#{a})" for a in anchors)
      for commit, anchors in sorted(dirty.items()))
          + ". Their numbers may not follow from any commit.", ""]


def commits_line(runs: Sequence[Run]) -> str:
  """Every commit recorded (each invocation's), with how many runs used it."""
  used = {}
  for run in runs:
    commits = {run.meta.get("git_commit", "unknown")} | {
        i.get("git_commit") for i in run.meta.get("invocations", []) if i.get("git_commit")}
    for commit in commits:
      used[commit] = used.get(commit, 0) + 1
  return "- commits: " + ", ".join(f"`{c}` ({n} run{'s' if n > 1 else ''})"
                                   for c, n in sorted(used.items()))


def opening(tables, runs: Sequence[Run]) -> List[str]:
  """The lines after the title: per dataset of its own Table 1, the count,
  the controls and each trained cell's margin; after the first count, the
  uncommitted-code warning."""
  lines = []
  own = [(source, cells) for source, target, cells in tables if source == target]
  for source, cells in own:
    pretext = sorted(((k, c) for k, c in cells.items() if c.controls),
                     key=lambda kc: (TASK_ORDER.index(kc[0][1]) if kc[0][1] in TASK_ORDER
                                     else len(TASK_ORDER), kc[0]))
    count = controls_lib.count_line([c.verdict for _, c in pretext])
    used = sorted({(c.entry["protocol"], c.entry.get("eval_split")) for c in cells.values()})
    scored = ", ".join(f"`{p}` on `{s}`" for p, s in used)
    lines += [(f"{source}: " if len(own) > 1 else "") + count, "",
              f"Controls ({scored}, pre_logits, all labels; top-1 % ± one standard "
              "error):"]
    lines += _controls_block(cells, runs) + [""]
    if pretext:
      lines += [f"Each trained cell against the better of its controls "
                f"({controls_lib.MARK}: not above it by more than {controls_lib.Z:g} "
                "standard errors of the difference):"]
      lines += [cell_line(f"{task_label(task)}, {row_label(t)} k={w}", c.entry,
                          c.controls, c.verdict, c.failed)
                for (t, task, w), c in pretext] + [""]
    lines += _mlp_lines(runs, source)
    lines += _low_data_lines(runs, source)
  if not own:
    lines += [controls_lib.count_line([]), ""]
  # Right after the (first) count: numbers of uncommitted code come first.
  return lines[:2] + dirty_lines(runs) + lines[2:]
