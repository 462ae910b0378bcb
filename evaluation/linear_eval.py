"""Table 1 protocol: L-BFGS logistic regression on precomputed representations.

Representations of the train, val and eval splits are computed once (or read
from the feature cache); the L2 strength is chosen on `val` (training on
`train`, or a class-balanced fraction of it) from a grid searched with warm
starts; the chosen strength is refit on train + val and scored on `eval_split`.
Feature matrices larger than `max_in_memory_gb` stay on disk and the
full-batch gradients are accumulated over chunks of `chunk_rows` rows.
"""
import time
from typing import Callable, Dict, List, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf

from datasets import low_data
from evaluation import feature_cache
from evaluation import logistic_regression as lr
from evaluation import pooling as pooling_lib
from training import preemption
from training import strategy as strategy_lib

PROTOCOL = "linear_lbfgs"


class RowConcat:
  """Rows of several [N_i, D] arrays read as one [sum N_i, D] (for chunking)."""

  def __init__(self, parts):
    self.parts = list(parts)
    dims = {p.shape[1] for p in self.parts}
    if len(dims) != 1:
      raise ValueError(f"Cannot stack rows of widths {sorted(dims)}.")
    self.shape = (sum(p.shape[0] for p in self.parts), dims.pop())

  def __getitem__(self, rows):
    if not isinstance(rows, slice) or rows.step not in (None, 1):
      raise TypeError("RowConcat supports contiguous row slices only.")
    start, stop, _ = rows.indices(self.shape[0])
    out, offset = [], 0
    for p in self.parts:
      n = p.shape[0]
      lo, hi = max(start - offset, 0), min(stop - offset, n)
      if lo < hi:
        out.append(np.asarray(p[lo:hi], np.float32))
      offset += n
    if not out:
      return np.zeros([0, self.shape[1]], np.float32)
    return np.concatenate(out)


