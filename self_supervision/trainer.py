"""How steps are driven: the training loop, checkpoints, summaries, pretext eval.

What one step does belongs to the task (`task.compute_loss`); this file only
distributes it with `tf.distribute`, runs `steps_per_loop` steps per host round
trip inside one `tf.function`, and keeps the run resumable.

Resume order (see `Trainer.restore`): the workdir's latest checkpoint wins; only
a fresh workdir starts from initialisation (or from `init_checkpoint`).
"""
import math
import os
import time
from typing import Callable, Dict, Optional, Sequence

import gin
import keras
import numpy as np
import tensorflow as tf

from datasets import input_pipeline
from self_supervision import schedule as schedule_lib
from self_supervision import task as task_lib


def _format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def make_optimizer(name: str, learning_rate, momentum: float):
  if name == "sgd":
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
  if name == "adam":
    return keras.optimizers.Adam(learning_rate=learning_rate)
  raise ValueError(f"Unknown optimizer {name!r}; use 'sgd' or 'adam'.")


def build_model(task: task_lib.Task, dataset, split: str, seed: int):
  """`task.build_model()` with its variables created, initialised from `seed`.

  Variables are created by one eager call on a zero batch shaped like the
  task's training input, so checkpoints can be restored into the model at once.
  Call under the strategy's scope when there is one.
  """
  keras.utils.set_random_seed(seed)
  model = task.build_model()
  spec = input_pipeline.make_dataset(
      dataset, split, task.preprocess(task_lib.TRAIN), 1, training=False,
      repeat=False).element_spec
  zeros = {k: tf.zeros([1] + s.shape[1:].as_list(), s.dtype)
           for k, s in spec.items()}
  task.compute_loss(model, zeros, training=False)
  return model


@gin.configurable("train", denylist=["task", "dataset", "workdir", "strategy",
                                     "seed", "log"])
