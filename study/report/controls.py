"""The controls every trained cell is judged against, and what counts as a result.

docs/protocol.md §9: a trained trunk's number means something only beside
its dataset's controls, scored by the same protocol on the same split:

  pixels       the evaluated images themselves (evaluation/trunks.py)
  random       the random trunk of the same architecture and width
  supervised   the supervised trunk (a reference ceiling, not a control to beat)

A trained cell beats a control when its top-1 exceeds the control's by more
than Z = 2 standard errors of the difference; a cell that does not beat the
better of pixels and its random trunk is marked. A fit that never left
chance (`failed_fit`) is a failure, shown as such and never a number in a
correlation or ranking. TF-free.
"""
import math
from typing import Dict, Optional, Sequence

Z = 2.0
# A loss within this fraction of ln C (C classes) never left chance.
CHANCE_LOSS_RTOL = 0.01
# Top-1 no more than this many points above 100 / C is chance.
CHANCE_TOP1_POINTS = 1.0
CONTROLS = ("pixels", "random")
MARK = "°"


def standard_error(entry: Optional[Dict]) -> Optional[float]:
  """The standard error of an entry's top-1, in points.

  Binomial on the evaluated split's size (`eval_examples`):
  100 sqrt(p (1 - p) / n); with several seeds (results.over_seeds) the
  spread of their mean, top1_std / sqrt(k), is added in quadrature. None
  for an entry that does not record its split's size (written before
  entries did).
  """
  if not entry or not entry.get("eval_examples"):
    return None
  p = min(max(float(entry["top1"]) / 100.0, 0.0), 1.0)
  variance = 1e4 * p * (1.0 - p) / int(entry["eval_examples"])
  seeds = entry.get("seeds") or [0]
  if len(seeds) > 1:
    variance += float(entry.get("top1_std") or 0.0) ** 2 / len(seeds)
  return math.sqrt(variance)


def difference(a: Dict, b: Dict) -> Optional[tuple]:
  """(top-1 of a minus b, its standard error), or None without both SEs.

  The two are treated as independent, which overstates the error of two
  trunks scored on the same images: a conservative test.
  """
  se_a, se_b = standard_error(a), standard_error(b)
  if se_a is None or se_b is None:
    return None
  return float(a["top1"]) - float(b["top1"]), math.hypot(se_a, se_b)


def beats(entry: Dict, control: Optional[Dict]) -> Optional[bool]:
  """Whether `entry` exceeds `control` by more than Z standard errors of the
  difference; None when there is no control or no standard error."""
  if control is None:
    return None
  diff = difference(entry, control)
  if diff is None:
    return None
  return diff[0] > Z * diff[1]


def failed_fit(entry: Dict, num_classes: Optional[int] = None) -> bool:
  """Whether a fit never left chance.

  Its final training loss (an SGD head's curve) is within CHANCE_LOSS_RTOL
  of ln C, or its top-1 is no more than CHANCE_TOP1_POINTS above 100 / C
  (docs/protocol.md §9). C is the entry's `num_classes`, else
  `num_classes`; for an entry with neither, the C whose ln C the loss sits at.
  """
  classes = entry.get("num_classes") or num_classes
  curve = entry.get("curve") or []
  loss = curve[-1].get("train_loss") if curve else None
  if loss is not None and loss > 0:
    c = classes or round(math.exp(loss))
    if c >= 2 and abs(loss - math.log(c)) <= CHANCE_LOSS_RTOL * math.log(c):
      return True
  if not classes:
    return False
  return float(entry["top1"]) - 100.0 / classes <= CHANCE_TOP1_POINTS


def verdict(entry: Dict, controls: Dict[str, Optional[Dict]]) -> Optional[bool]:
  """True: `entry` beats both CONTROLS; False: it does not beat one of them
  (within Z standard errors of the better, or below it); None: a control or
  a standard error is missing, so it cannot be told."""
  outcomes = [beats(entry, controls.get(name)) for name in CONTROLS]
  if any(o is False for o in outcomes):
    return False
  if any(o is None for o in outcomes):
    return None
  return True


def entry_text(entry: Optional[Dict]) -> str:
  """'85.9 ± 0.3' (top-1 ± its standard error), '85.9' without one."""
  if entry is None:
    return "–"
  se = standard_error(entry)
  return f"{entry['top1']:.1f}" + ("" if se is None else f" ± {se:.1f}")


def count_line(verdicts: Sequence[Optional[bool]]) -> str:
  """The report's opening line: 'N of M trained cells beat both controls'."""
  if not verdicts:
    return ("**No trained cell to judge yet**: only the baselines (Rnd, Supervised) "
            "have a Table 1 entry.")
  beat = sum(v is True for v in verdicts)
  unknown = sum(v is None for v in verdicts)
  line = (f"**{beat} of {len(verdicts)} trained cells beat both controls** "
          f"(pixels and the random trunk of the same architecture and width, by "
          f"more than {Z:g} standard errors)")
  if unknown:
    line += (f"; {unknown} could not be judged (a control or the split's size "
             f"is missing)")
  return line + "."
