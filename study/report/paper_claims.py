"""The paper's four claims, each judged from controlled comparisons of the runs
present, or stated as not decidable from them and why (docs/protocol.md §9).

  1 rankings of architectures are not consistent across pretext tasks
  2 wider is better (Fig. 6: width told apart from representation size)
  3 the best layer: ResNet pre_logits stay good, VGG degrades towards the top,
    judged on each layer's gain over the random trunk's same layer
  4 linear vs MLP: the MLP orders the cells as the linear probe does; fits
    that failed, did not converge or stayed below their linear probe are
    shown and not counted

A difference is told apart only beyond controls.Z standard errors; each line
gives the numbers and says when they are within. Spearman's rho over n < 5
cannot reach p < 0.05 (its smallest two-sided permutation p is 2 / n!), so
small groups get their raw comparisons instead. TF-free.
"""
import itertools
import math
from typing import Dict, List, Optional, Sequence, Tuple

from study.grid import cells as study_cells
from study.report import baselines
from study.report import claims
from study.report import controls as controls_lib
from study.report.figures import layer_series, mlp_pairs
from study.report.runs import (LAYER_ORDER, TASK_ORDER, Run, in_order, is_pretext,
                               row_label, task_label)
from study.report.tables import rho_text

Z = controls_lib.Z
# Spearman's rho is reported from this many points on (2 / 5! = 0.017 < 0.05).
MIN_SPEARMAN_N = 5


def signed(a: Dict, b: Dict) -> Tuple[float, Optional[float], int]:
  """(a - b top-1, its SE or None, +1 / -1 when beyond Z SE, else 0)."""
  diff = controls_lib.difference(a, b)
  if diff is None:
    d = float(a["top1"]) - float(b["top1"])
    return d, None, (d > 0) - (d < 0)
  d, se = diff
  return d, se, 0 if abs(d) <= Z * se else (d > 0) - (d < 0)


def diff_text(d: float, se: Optional[float]) -> str:
  """'+1.0 ± 0.7 (within 2 SE)', '+2.1 ± 0.7 (beyond 2 SE)'."""
  if se is None:
    return f"{d:+.1f} (no standard error)"
  return f"{d:+.1f} ± {se:.1f} ({'beyond' if abs(d) > Z * se else 'within'} {Z:g} SE)"


def gain(entry: Dict, random: Optional[Dict]) -> Optional[Tuple[float, Optional[float]]]:
  """(entry minus its random trunk, SE) or None without the random trunk."""
  if random is None:
    return None
  d, se, _ = signed(entry, random)
  return d, se


def gain_difference(a, b) -> Tuple[float, Optional[float]]:
  """(gain a - gain b, SE of that difference) of two gain() results."""
  se = None if a[1] is None or b[1] is None else math.hypot(a[1], b[1])
  return a[0] - b[0], se


def spearman_note(n: int) -> str:
  """Why Spearman's rho over n points is not given ('' when it is)."""
  if n >= MIN_SPEARMAN_N:
    return ""
  if n == 2:
    return "Spearman's rho over 2 points is ±1 and tells nothing: "
  return (f"Spearman's rho over n = {n} is not informative (its smallest two-sided "
          f"p is 2/{n}! = {2 / math.factorial(n):.2g}): ")


def _heading(number: int, claim: str, verdict: str) -> str:
  return f"{number}. **{claim} (paper): {verdict}.**"


# --------------------------------------------------------------- 1 architectures


def _random(cells, key) -> Optional[Dict]:
  """The Rnd cell's entry of (trunk, width) `key`, None if absent or failed."""
  c = cells.get((key[0], "random_init", key[1]))
  return c.entry if c and not c.failed else None


