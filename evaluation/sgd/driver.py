"""Drives an SGD head the way orbit's Controller drives a StandardTrainer and a
StandardEvaluator: build both, then train one epoch, evaluate, record, repeat.

Steps run in the shared training loop (`training/loop.py`: compiled loops,
progress, NaN guard, resume seed, checkpoints of what is trained and its
optimizer in the head's `checkpoints/`). After every epoch the head's top-1 /
top-5 on the eval split are logged, written to TensorBoard (`summaries/`) and
to `curve.json`: the accuracy-vs-epochs curve of paper Fig. 8.
"""
import dataclasses
import json
import os
import time
from typing import Callable, Dict, List, Tuple

import keras
import tensorflow as tf

from evaluation.sgd import inputs as inputs_lib
from training import loop as loop_lib
from training import optimizer as optimizer_lib
from training import schedule as schedule_lib
from training import strategy as strategy_lib
from training import workdir as workdir_lib


@dataclasses.dataclass(frozen=True)
class Plan:
  """The protocol's schedule in steps (docs/protocol.md §5).

  The peak learning rate for `first_decay_epochs`, times `decay_factor` then
  and again `second_decay_after` epochs later; `tail_epochs` after the first
  decay in total. Whole epochs are rounded up to steps.
  """
  lr_peak: float
  total_epochs: float
  steps_per_epoch: int
  total_steps: int
  lr: schedule_lib.WarmupPiecewiseConstant  # step - 1 -> learning rate

  @classmethod
  def of(cls, lr_peak: float, num_train: int, batch_size: int, *,
         first_decay_epochs: float, second_decay_after: float,
         tail_epochs: float, decay_factor: float) -> "Plan":
    to_steps = lambda e: schedule_lib.epochs_to_steps(e, num_train, batch_size)  # noqa: E731
    total_epochs = first_decay_epochs + tail_epochs
    lr = schedule_lib.WarmupPiecewiseConstant(
        lr_peak, 0, [to_steps(first_decay_epochs),
                     to_steps(first_decay_epochs + second_decay_after)],
        decay_factor)
    return cls(lr_peak, total_epochs, to_steps(1), to_steps(total_epochs), lr)

  def epoch_end(self, step: int) -> int:
    """The step the epoch running at `step` ends on."""
    return min((step // self.steps_per_epoch + 1) * self.steps_per_epoch,
               self.total_steps)

  def epoch(self, step: int) -> float:
    """Epochs done at `step`; the last point is the full run."""
    return (self.total_epochs if step == self.total_steps
            else step / self.steps_per_epoch)


def _write_json(path, doc):
  if not strategy_lib.is_chief():
    return
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(doc, f, indent=1)
  os.replace(tmp, path)


def _cross_entropy(labels, logits):
  return keras.losses.sparse_categorical_crossentropy(labels, logits,
                                                      from_logits=True)


class HeadTrainer:
  """orbit's StandardTrainer for a head: the loop over `model` (the head, or
  the head and a fine-tuned trunk), SGD with momentum, train top-1."""

  def __init__(self, *, inputs: inputs_lib.HeadInputs, head: keras.Model,
               model: tf.Module, plan: Plan, run_dir: workdir_lib.HeadDir,
               strategy, batch_size: int, momentum: float, steps_per_loop: int,
               seed: int, log: Callable[[str], None], prefix: str):
    with strategy.scope():
      self.optimizer = optimizer_lib.make_optimizer("sgd", plan.lr, momentum)
      metrics = dict(accuracy=keras.metrics.SparseCategoricalAccuracy())
    optimizer_lib.build(self.optimizer, model.trainable_variables, strategy)
    per_replica = loop_lib.check_batch(batch_size, strategy,
                                       "sgd_eval.batch_size")

    def loss_fn(batch):
      logits = head(inputs.features(batch, training=True), training=True)
      return (_cross_entropy(batch["label"], logits),
              {"labels": batch["label"], "logits": logits})

    def update_metrics(metrics, outputs):
      metrics["accuracy"].update_state(outputs["labels"], outputs["logits"])

    self.writer = strategy_lib.summary_writer(run_dir.summaries)
    self.loop = loop_lib.Loop(
        strategy=strategy, model=model, optimizer=self.optimizer,
        loss_fn=loss_fn,
        dataset_fn=lambda ctx, start: inputs.train_dataset(
            ctx, start, per_replica, seed),
        total_steps=plan.total_steps, global_batch_size=batch_size,
        metrics=metrics, update_metrics=update_metrics,
        schedule=lambda s: plan.lr(s - 1), steps_per_loop=steps_per_loop,
        ckpt_dir=run_dir.checkpoints, checkpoint_secs=None, max_to_keep=2,
        summary_writer=self.writer, lr_binding="sgd_eval.base_lr",
        batch_binding="sgd_eval.batch_size", log=log, prefix=prefix)

  @property
  def step(self) -> int:
    return self.loop.step

  def restore(self) -> int:
    """Resumes from the head's own latest checkpoint, if any; the step."""
    self.loop.restore()
    return self.loop.step

  def train(self, until_step: int) -> Tuple[float, float]:
    """Trains to `until_step`: (mean loss, train top-1 %) of the steps run."""
    out = self.loop.train(until_step)
    return out["loss"], 100.0 * out["accuracy"]


class HeadEvaluator:
  """orbit's StandardEvaluator for a head: top-1 / top-5 (%) on the eval split."""

  def __init__(self, *, inputs: inputs_lib.HeadInputs, head: keras.Model,
               num_classes: int, strategy, eval_batch_size: int):
    with strategy.scope():
      self._top1 = keras.metrics.SparseTopKCategoricalAccuracy(k=1)
      self._top5 = keras.metrics.SparseTopKCategoricalAccuracy(
          k=min(5, num_classes))
    self._inputs, self._strategy = inputs, strategy
    self._batch_size = eval_batch_size

    def replica_eval(batch):
      logits = head(inputs.features(batch), training=False)
      # Padding rows (loop.pad_batches) weigh nothing.
      self._top1.update_state(batch["label"], logits,
                              sample_weight=batch["valid"])
      self._top5.update_state(batch["label"], logits,
                              sample_weight=batch["valid"])
    self._loop = loop_lib.EvalLoop(strategy, replica_eval)

  def evaluate(self) -> Tuple[float, float]:
    self._top1.reset_state()
    self._top5.reset_state()
    self._loop.run(self._inputs.eval_dataset, self._inputs.num_eval,
                   loop_lib.whole_rows_per_replica(self._batch_size,
                                                   self._strategy))
    return 100.0 * float(self._top1.result()), 100.0 * float(self._top5.result())


def read_curve(run_dir: workdir_lib.HeadDir, step: int) -> List[Dict]:
  """The curve points recorded up to `step` (a resumed run's), [] if none."""
  if not os.path.exists(run_dir.curve):
    return []
  with open(run_dir.curve) as f:
    return [c for c in json.load(f)["curve"] if c["step"] <= step]


def train_and_evaluate(trainer: HeadTrainer, evaluator: HeadEvaluator,
                       plan: Plan, run_dir: workdir_lib.HeadDir, *,
                       describe: Dict, eval_split: str, summary: str,
                       log: Callable[[str], None], prefix: str) -> List[Dict]:
  """Resumes, then one epoch of training and one evaluation at a time.

  describe: {protocol, trunk, layer}, written into curve.json beside it.
  summary: the start line's middle (examples, batch, learning rate).

  Returns:
    the curve [{epoch, step, top1, top5, train_loss, train_top1}], whole.
  """
  step = trainer.restore()
  curve = read_curve(run_dir, step)
  if step >= plan.total_steps and curve and curve[-1]["step"] == step:
    log(f"{prefix}already trained ({step} steps).")
    return curve
  log(f"{prefix}{plan.total_steps} steps ({plan.total_epochs:g} epochs of "
      f"{summary}), from step {step}.")
  while step < plan.total_steps:
    t0 = time.time()
    loss, acc = trainer.train(plan.epoch_end(step))
    step = trainer.step
    t1, t5 = evaluator.evaluate()
    epoch = plan.epoch(step)
    curve.append(dict(epoch=round(epoch, 4), step=step, top1=t1, top5=t5,
                      train_loss=loss, train_top1=acc))
    log(f"  epoch {epoch:.2f}/{plan.total_epochs:g} step {step}/"
        f"{plan.total_steps} loss={loss:.4f} train top-1 {acc:.2f}% | "
        f"{eval_split} top-1 {t1:.2f}% top-5 {t5:.2f}% "
        f"lr={float(plan.lr(step - 1)):.3g} ({time.time() - t0:.1f}s)")
    with trainer.writer.as_default(step=step):
      tf.summary.scalar(f"{eval_split}/top1", t1)
      tf.summary.scalar(f"{eval_split}/top5", t5)
    # The curve point first: a checkpoint then always has its point, so a
    # run killed in between retrains that epoch instead of reporting the
    # previous epoch's accuracy as the final one.
    _write_json(run_dir.curve, dict(describe, curve=curve))
    trainer.loop.save()
  trainer.writer.flush()
  log(f"{prefix}{eval_split} top-1 {curve[-1]['top1']:.2f}% top-5 "
      f"{curve[-1]['top5']:.2f}%")
  return curve
