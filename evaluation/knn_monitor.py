"""A kNN monitor during pretext training: how the representation is doing, now.

Every `every_loops` training loops, the trunk being trained embeds the first
`eval_examples` images of `eval_split` and the first `train_examples` of
`train_split` (the representation pipeline: no augmentation, no random op),
and the kNN protocol (evaluation/knn.py: cosine, exp(sim / T) votes) scores
the former against the latter. The top-1 goes to the progress line and to
TensorBoard (`monitor/knn_top1`).

It reads the model in inference mode (batch norm uses, and does not update,
its moving statistics), draws no random number and leaves the training
iterator alone, so a run with the monitor takes exactly the steps of a run
without it (tests/evaluation/test_knn_monitor.py checks the weights). Off by
default (gin: `knn_monitor.every_loops = N` turns it on). train_and_eval.py
(run_lib.py) builds it and hands it to the trainer as its loop's monitor, so
self_supervision/ needs nothing from evaluation/.
"""
import time
from typing import Callable, Dict, Optional

import gin

from evaluation import knn
from evaluation import representations


class FirstExamples:
  """A dataset's view with only the first `counts[split]` examples of a split.

  Delegates everything else to `dataset`; it has no `as_batched_dataset`, so
  input pipelines read it example by example (and `take` stops early).
  """

  def __init__(self, dataset, counts: Dict[str, int]):
    self._dataset = dataset
    self._counts = {s: min(int(n), dataset.num_examples(s)) for s, n in counts.items()}

  def num_examples(self, split: str) -> int:
    return self._counts.get(split, self._dataset.num_examples(split))

  def as_dataset(self, split, *, input_context=None, **kwargs):
    if split not in self._counts:
      return self._dataset.as_dataset(split, input_context=input_context,
                                      **kwargs)
    # The first examples of the split, then this input pipeline's share of
    # them (every n-th, as the datasets shard): taken after sharding, each
    # worker would read the first examples of its own shard.
    ds = self._dataset.as_dataset(split, **kwargs).take(self._counts[split])
    if input_context is not None and input_context.num_input_pipelines > 1:
      ds = ds.shard(input_context.num_input_pipelines,
                    input_context.input_pipeline_id)
    return ds

  def __getattr__(self, name):
    if name == "as_batched_dataset":
      raise AttributeError(name)
    return getattr(self._dataset, name)


@gin.configurable("knn_monitor", denylist=["task", "model", "dataset", "strategy",
                                           "log"])
class KnnMonitor:
  """kNN top-1 of the live trunk on fixed subsets; call it with the step."""

  def __init__(self, task, model, dataset, *, every_loops: int = 0,
               layer: str = "pre_logits", train_split: str = "train",
               eval_split: str = "val", train_examples: int = 5000,
               eval_examples: int = 1000, k: int = 20, temperature: float = 0.07,
               batch_size: int = 256, pooling: str = "adaptive_max",
               strategy=None, log: Callable[[str], None] = print):
    """every_loops: run every this many training loops; 0 (default) is off."""
    if every_loops < 0:
      raise ValueError(f"knn_monitor.every_loops = {every_loops}: use 0 (off) or "
                       f"a positive number of training loops.")
    self.every_loops = int(every_loops)
    self.layer, self.k, self.temperature = layer, int(k), float(temperature)
    self.train_split, self.eval_split = train_split, eval_split
    self.batch_size, self.log = batch_size, log
    self.subsets = FirstExamples(dataset, {train_split: train_examples,
                                           eval_split: eval_examples})
    self.num_classes = dataset.num_classes
    self._loops = 0
    self._extractor = (representations.Extractor(
        task, model, [layer], pooling=pooling, strategy=strategy)
                       if self.enabled else None)

  @property
  def enabled(self) -> bool:
    return self.every_loops > 0

  def due(self) -> bool:
    """Counts one training loop; True on every `every_loops`-th."""
    self._loops += 1
    return self.enabled and self._loops % self.every_loops == 0

  def __call__(self) -> Dict[str, float]:
    """{'knn_top1': percent} of the model as it is now."""
    t0 = time.time()
    quiet = lambda _: None  # noqa: E731  (the progress line reports it)
    train_x, train_y = self._extractor(self.subsets, self.train_split,
                                       batch_size=self.batch_size, log=quiet)
    eval_x, eval_y = self._extractor(self.subsets, self.eval_split,
                                     batch_size=self.batch_size, log=quiet)
    k = min(self.k, len(train_y))
    sims, labels = knn.neighbours(train_x[self.layer], train_y, eval_x[self.layer], k)
    scores = knn.vote(sims, labels, self.num_classes, self.temperature)
    return dict(knn_top1=100.0 * knn.accuracy(scores, eval_y, 1),
                knn_seconds=time.time() - t0)


def make(task, model, dataset, strategy, log) -> Optional[KnnMonitor]:
  """The gin-configured monitor, or None when it is off."""
  monitor = KnnMonitor(task, model, dataset, strategy=strategy, log=log)
  return monitor if monitor.enabled else None
