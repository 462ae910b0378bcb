"""How training steps are driven, whatever is trained (orbit's Controller shape).

The caller says what one step computes (`loss_fn(batch) -> (per_example_loss,
outputs)`) and which model's variables it trains; `Loop` does the rest, the
same way for the pretext trainer and the SGD evaluation heads:

  - `steps_per_loop` steps run inside one `tf.function` call (one host round
    trip), each under `strategy.run` on every replica;
  - the loss is averaged over the GLOBAL batch (`tf.nn.compute_average_loss`)
    and the model's regularization losses are scaled by the replica count,
    so summing the replicas' gradients (what `apply_gradients` does under a
    strategy) gives the gradient of the global objective;
  - after every loop: metrics, a NaN guard, a progress line (step, loss,
    metrics, lr, images/s, ETA), TensorBoard summaries, and a checkpoint
    every `checkpoint_secs`;
  - a resumed run's input pipelines start where the uninterrupted run's are
    at that step (`start_position`), with the same seed: it sees the same
    examples in the same order with the same augmentations, so with op
    determinism on it ends with the same weights.

Resume order is the caller's (see `Loop.restore`): the loop's own checkpoint
directory first.
"""
import time
from typing import Callable, Dict, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from training import checkpoints as checkpoints_lib
from training import precision
from training import preemption
from training import strategy as strategy_lib

def start_position(step: int, global_batch_size: int,
                   input_context: tf.distribute.InputContext) -> int:
  """Examples one input pipeline has delivered after `step` steps.

  Each step takes `global_batch_size` examples, an equal share from every
  input pipeline (the replicas of one worker share its pipeline).
  """
  return step * global_batch_size // input_context.num_input_pipelines


def _is_tpu(strategy: tf.distribute.Strategy) -> bool:
  return isinstance(strategy, (tf.distribute.TPUStrategy,
                               tf.distribute.experimental.TPUStrategy))


def check_jit_compile(jit_compile: bool, strategy: tf.distribute.Strategy,
                      binding: str = "train.jit_compile") -> bool:
  """`jit_compile`, once the strategy is known to allow it; else one clear error.

  XLA compiles a replica's whole step, update and metrics included. Several
  replicas of a (MultiWorker)MirroredStrategy all-reduce the gradients and
  the synchronized batch norm's moments through `merge_call`, which cannot
  run inside an XLA program; a TPU compiles cross-replica sums into it.
  """
  replicas = strategy.num_replicas_in_sync
  if jit_compile and replicas > 1 and not _is_tpu(strategy):
    raise ValueError(
        f"{binding} = True compiles each replica's whole step with XLA, which "
        f"{type(strategy).__name__} cannot do with {replicas} replicas (its "
        f"all-reduces run outside XLA); set {binding} = False, or run on one "
        f"device (--strategy=default). On a TPU every step is XLA-compiled.")
  return bool(jit_compile)


def format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def check_batch(global_batch_size: int, strategy: tf.distribute.Strategy,
                binding: str) -> int:
  """The per-replica batch; a clear error naming `binding` if it does not split."""
  replicas = strategy.num_replicas_in_sync
  if global_batch_size % replicas:
    raise ValueError(
        f"{binding}={global_batch_size} is not divisible by the {replicas} "
        f"replicas; use a multiple of {replicas}.")
  return global_batch_size // replicas


LossFn = Callable[[Dict[str, tf.Tensor]], Tuple[tf.Tensor, Dict]]