def architectures(cells, runs: Sequence[Run]) -> List[str]:
  """Claim 1 from the Table 1 cells {(trunk, task, width): Cell} of one
  dataset: architectures compared at the same width within each task, and
  each pair's order compared across the pretext tasks that ran both."""
  del runs  # the cells hold their entries
  claim = "Rankings of architectures are not consistent across tasks"
  groups = {}  # (task, width): {trunk: cell}
  for (trunk, task, w), c in cells.items():
    if not c.failed and task != "random_init":
      groups.setdefault((task, w), {})[trunk] = c
  multi = {k: g for k, g in groups.items() if len(g) >= 2}
  keys = sorted(multi, key=lambda k: (in_order([t for t, _ in multi], TASK_ORDER).index(
      k[0]), k[1]))
  detail, signs = [], {}  # signs: (trunk a, trunk b, width) -> {task: sign of a - b}
  for task, w in keys:
    group = multi[(task, w)]
    ordered = sorted(group, key=lambda t: -group[t].value)
    for a, b in itertools.combinations(ordered, 2):
      ca, cb = group[a], group[b]
      d, se, sign = signed(ca.entry, cb.entry)
      if is_pretext(task):
        pair = tuple(sorted((a, b)))
        signs.setdefault(pair + (w,), {})[task] = sign if pair[0] == a else -sign
      text = (f"- {task_label(task)}, k={w}: {row_label(a)} "
              f"{controls_lib.entry_text(ca.entry)} vs {row_label(b)} "
              f"{controls_lib.entry_text(cb.entry)}: {diff_text(d, se)}")
      ga, gb = gain(ca.entry, _random(cells, (a, w))), gain(cb.entry, _random(cells, (b, w)))
      if ga and gb:
        text += (f"; over their random trunks {ga[0]:+.1f} vs {gb[0]:+.1f} "
                 f"(difference {diff_text(*gain_difference(ga, gb))})")
      detail.append(text + ".")
  shared = {pair: s for pair, s in signs.items() if len(s) >= 2}
  reversed_ = [(pair, s) for pair, s in shared.items()
               if any(x * y < 0 for x, y in itertools.combinations(s.values(), 2))]
  alike = [pair for pair, s in shared.items()
           if all(v != 0 for v in s.values()) and len(set(s.values())) == 1]
  if not shared:
    verdict = "not decided"
    ran = "; ".join(f"{task_label(t)} k={w} on " + ", ".join(
        row_label(x) for x in in_order(multi[(t, w)], study_cells.TRUNK_NAMES))
        for t, w in keys)
    why = ("no two pretext tasks ran on the same two architectures at one width, so no "
           "ranking can be compared across tasks" + (f" (on two or more: {ran})" if ran
                                                    else ""))
  elif reversed_:
    verdict = "holds"
    why = "; ".join(
        f"{row_label(a)} vs {row_label(b)} at k={w} reverses beyond {Z:g} SE between "
        + " and ".join(task_label(t) for t in s) for (a, b, w), s in reversed_)
  elif len(alike) == len(shared):
    verdict = "does not hold"
    why = (f"each of the {len(shared)} pairs of architectures is ordered alike, beyond "
           f"{Z:g} SE, by every pretext task that ran both")
  else:
    verdict = "not decided"
    why = (f"no order reverses beyond {Z:g} SE, but {len(shared) - len(alike)} of "
           f"{len(shared)} pairs are within {Z:g} SE in some task")
  n = max((len(g) for (t, _), g in multi.items() if is_pretext(t)), default=0)
  lines = [_heading(1, claim, verdict) + f" {why[0].upper()}{why[1:]}."]
  if detail:
    lines += ["   " + (spearman_note(n) if n else "The comparisons: ") + "top-1 of "
              "each pair at one width, then each one's gain over the random trunk of "
              "its architecture and width:"]
    lines += ["   " + d for d in detail]
  return lines


# ----------------------------------------------------------------------- 2 width


def _step(trained_a, trained_b, random_a, random_b) -> Tuple[int, Optional[int]]:
  """(sign of the trained model's step b - a beyond Z SE, sign of its gain
  over the random trunk's step, None without the random trunk's)."""
  sign = signed(trained_b, trained_a)[2]
  if not (random_a and random_b):
    return sign, None
  d, se = gain_difference(signed(trained_b, trained_a)[:2], signed(random_b, random_a)[:2])
  return sign, 0 if se is not None and abs(d) <= Z * se else (d > 0) - (d < 0)