def as_features(x, max_in_memory_gb: float, chunk_rows: Optional[int]):
  """An in-memory float32 matrix, or ChunkedFeatures when it is too large."""
  rows, dim = x.shape
  if chunk_rows is None and rows * dim * 4 <= max_in_memory_gb * 2**30:
    if isinstance(x, RowConcat):
      return x[0:rows]
    return np.asarray(x, np.float32)
  if chunk_rows is None:
    chunk_rows = max(1, int(256 * 2**20 // (4 * dim)))  # 256 MiB chunks
  return lr.ChunkedFeatures(x, int(chunk_rows))


def recorded_splits(*, train_split: str, val_split: str, eval_split: str,
                    refit_on_train_and_val: bool, holdout_fraction: float,
                    **_) -> Dict[str, str]:
  """What an entry records of its splits and selection rule: {train_split
  (the rows of the final fit), selected_on (the rows that chose the L2),
  eval_split}. Extra keyword arguments (the protocol's other settings) are
  ignored, so `evaluate`'s resolved settings can be passed whole."""
  selected_on = val_split
  if holdout_fraction > 0:
    selected_on = f"{train_split} (held-out {100 * holdout_fraction:g}%)"
  fit_split = (f"{train_split}+{val_split}" if refit_on_train_and_val
               else train_split)
  return dict(train_split=fit_split, selected_on=selected_on,
              eval_split=eval_split)


@gin.configurable("linear_eval", denylist=["trunk", "dataset", "strategy",
                                           "cache", "log"])
def evaluate(trunk, dataset, *, layers: Sequence[str] = ("pre_logits",),
             train_split: str = "train", val_split: str = "val",
             eval_split: str = "val", refit_on_train_and_val: bool = False,
             l2_grid: Optional[Sequence[float]] = None, max_iter: int = 500,
             tol: float = 1e-6, search_tol: Optional[float] = 1e-4,
             batch_size: int = 256, pooling: str = "adaptive_max",
             fraction: float = 1.0, subset_seed: int = 0,
             max_in_memory_gb: float = 4.0, chunk_rows: Optional[int] = None,
             standardize: bool = True, holdout_fraction: float = 0.0,
             pool_to_features: Optional[int] = None,
             cache: Optional[feature_cache.FeatureCache] = None,
             strategy=None, log: Callable[[str], None] = print) -> List[Dict]:
  """Runs the protocol for each layer of `trunk` (a `trunks.Trunk`).

  The defaults are the study's Table 1 protocol (docs/protocol.md §5): fit on
  `train`, the L2 chosen on `val`, no refit, scored on `val`; so an
  evaluation without a config (a `--hub_module` one) is the study's. A
  config that scores `test` after a refit on train + val (the demo's) says
  so with its own bindings.

  holdout_fraction: 0 (the Table 1 protocol) chooses the L2 on `val_split`,
  which that protocol also scores. > 0 chooses it on this class-balanced
  fraction of `train_split`, held out from the grid's fits, then refits the
  chosen L2 on all of `train_split` (plus `val_split` with the refit): no
  hyperparameter is then chosen on the scored split; `selected_on` says
  which rows chose it.

  fraction: the low-data regime: a class-balanced fraction (subset chosen by
  `subset_seed`) of every labelled split the model is fitted on, `train_split`
  and, when refitting, `val_split` too; the L2 strength is still scored on
  the whole `val_split`. chunk_rows forces chunked fitting.
  standardize: fit on features standardised with training statistics (the
  default). Raw CNN features are non-negative with per-channel scales that
  differ by orders of magnitude; unstandardised, L-BFGS hits max_iter and
  ends 8-17 points lower (logistic_regression/features.py has the
  measurement), and one L2 grid would not suit every layer and trunk.
  pool_to_features: None pools each end point to about 9000 values
  (docs/protocol.md §5); n brings every evaluated end point, pre_logits
  included, to exactly n features (pooling.equal_dimension), so layers are
  compared at equal dimension (docs/protocol.md §9). It is part of the entry's
  settings (another result); a control without layers (the pixels) keeps its
  own size, which its entry's `features` says.
  tol / search_tol: see `logistic_regression.grid_search` (grid values are
  ranked at search_tol, the chosen one and the refit converge to tol).

  Returns one results entry per layer: {protocol, trunk, layer, pooling,
  features (the fitted dimension D), train_split, eval_split, fraction, top1,
  top5, hyperparameters,
  extract_time_s (all layers), fit_time_s}; top-1/top-5 in percent.
  """
  fraction = low_data.check_fraction(fraction)
  if not 0.0 <= holdout_fraction < 1.0:
    raise ValueError(f"linear_eval.holdout_fraction = {holdout_fraction}: use 0 (L2 "
                     f"chosen on val_split) or a fraction in (0, 1) of train_split.")
  l2_grid = sorted(l2_grid or lr.DEFAULT_L2_GRID, reverse=True)
  # The pixels control is the image, not a layer: it is not shrunk to a
  # trunk's dimension (its entry records the size it has).
  is_control = getattr(trunk, "end_points", None) is not None
  read_pooling = pooling_lib.equal_dimension(
      pooling, None if is_control else pool_to_features)
  t0 = time.time()
  split_features = feature_cache.read_splits(
      trunk, dataset, [train_split, val_split, eval_split], layers,
      pooling=read_pooling, batch_size=batch_size, cache=cache, strategy=strategy,
      log=log)
  t_extracted = time.time()
  fitted_on = [train_split] + ([val_split] if refit_on_train_and_val else [])
  subsets = {}
  if fraction < 1.0:
    for split in fitted_on:
      labels = split_features[split][1]
      subsets[split] = low_data.balanced_subset(labels, fraction, subset_seed)
      log(f"  low-data: {len(subsets[split])} of {len(labels)} {split} "
          f"examples ({100 * fraction:g}%, balanced, seed {subset_seed})")

  def fitted_rows(split, x, y):
    if split not in subsets:
      return x, y
    return np.asarray(x[subsets[split]], np.float32), y[subsets[split]]

  feats = lambda x: as_features(x, max_in_memory_gb, chunk_rows)
  interrupt = preemption.check_inside(
      "inside an L-BFGS fit",
      strategy_lib.num_workers(strategy or tf.distribute.get_strategy()))
  entries = []
  for layer in layers:
    t_layer = time.time()
    (train_x, train_y), (val_x, val_y), (eval_x, eval_y) = [
        (split_features[s][0][layer], split_features[s][1])
        for s in (train_split, val_split, eval_split)]
    train_x, train_y = fitted_rows(train_split, train_x, train_y)
    selected_on = recorded_splits(
        train_split=train_split, val_split=val_split, eval_split=eval_split,
        refit_on_train_and_val=refit_on_train_and_val,
        holdout_fraction=holdout_fraction)["selected_on"]
    if holdout_fraction > 0:
      # The grid is ranked on held-out train rows (loaded into memory), then
      # the chosen L2 is refit on every train row below.
      held = low_data.balanced_subset(train_y, holdout_fraction, subset_seed + 1)
      kept = np.setdiff1d(np.arange(len(train_y)), held)
      select_x, select_y = np.asarray(train_x[held], np.float32), train_y[held]
      search_x, search_y = np.asarray(train_x[kept], np.float32), train_y[kept]
    else:
      select_x, select_y, search_x, search_y = val_x, val_y, train_x, train_y
    search = lr.grid_search(feats(search_x), search_y, feats(select_x), select_y,
                            dataset.num_classes, l2_grid=l2_grid,
                            max_iter=max_iter, tol=tol, search_tol=search_tol,
                            standardize=standardize,
                            log=lambda m: log("  " + m), interrupt=interrupt)
    best_l2 = search["best_l2"]
    final = search["model"]
    if holdout_fraction > 0 and not refit_on_train_and_val:
      final = lr.fit(feats(train_x), train_y, dataset.num_classes, l2=best_l2,
                     max_iter=max_iter, tol=tol, standardize=standardize,
                     init=search["model"], interrupt=interrupt)
    fit_split = train_split
    labels_used = len(train_y)
    if refit_on_train_and_val:
      fit_split = f"{train_split}+{val_split}"
      refit_x, refit_y = fitted_rows(val_split, val_x, val_y)
      labels_used += len(refit_y)
      final = lr.fit(feats(RowConcat([train_x, refit_x])),
                     np.concatenate([train_y, refit_y]), dataset.num_classes,
                     l2=best_l2, max_iter=max_iter, tol=tol,
                     standardize=standardize, init=search["model"],
                     interrupt=interrupt)
    eval_feats = feats(eval_x)
    top1 = 100.0 * lr.accuracy(final, eval_feats, eval_y, k=1)
    top5 = 100.0 * lr.accuracy(final, eval_feats, eval_y,
                               k=min(5, dataset.num_classes))
    log(f"  {PROTOCOL} [{trunk.name}] {layer}: {eval_split} top-1 {top1:.2f}% "
        f"top-5 {top5:.2f}% (l2={best_l2:g}, chosen on {selected_on})")
    entries.append(dict(
        protocol=PROTOCOL, trunk=trunk.name, layer=layer, pooling=pooling,
        features=int(train_x.shape[1]), train_split=fit_split, selected_on=selected_on, eval_split=eval_split,
        fraction=fraction,
        top1=top1, top5=top5,
        hyperparameters=dict(
            l2=best_l2, l2_grid=list(l2_grid), selected_on=selected_on,
            holdout_fraction=holdout_fraction,
            val_top1_by_l2={f"{k:g}": 100.0 * v
                            for k, v in search["val_top1_by_l2"].items()},
            max_iter=max_iter, tol=tol, search_tol=search_tol,
            standardize=standardize, subset_seed=subset_seed,
            # Labels the final model was fitted on (train, plus val when
            # refitted), after the low-data subset.
            train_examples=int(labels_used)),
        extract_time_s=round(t_extracted - t0, 2),
        fit_time_s=round(time.time() - t_layer, 2)))
  return entries