class Loop:
  """Trains `model` with `optimizer` on batches of `dataset_fn`.

  Args:
    strategy: the tf.distribute strategy; `model`, `optimizer` and `metrics`
      must have been created under its scope.
    model: its `trainable_variables` are trained and its `losses` (weight
      decay) added to the objective.
    optimizer: a Keras optimizer; its `iterations` is the step counter.
    loss_fn: what one step computes on one replica's batch: returns the
      per-example loss [N] and outputs for `update_metrics`.
    dataset_fn: (tf.distribute.InputContext, start) -> per-replica tf.data
      pipeline of training batches, repeated forever, beginning at the
      pipeline's `start`-th example (0 for a new run); seeded by the caller
      with the same seed whatever `start`.
    total_steps: where the whole training ends (for the progress line's ETA).
    global_batch_size: source examples per step, all replicas together.
    copies_per_example: network inputs per source example (4 for rotation);
      images/s is printed in both when it is not 1.
    metrics: the caller's metrics (created under the strategy's scope);
      'loss' and 'weight_decay' are added.
    update_metrics: (metrics, outputs) -> None, run on every replica.
    schedule: step -> learning rate, for the progress line.
    ckpt_dir: where checkpoints of model + optimizer go.
    checkpoint_secs: save every so many seconds (None: only on `save()`).
    summary_writer: TensorBoard writer for train/* scalars.
    lr_binding, batch_binding: the gin bindings that set the learning rate
      and the batch, named in the NaN and batch-split messages.
    jit_compile: XLA compiles the whole replica step, forward, backward, the
      update and the metrics, as TPUStrategy compiles every step (see
      `check_jit_compile` for the strategies that cannot).
    prefix: put before every log line (an evaluation head's name).
  """

  def __init__(self, *, strategy: tf.distribute.Strategy, model: keras.Model,
               optimizer, loss_fn: LossFn, dataset_fn, total_steps: int,
               global_batch_size: int, steps_per_loop: int, ckpt_dir: str,
               summary_writer, schedule,
               metrics: Optional[Dict[str, keras.metrics.Metric]] = None,
               update_metrics: Optional[Callable] = None,
               copies_per_example: int = 1,
               checkpoint_secs: Optional[float] = 600, max_to_keep: int = 3,
               keep_checkpoint_every_hours: Optional[float] = None,
               lr_binding: str = "scaled_learning_rate.base_lr",
               batch_binding: str = "train.batch_size",
               jit_compile: bool = False, monitor=None,
               log: Callable[[str], None] = print, prefix: str = ""):
    check_batch(global_batch_size, strategy, batch_binding)
    # An observer of the model between loops (evaluation/knn_monitor.py):
    # `due()` is asked after every loop, `monitor()` returns {name: value} for
    # the progress line and TensorBoard (`monitor/<name>`).
    self.monitor = monitor
    # With jit_compile, what one replica does in a step is one XLA program,
    # as on a TPU; TPUStrategy compiles it that way already.
    self._step_fn = self._replica_step
    if check_jit_compile(jit_compile, strategy) and not _is_tpu(strategy):
      self._step_fn = tf.function(self._replica_step, jit_compile=True)
    self.strategy, self.model, self.optimizer = strategy, model, optimizer
    self.loss_fn, self.dataset_fn = loss_fn, dataset_fn
    self.total_steps, self.global_batch_size = int(total_steps), global_batch_size
    self.copies_per_example = copies_per_example
    self.steps_per_loop = int(steps_per_loop)
    self.checkpoint_secs = checkpoint_secs
    self.schedule, self.lr_binding = schedule, lr_binding
    self.summary_writer, self.log, self.prefix = summary_writer, log, prefix
    self.update_metrics = update_metrics or (lambda metrics, outputs: None)
    with strategy.scope():
      self.metrics = dict(metrics or {})
      self.metrics["loss"] = keras.metrics.Mean(name="loss")
      self.metrics["weight_decay"] = keras.metrics.Mean(name="weight_decay")
    self.checkpoints = checkpoints_lib.Manager(
        ckpt_dir, optimizer.iterations, max_to_keep=max_to_keep,
        keep_checkpoint_every_hours=keep_checkpoint_every_hours,
        strategy=strategy, model=model, optimizer=optimizer)
    self._iterator = None
    self._last_save = time.time()
    self._rate_start = None  # (time, step) after the first, tracing, loop

  @property
  def step(self) -> int:
    return int(self.optimizer.iterations.numpy())

  def restore(self) -> Optional[str]:
    """Restores the newest checkpoint of `ckpt_dir`; its prefix, or None."""
    return self.checkpoints.restore_latest(log=self.log)

  def save(self) -> str:
    self._last_save = time.time()
    return self.checkpoints.save(self.step)

  # --- compiled -----------------------------------------------------------

  def _gradients(self, batch):
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape:
      per_example, outputs = self.loss_fn(batch)
      # float32 whatever the layers compute in (training/precision.py).
      task_loss = tf.nn.compute_average_loss(tf.cast(per_example, tf.float32))
      decay = (tf.add_n(self.model.losses) if self.model.losses
               else tf.constant(0.0))
      loss = task_loss + tf.nn.scale_regularization_loss(decay)
      # float16 runs differentiate a scaled loss; apply_gradients unscales.
      loss = precision.scale_loss(self.optimizer, loss)
    return tape.gradient(loss, variables), task_loss, decay, outputs

  def _replica_step(self, batch):
    grads, task_loss, decay, outputs = self._gradients(batch)
    self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
    # The replica's share of the mean times the replica count is the global
    # mean, whatever the number of replicas.
    self.metrics["loss"].update_state(
        task_loss * self.strategy.num_replicas_in_sync)
    self.metrics["weight_decay"].update_state(decay)
    self.update_metrics(self.metrics, outputs)

  @tf.function
  def _train_loop(self, iterator, num_steps):
    for _ in tf.range(num_steps):
      self.strategy.run(self._step_fn, args=(next(iterator),))

  # --- driving ------------------------------------------------------------

  def _iterator_from_here(self):
    if self._iterator is None:
      step = self.step
      self._iterator = iter(self.strategy.distribute_datasets_from_function(
          lambda ctx: self.dataset_fn(
              ctx, start_position(step, self.global_batch_size, ctx))))
    return self._iterator

  def train(self, until_step: int) -> Dict[str, float]:
    """Trains up to step `until_step`.

    Returns each metric averaged over the steps this call ran (an epoch's
    training loss for the SGD heads); empty when there was nothing to run.

    Raises:
      FloatingPointError: the loss or weight decay is not finite; nothing of
        that loop was saved.
    """
    iterator = self._iterator_from_here()
    sums, steps_run = {}, 0
    step = self.step
    while step < until_step:
      n = min(self.steps_per_loop, until_step - step)
      t0 = time.time()
      self._train_loop(iterator, tf.constant(n, tf.int32))
      results = {k: float(m.result()) for k, m in self.metrics.items()}
      step = self.step
      dt = time.time() - t0
      self._check_finite(results, step)
      observed = (self.monitor() if self.monitor is not None and self.monitor.due()
                  else {})
      self._report(results, step, n, dt, observed)
      for k, v in results.items():
        sums[k] = sums.get(k, 0.0) + v * n
      steps_run += n
      for m in self.metrics.values():
        m.reset_state()
      # Every worker must make the same choice: a save or a stop is a
      # collective (training/strategy.agree).
      stop, save_now = strategy_lib.agree(
          self.strategy, preemption.requested(),
          self.checkpoint_secs is not None
          and time.time() - self._last_save >= self.checkpoint_secs)
      if stop:
        path = self.save()
        raise preemption.Preempted(
            f"{self.prefix}{preemption.reason()}; saved {path} at step {step}. Rerun "
            f"the same command to resume from it.")
      if save_now:
        self.save()
    return {k: v / steps_run for k, v in sums.items()}

  def _check_finite(self, results, step):
    if np.isfinite(results["loss"]) and np.isfinite(results["weight_decay"]):
      return
    decay = ("" if np.isfinite(results["weight_decay"]) else
             f" and its weight decay term {results['weight_decay']}")
    raise FloatingPointError(
        f"{self.prefix}The training loss is {results['loss']}{decay} at step "
        f"{step}. "
        f"Nothing was saved for this loop; the last good checkpoint is "
        f"{self.checkpoints.latest_checkpoint or 'none (the run just started)'}"
        f". Lower {self.lr_binding}, or check the input pipeline for bad "
        f"images.")

  def _report(self, results, step, n, dt, observed=None):
    images_per_sec = n * self.global_batch_size / dt
    if self._rate_start is None:
      # The first loop includes tracing; don't let it skew the ETA.
      self._rate_start = (time.time(), step)
      eta = (self.total_steps - step) * dt / n
    else:
      t_ref, step_ref = self._rate_start
      rate = (step - step_ref) / max(time.time() - t_ref, 1e-9)
      eta = (self.total_steps - step) / max(rate, 1e-9)
    lr = float(self.schedule(step))
    metric_text = " ".join(f"{k}={v:.4f}" for k, v in results.items()
                           if k != "loss")
    rate_text = f"{images_per_sec:.0f} img/s"
    if self.copies_per_example != 1:
      rate_text += (f" ({images_per_sec * self.copies_per_example:.0f} "
                    f"inputs/s)")
    observed = observed or {}
    observed_text = "".join(f" | {k}={v:.2f}" for k, v in observed.items())
    self.log(f"{self.prefix}step {step}/{self.total_steps} "
             f"loss={results['loss']:.4f} {metric_text} lr={lr:.4g} "
             f"{rate_text} ETA {format_duration(eta)}{observed_text}")
    with self.summary_writer.as_default(step=step):
      for k, v in observed.items():
        tf.summary.scalar(f"monitor/{k}", v)
      for k, v in results.items():
        tf.summary.scalar(f"train/{k}", v)
      tf.summary.scalar("train/learning_rate", lr)
      tf.summary.scalar("train/images_per_sec", images_per_sec)
      if self.copies_per_example != 1:
        tf.summary.scalar("train/inputs_per_sec",
                          images_per_sec * self.copies_per_example)