def _steps_summary(steps: Sequence[Tuple[int, Optional[int]]], what: str) -> str:
  up, down = sum(s == 1 for s, _ in steps), sum(s == -1 for s, _ in steps)
  text = (f"of {len(steps)} steps to a {what}, {up} gain and {down} lose beyond "
          f"{Z:g} SE, {len(steps) - up - down} are within {Z:g} SE")
  judged = [r for _, r in steps if r is not None]
  if judged:
    text += (f"; the trained model's step exceeds its random trunk's step beyond "
             f"{Z:g} SE in {judged.count(1)} of {len(judged)}")
  return text


def _verdict(steps) -> str:
  signs = [s for s, _ in steps]
  if signs and all(s == 1 for s in signs):
    return "holds"
  if 1 in signs and -1 not in signs:
    return "partly holds"
  if -1 in signs and 1 not in signs:
    return "does not hold"
  return "not decided"


def widths(cells, runs: Sequence[Run]) -> List[str]:
  """Claim 2: steps in width of one (task, trunk) in the Table 1 cells and
  Fig. 6's steps (bottleneck models) on both axes, each beside its random
  trunk's step."""
  claim = "Wider is better"
  steps, sizes, detail = [], [], []
  groups = {}
  for (trunk, task, w), c in cells.items():
    if not c.failed:
      groups.setdefault((task, trunk), {})[w] = c
  for (task, trunk), by_width in sorted(groups.items()):
    ks = sorted(by_width)
    for a, b in zip(ks, ks[1:]):
      ra, rb = _random(cells, (trunk, a)), _random(cells, (trunk, b))
      text = (f"- {task_label(task)}, {row_label(trunk)}, k={a} → {b}: "
              f"{diff_text(*signed(by_width[b].entry, by_width[a].entry)[:2])}")
      if task != "random_init":
        steps.append(_step(by_width[a].entry, by_width[b].entry, ra, rb))
        if ra and rb:
          text += f"; its random trunk {diff_text(*signed(rb, ra)[:2])}"
      detail.append(text + ".")
  points = claims.bottleneck_points(runs)
  for values in points.values():
    for axis, _, keys in claims.axes_of(values):
      for a, b in zip(keys, keys[1:]):
        (run_a, e_a), (run_b, e_b) = values[a], values[b]
        step = _step(e_a, e_b, baselines.controls_for(runs, run_a, e_a)["random"],
                     baselines.controls_for(runs, run_b, e_b)["random"])
        (steps if axis == "width" else sizes).append(step)
  fig6 = claims.fig6_lines(points, runs)
  if not steps:
    present = sorted({w for _, _, w in cells})
    verdict = "not decided"
    why = (f"every run here has width k = {', '.join(map(str, present)) or '?'}"
           + (" and" if present else "") + " no two runs of one task and architecture "
           "differ in width alone; run `scripts/sweep.sh miniature_fig6` (Fig. 6: "
           "width at a fixed representation size, each model beside its random trunk) "
           "and rebuild this report")
  else:
    verdict, why = _verdict(steps), _steps_summary(steps, "wider trained model")
  if sizes:
    why += (f". Representation size at a fixed width (Fig. 6): {_verdict(sizes)}, "
            + _steps_summary(sizes, "larger representation"))
  lines = [_heading(2, claim, verdict) + f" {why[0].upper()}{why[1:]}."]
  lines += ["   " + d for d in detail]
  if fig6:
    lines += ["   Fig. 6's steps (trained model, then its random trunk):"]
    lines += ["   " + l for l in fig6]
  return lines


# ---------------------------------------------------------------------- 3 layers


def _family(arch: str) -> Optional[str]:
  if arch.startswith(("resnet", "revnet")):
    return "ResNet"
  if arch.startswith("vgg"):
    return "VGG"
  return None


