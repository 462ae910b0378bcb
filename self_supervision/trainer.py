"""The pretext trainer: a task's step driven by the shared training loop.

What one step computes belongs to the task (`task.compute_loss`); how steps are
driven (compiled loops, checkpoints, summaries, progress, NaN guard, resume
seed) belongs to `training/loop.py`. This file joins the two for a run: the
schedule in epochs of `train_split`, the optimizer, the input pipeline, and
the pretext evaluation on `eval_split`.

Resume order (see `Trainer.restore`): the workdir's latest checkpoint wins; only
a fresh workdir starts from initialisation (or from `init_checkpoint`: a
checkpoint prefix, or another run's workdir, meaning its newest checkpoint).
"""
from typing import Callable, Dict, Optional, Sequence

import gin
import tensorflow as tf

from datasets import input_pipeline
from self_supervision import task as task_lib
from training import checkpoints as checkpoints_lib
from training import loop as loop_lib
from training import optimizer as optimizer_lib
from training import precision as precision_lib
from training import schedule as schedule_lib
from training import strategy as strategy_lib
from training import workdir as workdir_lib


@gin.configurable("train", denylist=["task", "dataset", "workdir", "strategy",
                                     "seed", "monitor", "log"])
class Trainer:
  """Trains `task.build_model()` on `dataset` under `strategy`.

  Gin binds the schedule and loop settings as `train.<argument>`; durations are
  in epochs of the `train_split` (docs/protocol.md §4 defaults). `precision` is one of
  training.precision.PRECISIONS ('mixed': bfloat16 on TPU and bf16 CPUs,
  float16 with loss scaling on GPU); `jit_compile` compiles each replica's
  whole step with XLA, update and metrics included (one replica, or a TPU;
  BENCHMARKS.md has the measurements behind both defaults being off).
  `monitor`, given the model being trained, builds the loop's observer
  between loops (training/loop.py), or returns None; the caller chooses it
  (train_and_eval.py: evaluation/knn_monitor.py).
  """

  def __init__(self, task: task_lib.Task, dataset, workdir: str,
               strategy: tf.distribute.Strategy, *, seed: int = 0,
               batch_size: int = 256, epochs: float = 35,
               warmup_epochs: float = 5, decay_epochs: Sequence[float] = (15, 25),
               decay_factor: float = 0.1, optimizer: str = "sgd",
               momentum: float = 0.9, steps_per_loop: int = 500,
               checkpoint_secs: float = 600, keep_checkpoint_every_hours: float = 4,
               max_to_keep: int = 3, train_split: str = "train",
               eval_split: str = "val", eval_batch_size: Optional[int] = None,
               cache_dataset: bool = False, shuffle_buffer: int = 10_000,
               init_checkpoint: Optional[str] = None,
               precision: str = "float32", jit_compile: bool = False,
               monitor: Optional[Callable] = None,
               log: Callable[[str], None] = print):
    self.task, self.dataset, self.strategy = task, dataset, strategy
    self.workdir, self.seed, self.log = workdir, seed, log
    self.train_split, self.eval_split = train_split, eval_split
    self.init_checkpoint = init_checkpoint
    per_replica = loop_lib.check_batch(batch_size, strategy, "train.batch_size")
    self.global_batch_size = batch_size
    self.eval_batch_size = eval_batch_size or batch_size
    loop_lib.check_batch(self.eval_batch_size, strategy, "train.eval_batch_size")
    num_train = dataset.num_examples(train_split)
    self.total_steps = schedule_lib.epochs_to_steps(epochs, num_train, batch_size)
    self.epochs = epochs
    self.schedule = schedule_lib.make_schedule(
        peak_lr=schedule_lib.scaled_learning_rate(batch_size),
        num_examples=num_train, global_batch_size=batch_size,
        warmup_epochs=warmup_epochs, decay_epochs=decay_epochs,
        factor=decay_factor)

    # train.precision: 'float32', 'mixed' (the device's fast dtype), ...
    self.compute_dtype = precision_lib.resolve(
        precision, precision_lib.device_kind(strategy), log=log)
    with strategy.scope(), precision_lib.policy_scope(self.compute_dtype):
      self.model = task.make_model(dataset, seed, train_split)
      self.optimizer = precision_lib.wrap_optimizer(
          optimizer_lib.make_optimizer(optimizer, self.schedule, momentum),
          self.compute_dtype)
      self.eval_metrics = task.make_metrics()
      train_metrics = task.make_metrics()
    optimizer_lib.build(self.optimizer, self.model.trainable_variables, strategy)

    pp_train = task.preprocess(task_lib.TRAIN)

    def dataset_fn(ctx, start):
      return input_pipeline.make_dataset(
          dataset, train_split, pp_train, per_replica, training=True,
          seed=seed, start=start, input_context=ctx, cache=cache_dataset,
          shuffle_buffer=shuffle_buffer)

    self.summary_writer = strategy_lib.summary_writer(
        workdir_lib.of(workdir).summaries)
    self.loop = loop_lib.Loop(
        strategy=strategy, model=self.model, optimizer=self.optimizer,
        loss_fn=lambda batch: task.compute_loss(self.model, batch, True),
        dataset_fn=dataset_fn, total_steps=self.total_steps,
        global_batch_size=batch_size,
        copies_per_example=task.copies_per_example,
        metrics=train_metrics, update_metrics=task.update_metrics,
        schedule=self.schedule, steps_per_loop=steps_per_loop,
        ckpt_dir=checkpoints_lib.directory(workdir),
        checkpoint_secs=checkpoint_secs, max_to_keep=max_to_keep,
        keep_checkpoint_every_hours=keep_checkpoint_every_hours,
        summary_writer=self.summary_writer,
        lr_binding="scaled_learning_rate.base_lr", jit_compile=jit_compile,
        monitor=monitor(self.model) if monitor is not None else None,
        log=log)
    self.manager = self.loop.checkpoints

    self.pretext_eval = loop_lib.EvalLoop(strategy, self.pretext_eval_step)

  def pretext_eval_step(self, batch: Dict[str, tf.Tensor]) -> None:
    """One replica's share of the pretext evaluation: updates `eval_metrics`.

    batch: a padded per-replica batch, 'valid' int32 [B] among its fields
    (training/loop.py `pad_batches`). The task runs on all B rows, one
    static shape (what XLA on a TPU compiles); the metrics weigh each
    network input by its example's 'valid', and a task whose loss couples
    rows (exemplar's mining) keeps the padding out itself.
    """
    per_example, outputs = self.task.compute_loss(self.model, batch, False)
    weights = loop_lib.row_weights(batch["valid"], per_example.shape[0])
    self.task.update_metrics(
        loop_lib.weighted_metrics(self.eval_metrics, weights), outputs)

  def restore(self) -> int:
    """Resume order: workdir checkpoint, else `init_checkpoint`, else fresh."""
    latest = self.loop.restore()
    if latest:
      self.log(f"Resumed from {latest} (step {self.step}).")
    elif self.init_checkpoint:
      prefix = checkpoints_lib.resolve(self.init_checkpoint)
      checkpoints_lib.restore(prefix, partial=True, must_match=False,
                              model=self.model)
      self.log(f"Initialised the model from {prefix}.")
    return self.step

  @property
  def step(self) -> int:
    return self.loop.step

  def train(self) -> int:
    """Trains to `total_steps` (resuming if possible); returns the final step."""
    start = self.restore()
    if start >= self.total_steps:
      # A 0-step run (the random-init baseline) saves its initialisation,
      # which eval mode and the export read like any other checkpoint. The
      # save is collective: a worker that looked after the chief had saved
      # would otherwise skip it (strategy.agree).
      (unsaved,) = strategy_lib.agree(self.strategy,
                                      not self.manager.latest_checkpoint)
      if unsaved:
        self.loop.save()
      self.log(f"Training already finished ({start}/{self.total_steps} steps).")
      return start
    self.log(f"Training {self.task.name} for {self.total_steps} steps "
             f"({self.epochs} epochs of {self.train_split}, global batch "
             f"{self.global_batch_size}, {self.strategy.num_replicas_in_sync} "
             f"replica(s), {self.compute_dtype} compute), from step {start}.")
    self.loop.train(self.total_steps)
    self.loop.save()
    self.summary_writer.flush()
    self.log(f"Training done at step {self.step}; checkpoint "
             f"{self.manager.latest_checkpoint}.")
    return self.step

  # --- pretext evaluation ----------------------------------------------------

  def evaluate_pretext(self) -> Dict[str, float]:
    """Pretext metrics on one ordered pass over `eval_split`."""
    pp = self.task.preprocess(task_lib.PRETEXT_EVAL)

    def make_batches(ctx, per_replica):
      return input_pipeline.make_dataset(
          self.dataset, self.eval_split, pp, per_replica, training=False,
          cache=False, input_context=ctx)
    for m in self.eval_metrics.values():
      m.reset_state()
    self.pretext_eval.run(make_batches,
                          self.dataset.num_examples(self.eval_split),
                          self.eval_batch_size)
    results = {k: float(m.result()) for k, m in self.eval_metrics.items()}
    with self.summary_writer.as_default(step=self.step):
      for k, v in results.items():
        tf.summary.scalar(f"pretext_eval/{k}", v)
    self.summary_writer.flush()
    return results
