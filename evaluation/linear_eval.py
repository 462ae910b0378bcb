"""Table 1 protocol: L-BFGS logistic regression on precomputed representations.

Representations of the train, val and eval splits are computed once; the L2
strength is chosen on `val` (training on `train`) from a grid searched with warm
starts; the chosen strength is refit on train + val and scored on `eval_split`.
"""
import time
from typing import Callable, Dict, List, Optional, Sequence

import gin
import numpy as np

from evaluation import logistic_regression as lr
from evaluation import representations

PROTOCOL = "linear_lbfgs"


@gin.configurable("linear_eval", denylist=["task", "model", "dataset",
                                           "strategy", "log", "trunk"])
def evaluate(task, model, dataset, *, trunk: str = "trained",
             layers: Sequence[str] = ("pre_logits",),
             train_split: str = "train", val_split: str = "val",
             eval_split: str = "test", refit_on_train_and_val: bool = True,
             l2_grid: Optional[Sequence[float]] = None, max_iter: int = 500,
             batch_size: int = 256, pooling: str = "adaptive_max",
             strategy=None, log: Callable[[str], None] = print) -> List[Dict]:
  """Runs the protocol for each layer; returns one results entry per layer.

  Each entry: {protocol, trunk, layer, pooling, train_split, eval_split,
  fraction, top1, top5, hyperparameters, extract_time_s (all layers),
  fit_time_s}; top-1/top-5 in percent.
  """
  l2_grid = sorted(l2_grid or lr.DEFAULT_L2_GRID, reverse=True)
  t0 = time.time()
  extractor = representations.Extractor(task, model, layers, pooling=pooling,
                                        strategy=strategy)
  split_features = {
      split: extractor(dataset, split, batch_size=batch_size, log=log)
      for split in dict.fromkeys([train_split, val_split, eval_split])}
  t_extracted = time.time()
  num_classes = dataset.num_classes
  entries = []
  for layer in layers:
    t_layer = time.time()
    (train_x, train_y), (val_x, val_y), (eval_x, eval_y) = [
        (split_features[s][0][layer], split_features[s][1])
        for s in (train_split, val_split, eval_split)]
    search = lr.grid_search(train_x, train_y, val_x, val_y, num_classes,
                            l2_grid=l2_grid, max_iter=max_iter, log=log)
    best_l2 = search["best_l2"]
    final = search["model"]
    fit_split = train_split
    if refit_on_train_and_val:
      fit_split = f"{train_split}+{val_split}"
      final = lr.fit(np.concatenate([train_x, val_x]),
                     np.concatenate([train_y, val_y]), num_classes,
                     l2=best_l2, max_iter=max_iter, init=search["model"])
    top1 = 100.0 * lr.accuracy(final, eval_x, eval_y, k=1)
    top5 = 100.0 * lr.accuracy(final, eval_x, eval_y, k=min(5, num_classes))
    log(f"  {PROTOCOL} [{trunk}] {layer}: {eval_split} top-1 {top1:.2f}% "
        f"top-5 {top5:.2f}% (l2={best_l2:g}, chosen on {val_split})")
    entries.append(dict(
        protocol=PROTOCOL, trunk=trunk, layer=layer, pooling=pooling,
        train_split=fit_split, eval_split=eval_split, fraction=1.0,
        top1=top1, top5=top5,
        hyperparameters=dict(
            l2=best_l2, l2_grid=list(l2_grid), selected_on=val_split,
            val_top1_by_l2={f"{k:g}": 100.0 * v
                            for k, v in search["val_top1_by_l2"].items()},
            max_iter=max_iter),
        extract_time_s=round(t_extracted - t0, 2),
        fit_time_s=round(time.time() - t_layer, 2)))
  return entries