def layers(main_runs: Sequence[Run], runs: Sequence[Run]) -> List[str]:
  """Claim 3 from Fig. 5's series: each layer's gain over the random trunk's
  same layer (scored alike: same pooled size), then where pre_logits stands."""
  claim = "The best layer: ResNet pre_logits stay good, VGG degrades towards the top"
  detail, outcome = [], {"ResNet": [], "VGG": []}
  unplaced = {"ResNet": 0, "VGG": 0}  # runs whose every layer gain is noise
  every = layer_series(main_runs)
  series = [s for s in every if not s[0].is_rnd]
  # The trained runs, then the random trunks' own curves (context, not judged).
  for run, _, entries, size in series + [s for s in every if s[0].is_rnd]:
    names = in_order(entries, LAYER_ORDER)
    judged = {} if run.is_rnd else {
        l: g for l in names
        for g in [gain(entries[l], baselines.controls_for(runs, run, entries[l])["random"])]
        if g is not None}
    by = "gain over the random trunk" if "pre_logits" in judged else "top-1"
    scores = judged if "pre_logits" in judged else {
        l: (entries[l]["top1"], controls_lib.standard_error(entries[l])) for l in names}
    best = max(scores, key=lambda l: scores[l][0])
    d, se = gain_difference(scores["pre_logits"], scores[best]) if (
        "pre_logits" in scores) else (None, None)
    parts = ", ".join(
        f"{l} {entries[l]['top1']:.1f}" + (f" ({judged[l][0]:+.1f} ± {judged[l][1]:.1f})"
                                           if l in judged and judged[l][1] else "")
        for l in names)
    at = f", {size} features each" if size else ""
    what = "Rnd (the random trunk itself)" if run.is_rnd else task_label(run.task)
    text = f"- {what}, {run.label()}{at}: {parts}; the largest {by} is at {best}"
    family = _family(str(run.info.get("architecture", "")))
    if by.startswith("gain") and not any(
        g_se and abs(g) > Z * g_se for g, g_se in judged.values()):
      # No layer learned beyond the noise: which is best is the noise's choice.
      text += (f"; no layer gains more than {Z:g} SE over the random trunk's, so "
               "this run cannot place its best layer")
      sign = None
      if family and not run.is_rnd:
        unplaced[family] += 1
    elif d is not None and best != "pre_logits":
      text += f"; pre_logits {diff_text(d, se)} from it"
      sign = 0 if se is not None and abs(d) <= Z * se else -1
    else:
      sign = 1 if d is not None else None
    if family and sign is not None and not run.is_rnd:
      outcome[family].append(sign)
    detail.append(text + ".")
  if not series:
    lines = [_heading(3, claim, "not decided") + " No trained run was scored at three "
             "or more layers (Fig. 5's runs: the miniature's `miniature_fig5` cells, "
             "grid `fig5`)."]
    return lines + ["   " + d for d in detail]
  parts = []
  resnet, vgg = outcome["ResNet"], outcome["VGG"]
  if resnet:
    good = sum(s >= 0 for s in resnet)
    parts.append(f"ResNet: pre_logits is the best layer or within {Z:g} SE of it in "
                 f"{good} of {len(resnet)} trained runs"
                 + ("" if good == len(resnet) else f", below it beyond {Z:g} SE in "
                    f"{len(resnet) - good}"))
  elif unplaced["ResNet"]:
    parts.append(f"ResNet: not one of {unplaced['ResNet']} trained runs gains more than "
                 f"{Z:g} SE over its random trunk at any layer")
  else:
    parts.append("ResNet: no ResNet or RevNet run scored by layer")
  if vgg:
    worse = sum(s < 0 for s in vgg)
    parts.append(f"VGG: pre_logits below the best layer beyond {Z:g} SE in {worse} of "
                 f"{len(vgg)} trained runs")
  elif unplaced["VGG"]:
    parts.append(f"VGG: not one of {unplaced['VGG']} trained runs gains more than "
                 f"{Z:g} SE over its random trunk at any layer")
  else:
    parts.append("VGG: not tested, no VGG run scored by layer")
  verdict = ("holds" if resnet and all(s >= 0 for s in resnet) and vgg
             and all(s < 0 for s in vgg) else
             "holds for the ResNets" if resnet and all(s >= 0 for s in resnet) else
             "does not hold for the ResNets" if resnet and all(s < 0 for s in resnet)
             else "partly holds for the ResNets" if resnet else "not decided")
  lines = [_heading(3, claim, verdict) + " " + "; ".join(parts) + " (judged on each "
           "layer's gain over the random trunk's same layer where it was scored, else "
           "on top-1)."]
  lines += ["   Top-1 by layer (gain over the random trunk's same layer ± SE):"]
  return lines + ["   " + d for d in detail]