def whole_rows_per_replica(batch_size: int,
                           strategy: tf.distribute.Strategy) -> int:
  """`batch_size` rounded up to a multiple of the replicas: for evaluation
  passes, where the batch size is only a speed setting and padding
  (`pad_batches`) fills the difference."""
  replicas = strategy.num_replicas_in_sync
  return -(-batch_size // replicas) * replicas


def pad_batches(ds: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
  """Batches of dicts padded with zero rows to `batch_size`, plus 'valid'.

  Every field is padded along its first (batch) dimension; 'valid' is int32
  [batch_size], 1 for the real rows (a prefix) and 0 for the padding.
  Integer, not bool: strategy.gather refuses bool tensors. Why pad: a batch
  with fewer rows than replicas leaves some replica an empty batch, and TF
  2.21's CPU Conv2D returns a tensor of its input's shape for an empty
  batch, which fails the next layer; and one static shape means a compiled
  consumer traces once.
  """
  def pad(batch):
    n = tf.shape(batch["label"])[0]

    def pad_rows(x):
      x = tf.pad(x, [[0, batch_size - n]] + [[0, 0]] * (x.shape.rank - 1))
      return tf.ensure_shape(x, [batch_size] + x.shape[1:].as_list())

    out = {k: pad_rows(v) for k, v in batch.items()}
    out["valid"] = tf.cast(tf.range(batch_size) < n, tf.int32)
    return out

  return ds.map(pad)


def distribute_eval_batches(strategy: tf.distribute.Strategy, make_batches,
                            num_examples: int, global_batch_size: int,
                            binding: str = "train.eval_batch_size"):
  """One ordered evaluation pass, split between the replicas of every worker.

  Args:
    make_batches: (tf.distribute.InputContext, per_replica_batch) -> this
      input pipeline's share of the split in batches of dicts (one pass):
      pipeline i of n takes the examples at positions i, i + n, ... (what
      `input_context` does to every dataset of datasets/), so each worker
      reads and preprocesses only its own shard.
    num_examples: examples in the split.
    global_batch_size: examples per step, all replicas together; `binding`
      names it in the error when it does not divide by the replicas.

  Returns:
    A distributed dataset of per-replica batches padded to the per-replica
    size with 'valid' int32 [b] (1 for an example, 0 for padding; see
    `pad_batches`). Every replica gets ceil(num_examples /
    global_batch_size) batches, the last ones all padding where its shard
    is shorter: each batch is a collective step, and a replica that stopped
    early would leave the others waiting. Global batch k holds the examples
    at positions [k G, (k + 1) G) of the split; within it they are grouped
    by replica, so a consumer that gathers them restores the split's order
    by their 'index' (representations.Extractor does).
  """
  per_replica = check_batch(global_batch_size, strategy, binding)
  steps = -(-int(num_examples) // global_batch_size)

  def dataset_fn(ctx):
    local_replicas = ctx.num_replicas_in_sync // ctx.num_input_pipelines
    ds = pad_batches(make_batches(ctx, per_replica), per_replica)
    padding = tf.data.Dataset.from_tensors(
        {k: tf.zeros(s.shape, s.dtype) for k, s in ds.element_spec.items()})
    return ds.concatenate(padding.repeat()).take(steps * local_replicas)

  return strategy.distribute_datasets_from_function(dataset_fn)


def row_weights(valid: tf.Tensor, num_rows: int) -> tf.Tensor:
  """Each network input's weight in a padded batch: float32 [num_rows].

  valid: int [B], 1 for a real example, 0 for padding (see `pad_batches`).
  num_rows: N = B * copies, the rows of the task's per-example loss, ordered
  example-major (row b * copies + j comes from example b), as every task
  orders them. Both sizes are static: a padded batch has one shape.
  """
  examples = valid.shape[0]
  if examples is None or num_rows is None or num_rows % examples:
    raise ValueError(
        f"A padded batch of {examples} examples gave {num_rows} loss rows; "
        f"compute_loss must return copies x examples rows, example-major.")
  return tf.repeat(tf.cast(valid, tf.float32), num_rows // examples)


class _RowWeighted:
  """A metric whose `update_state` weighs row i of its values by weights[i]."""

  def __init__(self, name: str, metric, weights: tf.Tensor):
    self._name, self._metric, self._weights = name, metric, weights

  def update_state(self, *args, sample_weight=None, **kwargs):
    rows = tf.convert_to_tensor(args[0]).shape
    if rows.rank == 0 or rows[0] != self._weights.shape[0]:
      raise ValueError(
          f"Metric {self._name!r} was updated with values of shape {rows}; "
          f"in an evaluation pass every metric takes one value per loss row "
          f"([{self._weights.shape[0]}, ...]), so that padding weighs nothing.")
    weights = self._weights
    if sample_weight is not None:
      weights *= tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
    return self._metric.update_state(*args, sample_weight=weights, **kwargs)

  def __getattr__(self, name):
    return getattr(self._metric, name)


def weighted_metrics(metrics: Dict[str, keras.metrics.Metric],
                     weights: tf.Tensor) -> Dict[str, _RowWeighted]:
  """`metrics` as an `update_metrics` sees them: each update weighs row i by
  `weights[i]` [N] (`row_weights`), so padding counts for nothing and each
  example counts once, whatever update_metrics does with the rows."""
  return {k: _RowWeighted(k, m, weights) for k, m in metrics.items()}


class EvalLoop:
  """One ordered pass of `replica_fn(batch)` over a split, on every replica.

  `replica_fn` updates metrics (created under the strategy's scope) from a
  per-replica batch padded with 'valid' (see `distribute_eval_batches`);
  the per-batch function is compiled once and reused by every pass.
  """

  def __init__(self, strategy: tf.distribute.Strategy, replica_fn):
    self.strategy, self.replica_fn = strategy, replica_fn

  @tf.function
  def _batch(self, batch):
    self.strategy.run(self.replica_fn, args=(batch,))

  def run(self, make_batches, num_examples: int, global_batch_size: int,
          binding: str = "train.eval_batch_size") -> None:
    """Runs every batch of the split; arguments as `distribute_eval_batches`."""
    for batch in distribute_eval_batches(self.strategy, make_batches,
                                         num_examples, global_batch_size,
                                         binding):
      self._batch(batch)