class Trainer:
  """Trains `task.build_model()` on `dataset` under `strategy`.

  Gin binds the schedule and loop settings as `train.<argument>`; durations are
  in epochs of the `train_split` (SPEC §4 defaults).
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
               log: Callable[[str], None] = print):
    self.task, self.dataset, self.strategy = task, dataset, strategy
    self.workdir, self.seed, self.log = workdir, seed, log
    self.steps_per_loop = int(steps_per_loop)
    self.checkpoint_secs = checkpoint_secs
    self.train_split, self.eval_split = train_split, eval_split
    self.cache_dataset, self.shuffle_buffer = cache_dataset, shuffle_buffer
    self.init_checkpoint = init_checkpoint
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
      raise ValueError(
          f"train.batch_size={batch_size} is not divisible by the {replicas} "
          f"replicas; use a multiple of {replicas}.")
    self.global_batch_size = batch_size
    self.eval_batch_size = eval_batch_size or batch_size
    num_train = dataset.num_examples(train_split)
    self.total_steps = schedule_lib.epochs_to_steps(epochs, num_train, batch_size)
    self.epochs = epochs
    peak_lr = schedule_lib.scaled_learning_rate(batch_size)
    self.schedule = schedule_lib.make_schedule(
        peak_lr=peak_lr, num_examples=num_train, global_batch_size=batch_size,
        warmup_epochs=warmup_epochs, decay_epochs=decay_epochs,
        factor=decay_factor)

    with strategy.scope():
      self.model = build_model(task, dataset, train_split, seed)
      self.optimizer = make_optimizer(optimizer, self.schedule, momentum)
      # Built in scope: apply_gradients inside tf.function needs the slots.
      self.optimizer.build(self.model.trainable_variables)
      self.metrics = task.make_metrics()
      self.metrics["loss"] = keras.metrics.Mean(name="loss")
      self.metrics["weight_decay"] = keras.metrics.Mean(name="weight_decay")
      self.eval_metrics = task.make_metrics()
    self.checkpoint = tf.train.Checkpoint(model=self.model,
                                          optimizer=self.optimizer)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(workdir, "checkpoints"),
        max_to_keep=max_to_keep,
        keep_checkpoint_every_n_hours=keep_checkpoint_every_hours,
        step_counter=self.optimizer.iterations)
    self.summary_writer = tf.summary.create_file_writer(
        os.path.join(workdir, "summaries"))

  # --- setup --------------------------------------------------------------


  def restore(self) -> int:
    """Resume order: workdir checkpoint, else `init_checkpoint`, else fresh."""
    latest = self.manager.latest_checkpoint
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
      self.log(f"Resumed from {latest} (step {self.step}).")
    elif self.init_checkpoint:
      tf.train.Checkpoint(model=self.model).restore(
          self.init_checkpoint).expect_partial()
      self.log(f"Initialised the model from {self.init_checkpoint}.")
    return self.step

  @property
  def step(self) -> int:
    return int(self.optimizer.iterations.numpy())

  def _train_dataset(self, start_step: int):
    per_replica = self.global_batch_size // self.strategy.num_replicas_in_sync
    pp = self.task.preprocess(task_lib.TRAIN)

    def dataset_fn(ctx):
      # A resumed run reseeds with its start step so it does not replay the
      # examples (and augmentations) it has already seen.
      return input_pipeline.make_dataset(
          self.dataset, self.train_split, pp, per_replica, training=True,
          seed=self.seed + 7919 * start_step, input_context=ctx,
          cache=self.cache_dataset, shuffle_buffer=self.shuffle_buffer)
    return self.strategy.distribute_datasets_from_function(dataset_fn)

  # --- compiled functions --------------------------------------------------

  def _train_step(self, batch):
    with tf.GradientTape() as tape:
      per_example, outputs = self.task.compute_loss(self.model, batch, True)
      task_loss = tf.nn.compute_average_loss(per_example)
      decay = (tf.add_n(self.model.losses) if self.model.losses
               else tf.constant(0.0))
      loss = task_loss + tf.nn.scale_regularization_loss(decay)
    grads = tape.gradient(loss, self.model.trainable_variables)
    self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
    # The replica's share of the mean times the replica count is the global
    # mean, whatever the number of replicas.
    self.metrics["loss"].update_state(
        task_loss * self.strategy.num_replicas_in_sync)
    self.metrics["weight_decay"].update_state(decay)
    self.task.update_metrics(self.metrics, outputs)

  @tf.function
  def _train_loop(self, iterator, num_steps):
    for _ in tf.range(num_steps):
      self.strategy.run(self._train_step, args=(next(iterator),))

  def _eval_step(self, batch):
    _, outputs = self.task.compute_loss(self.model, batch, False)
    self.task.update_metrics(self.eval_metrics, outputs)

  @tf.function
  def _eval_batch(self, batch):
    self.strategy.run(self._eval_step, args=(batch,))

  # --- driving -------------------------------------------------------------

  def train(self) -> int:
    """Trains to `total_steps` (resuming if possible); returns the final step."""
    start = self.restore()
    if start >= self.total_steps:
      if not self.manager.latest_checkpoint:
        # A 0-step run (the random-init baseline) saves its initialisation,
        # which eval mode and the export read like any other checkpoint.
        self.manager.save(checkpoint_number=start)
      self.log(f"Training already finished ({start}/{self.total_steps} steps).")
      return start
    self.log(f"Training {self.task.name} for {self.total_steps} steps "
             f"({self.epochs} epochs of {self.train_split}, global batch "
             f"{self.global_batch_size}, {self.strategy.num_replicas_in_sync} "
             f"replica(s)), from step {start}.")
    iterator = iter(self._train_dataset(start))
    last_save = time.time()
    loop_start = time.time()
    first_loop = True
    step = start
    while step < self.total_steps:
      n = min(self.steps_per_loop, self.total_steps - step)
      t0 = time.time()
      self._train_loop(iterator, tf.constant(n, tf.int32))
      results = {k: float(m.result()) for k, m in self.metrics.items()}
      step = self.step
      dt = time.time() - t0
      if not (np.isfinite(results["loss"]) and np.isfinite(results["weight_decay"])):
        raise FloatingPointError(
            f"The training loss is {results['loss']} at step {step}. Nothing "
            f"was saved for this loop; the last good checkpoint is "
            f"{self.manager.latest_checkpoint or 'none (the run just started)'}"
            f". Lower train.base_lr / scaled_learning_rate.base_lr, or check "
            f"the input pipeline for bad images.")
      images_per_sec = n * self.global_batch_size / dt
      if first_loop:
        # The first loop includes tracing; don't let it skew the ETA.
        loop_start, done_at_reference = time.time(), step
        first_loop = False
        eta = (self.total_steps - step) * dt / n
      else:
        rate = (step - done_at_reference) / (time.time() - loop_start)
        eta = (self.total_steps - step) / max(rate, 1e-9)
      lr = float(self.schedule(step))
      metric_text = " ".join(f"{k}={v:.4f}" for k, v in results.items()
                             if k != "loss")
      self.log(f"step {step}/{self.total_steps} loss={results['loss']:.4f} "
               f"{metric_text} lr={lr:.4g} {images_per_sec:.0f} img/s "
               f"ETA {_format_duration(eta)}")
      with self.summary_writer.as_default(step=step):
        for k, v in results.items():
          tf.summary.scalar(f"train/{k}", v)
        tf.summary.scalar("train/learning_rate", lr)
        tf.summary.scalar("train/images_per_sec", images_per_sec)
      for m in self.metrics.values():
        m.reset_state()
      if time.time() - last_save >= self.checkpoint_secs:
        self.manager.save(checkpoint_number=step)
        last_save = time.time()
    self.manager.save(checkpoint_number=step)
    self.summary_writer.flush()
    self.log(f"Training done at step {step}; checkpoint "
             f"{self.manager.latest_checkpoint}.")
    return step

  def evaluate_pretext(self) -> Dict[str, float]:
    """Pretext metrics on one ordered pass over `eval_split`."""
    ds = input_pipeline.make_dataset(
        self.dataset, self.eval_split, self.task.preprocess(task_lib.PRETEXT_EVAL),
        self.eval_batch_size, training=False, cache=False)
    for m in self.eval_metrics.values():
      m.reset_state()
    for batch in self.strategy.experimental_distribute_dataset(ds):
      self._eval_batch(batch)
    results = {k: float(m.result()) for k, m in self.eval_metrics.items()}
    with self.summary_writer.as_default(step=self.step):
      for k, v in results.items():
        tf.summary.scalar(f"pretext_eval/{k}", v)
    self.summary_writer.flush()
    return results