# ------------------------------------------------------------------- 4 linear/MLP


def linear_vs_mlp(main_runs: Sequence[Run]) -> List[str]:
  """Claim 4: whether the MLP orders the cells as the linear probe does."""
  claim = "MLP rankings match linear ones"
  pairs = mlp_pairs(main_runs, keep_failed=True)
  if not pairs:
    return [_heading(4, claim, "not decided") + " No run has an MLP entry beside its "
            "linear one."]
  usable, shown = [], []
  for run, x, y, lin, mlp in pairs:
    problem = claims.mlp_problem(lin, mlp)
    shown.append(f"- {task_label(run.task)}, {run.label()}: linear "
                 f"{controls_lib.entry_text(lin)}, MLP {controls_lib.entry_text(mlp)}"
                 + (f": **{problem}**, not counted" if problem else ""))
    if not problem:
      usable.append((run, lin, mlp))
  agree, opposite, one, neither = [], [], 0, 0
  for (ra, la, ma), (rb, lb, mb) in itertools.combinations(usable, 2):
    s1, s2 = signed(la, lb)[2], signed(ma, mb)[2]
    if s1 and s2:
      (agree if s1 == s2 else opposite).append((ra, rb))
    elif s1 or s2:
      one += 1
    else:
      neither += 1
  n = len(usable)
  rho = (f" Spearman's rho over them: "
         + rho_text([float(l["top1"]) for _, l, _ in usable],
                    [float(m["top1"]) for _, _, m in usable], n) + "."
         if n >= MIN_SPEARMAN_N else
         f" {spearman_note(n)}the pairs are compared instead." if n >= 2 else "")
  if n < 2:
    verdict = "not decided"
    why = (f"{n} of {len(pairs)} MLP fits are usable; the others failed, did not "
           "converge or stayed below their linear probe")
  else:
    counts = (f"of {n * (n - 1) // 2} pairs of the {n} usable cells, {len(agree)} are "
              f"ordered alike beyond {Z:g} SE by both, {len(opposite)} oppositely, "
              f"{one} told apart by one protocol only, {neither} by neither")
    if opposite:
      verdict = "does not hold"
      why = counts + "; ordered oppositely: " + "; ".join(
          f"{a.label()} {task_label(a.task)} vs {b.label()} {task_label(b.task)}"
          for a, b in opposite)
      if any(a.is_rnd or b.is_rnd for a, b in opposite):
        # The paper ranks trained models; a random trunk is a control here,
        # and the MLP lifts trained trunks more than random ones. The verdict
        # keeps the rule; this says what it rests on.
        m = sum(not r.is_rnd for r, _, _ in usable)
        alike = [(a, b) for a, b in agree if not (a.is_rnd or b.is_rnd)]
        reversed_ = [(a, b) for a, b in opposite if not (a.is_rnd or b.is_rnd)]
        why += (f". Among the trained cells alone (the random trunks left out): of "
                f"{m * (m - 1) // 2} pairs, {len(alike)} ordered alike beyond {Z:g} SE "
                f"by both, {len(reversed_)} oppositely")
    elif agree:
      verdict, why = "holds", counts
    else:
      verdict, why = "not decided", counts
  lines = [_heading(4, claim, verdict) + f" {why[0].upper()}{why[1:]}.{rho}"]
  return lines + ["   " + s for s in shown]


def claims_section(cells, main_runs: Sequence[Run], runs: Sequence[Run],
                   dataset: str) -> List[str]:
  """The report's 'Claims' section: one numbered paragraph per claim."""
  lines = ["## Claims", "",
           f"The paper's four claims, judged on the {dataset} runs here: a difference "
           f"counts only beyond {Z:g} standard errors of the difference (binomial on "
           "the scored split), and a claim no run here can test says so and what "
           "would test it.", ""]
  for part in (architectures(cells, runs), widths(cells, runs),
               layers(main_runs, runs), linear_vs_mlp(main_runs)):
    lines += part + [""]
  return lines
