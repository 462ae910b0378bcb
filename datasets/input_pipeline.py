"""From a dataset split and a pipeline string to batches, per input pipeline.

Randomness is made deterministic here: every example gets a `_rng` seed derived
from (run seed, input pipeline id, position in the stream), and the preprocessing
ops draw from it with stateless random ops. Parallel maps then give the same
batches for the same seed, whatever the thread scheduling.

The training stream is a function of (seed, pipeline, position) too: each epoch
is shuffled by a seed of its own, so a pipeline can be rebuilt at any position
(`start`) and yields exactly what an uninterrupted one yields from there on;
that is what makes a resumed run reproduce the uninterrupted run.
"""
from typing import Optional, Tuple

import tensorflow as tf

from datasets import preprocess_registry

AUTOTUNE = tf.data.AUTOTUNE


def _epoch_seed(seed: int, pipeline_id: int, epoch):
  """The shuffle seed of one epoch of one pipeline (`epoch`: int or int64 tensor)."""
  return seed * 1_000_003 + pipeline_id * 7_919 + epoch * 104_729


def stream(raw: tf.data.Dataset, *, start: int = 0, repeat: bool,
           shuffle_buffer: int, seed: int, pipeline_id: int = 0
           ) -> tf.data.Dataset:
  """(position, element) pairs of `raw`'s epochs, from position `start` on.

  Epoch e is `raw` shuffled with a buffer of `shuffle_buffer` (none when <= 1)
  and the seed `_epoch_seed(seed, pipeline_id, e)`, the same order every time
  it is built. Rebuilding at `start` skips at most one epoch of `raw`'s
  elements; `raw` should therefore hold records not yet decoded. Where `raw`'s
  length is not static (a filtered subset) it is counted once, by a pass.

  Args:
    raw: one epoch of one pipeline's examples (already sharded).
    start: elements this pipeline has already delivered (0 for a new run).
    repeat: repeat epochs forever; otherwise one epoch.
    shuffle_buffer, seed, pipeline_id: as above.

  Returns:
    tf.data.Dataset of (int64 position, element); positions count from 0 at
    the start of the first epoch, so the first one yielded is `start`.
  """
  def epoch(e):
    if shuffle_buffer <= 1:
      return raw
    return raw.shuffle(shuffle_buffer, seed=_epoch_seed(seed, pipeline_id, e),
                       reshuffle_each_iteration=False)

  def traced_epoch(e):
    # flat_map traces this with `e` a tensor. A tensor seed fails in TF's
    # seed logic when the global seed is a multiple of 2**31 - 1 (0, the
    # default run seed: it compares the tensor to 0 as a Python bool). This
    # function's own graph needs no global seed: the epoch seed fixes the
    # order by itself.
    tf.compat.v1.get_default_graph().seed = None
    return epoch(e)

  first_epoch, offset = 0, int(start)
  if start:
    length = int(raw.cardinality())
    if length < 0:
      length = int(raw.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
    if length == 0:
      raise ValueError("The training split of this input pipeline is empty; "
                       "check the dataset and its low-data fraction.")
    first_epoch, offset = divmod(int(start), length)
    if not repeat and first_epoch:
      raise ValueError(f"start={start} is past the one epoch of {length} "
                       f"examples.")
  if repeat:
    ds = tf.data.Dataset.range(first_epoch, tf.int64.max).flat_map(traced_epoch)
  else:
    ds = epoch(0)
  if offset:
    ds = ds.skip(offset)
  return ds.enumerate(start=int(start))


def _add_rng(seed: int, pipeline_id: int):
  def add(position, features):
    features = dict(features)
    features["_rng"] = tf.stack([
        tf.cast(seed * 1000003 + pipeline_id, tf.int64),
        tf.cast(position, tf.int64)])
    return features
  return add


def _drop_private(features, keep=()):
  return {k: v for k, v in features.items()
          if k in keep or (not k.startswith("_") and k not in ("index", "path"))}


def make_dataset(dataset, split: str, pp: str, batch_size: int, *,
                 training: bool, seed: int = 0, start: int = 0,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 shuffle_buffer: int = 10_000, cache: bool = False,
                 repeat: Optional[bool] = None,
                 batch_preprocessing: bool = True) -> tf.data.Dataset:
  """Batches of preprocessed examples of `split` for one input pipeline.

  Args:
    dataset: a `datasets.registry` dataset.
    split: 'train', 'val', 'trainval' or 'test'.
    pp: pipeline string, e.g. "decode|resize(32)|value_range(-1,1)|rotate".
    batch_size: examples per batch for THIS pipeline (per replica when used
      from `distribute_datasets_from_function`).
    training: random ops random, shuffled, repeated forever, full batches only.
      Otherwise one ordered pass with a final partial batch.
    seed: run seed; same seed, same batches.
    start: examples this pipeline has already delivered (a resumed run's step
      times its share of the global batch): the batches are those an
      uninterrupted pipeline yields from there on.
    input_context: shards the split between input pipelines.
    cache: keep decoded examples in memory (small datasets).
    repeat: override the default (training) of repeating forever.
    batch_preprocessing: run the pipeline's trailing batchable ops once per
      batch (same values; see preprocess_registry.batchable) when the images
      reaching them all have one static shape; False runs every op per example.

  Returns:
    tf.data.Dataset of dicts; 'image' is [batch, ...op dependent shape...],
    'label' is [batch].
  """
  ds, finish = _build(dataset, split, pp, batch_size, training=training,
                      seed=seed, start=start, input_context=input_context,
                      shuffle_buffer=shuffle_buffer, cache=cache, repeat=repeat,
                      batch_preprocessing=batch_preprocessing, defer=False)
  assert finish is None
  return ds


def make_eval_batches(dataset, split: str, pp: str, batch_size: int, *,
                      input_context: Optional[tf.distribute.InputContext] = None
                      ) -> Tuple[tf.data.Dataset, "BatchOps"]:
  """One ordered evaluation pass whose per-batch ops are left to the consumer.

  The same batches as `make_dataset(..., training=False)` once `finish` is
  applied to each, but the pipeline's trailing batchable ops (resize, crops,
  value_range, ...) are not run by tf.data: the consumer runs `finish` inside
  its own compiled step. Why: tf.data's threads would run them beside the
  trunk, on the cores the trunk's convolutions are using; inside the step
  they run in sequence with it (measured on 2 cores, with the other changes
  of that commit: the demo trunk's extraction of Fashion-MNIST test went from
  0.80x to 0.86-0.91x of its plain forward), and on an accelerator they run on
  the device, on images sent as uint8.

  Returns:
    (tf.data.Dataset of dicts {'image', 'label', 'index'} with a leading
     batch dim ('index': each example's position in the split), which may
     also carry the pipeline's other private keys;
     finish: a BatchOps, fn(batch dict) -> batch dict {'image', 'label'},
     traceable, drawing no random seed; where no op can run per batch it only
     drops the private keys).
  """
  return _build(dataset, split, pp, batch_size, training=False, seed=0,
                start=0, input_context=input_context, shuffle_buffer=0, cache=False,
                repeat=False, batch_preprocessing=True, defer=True)


class BatchOps:
  """The ops of an evaluation pipeline from `start` on, applied to a batch.

  Two are equal when they come from the same pipeline string and start at the
  same op, so a compiled consumer given the BatchOps of every split of one
  dataset (as a Python argument of its tf.function) traces once.
  """

  def __init__(self, pp, ops, start: int):
    self.key = (pp if isinstance(pp, str) else tuple(pp), start)
    self.num_ops = len(ops) - start
    self._fn = preprocess_registry.compose(ops[start:])

  def __call__(self, features):
    """The batch after the ops, without the pipeline's private keys."""
    return _drop_private(self._fn(features))

  def __eq__(self, other):
    return isinstance(other, BatchOps) and self.key == other.key

  def __hash__(self):
    return hash(self.key)


def _build(dataset, split, pp, batch_size, *, training, seed, start, input_context,
           shuffle_buffer, cache, repeat, batch_preprocessing, defer):
  """(dataset, the per-batch ops left undone or None); see make_dataset."""
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  one_pass = not (repeat if repeat is not None else training)
  options = tf.data.Options()
  options.deterministic = True
  if one_pass:
    # Deleting a finished one-pass iterator waits for tf.data's autotuning
    # thread to wake up; measured on 2 cores it stalled the deletion by up to
    # the iterator's whole lifetime (20 s after a 20 s feature extraction, in
    # 2 of 6 runs). A single pass has nothing to tune for, so the model is off
    # and AUTOTUNE parallelism falls back to one call per core.
    options.autotune.enabled = False
  ops = preprocess_registry.get_preprocess_ops(pp, training=training)

  def split_at(batch_from):
    """(map of `ds` batches or None, the ops left to the caller or None)."""
    batch_ops = BatchOps(pp, ops, batch_from)
    if defer:
      return None, batch_ops
    return batch_ops, None

  if (batch_preprocessing and one_pass and not training and not cache
      and hasattr(dataset, "as_batched_dataset")):
    # Where every op can run per batch, records are parsed per batch too; the
    # per-example spec of the batches is all the switch-point probe needs, so
    # the (slower to build) per-example tfds dataset is never made.
    batches = dataset.as_batched_dataset(split, batch_size,
                                         input_context=input_context)
    if batches is not None:
      spec = {k: tf.TensorSpec(v.shape[1:], v.dtype)
              for k, v in batches.element_spec.items()}
      if _batched_suffix_start(spec, ops) == 0:
        batch_map, deferred = split_at(0)
        batches = batches.with_options(options)
        if batch_map is not None:
          batches = batches.map(batch_map, num_parallel_calls=AUTOTUNE)
        return batches.prefetch(AUTOTUNE), deferred
  ds = dataset.as_dataset(split, shuffle_files=training, seed=seed,
                          input_context=input_context)
  if cache:
    ds = ds.cache()
  ds = stream(ds, start=start, repeat=not one_pass,
              shuffle_buffer=shuffle_buffer if training else 0, seed=seed,
              pipeline_id=pipeline_id).with_options(options)
  batch_from = (_batched_suffix_start(ds.element_spec[1], ops)
                if batch_preprocessing else None)
  per_example = ops if batch_from is None else ops[:batch_from]
  # A deferred (evaluation) pass keeps each example's 'index' to the
  # consumer, which restores the split's order from it after gathering the
  # replicas' rows (training/loop.distribute_eval_batches).
  keep = ("index",) if defer else ()
  if per_example:
    ds = ds.map(_add_rng(seed, pipeline_id))
    pp_fn = preprocess_registry.compose(per_example)
    ds = ds.map(lambda f: _drop_private(pp_fn(f), keep),
                num_parallel_calls=AUTOTUNE)
  else:
    ds = ds.map(lambda position, f: f if batch_from is not None
                else _drop_private(f, keep))
  ds = ds.batch(batch_size, drop_remainder=training)
  deferred = BatchOps(pp, ops, len(ops)) if defer else None
  if batch_from is not None:
    batch_map, deferred = split_at(batch_from)
    if batch_map is not None:
      ds = ds.map(batch_map, num_parallel_calls=AUTOTUNE)
  return ds.prefetch(AUTOTUNE), deferred


def _batched_suffix_start(element_spec, ops) -> Optional[int]:
  """Where the pipeline may switch from per-example to per-batch ops, if at all.

  The ops from there on must all be batchable and receive equally sized,
  decoded single images: a fully defined [H, W, C] non-string 'image' (known
  by tracing the per-example prefix). None when no op would run per batch.
  """
  start = len(ops)
  while start > 0 and preprocess_registry.is_batchable(ops[start - 1]):
    start -= 1
  probe = dict(element_spec)
  probe[preprocess_registry.RNG_KEY] = tf.TensorSpec([2], tf.int64)
  for batch_from in range(start, len(ops)):
    prefix = preprocess_registry.compose(ops[:batch_from])
    image = tf.function(prefix).get_concrete_function(probe).structured_outputs
    image = image.get("image") if isinstance(image, dict) else None
    if (isinstance(image, tf.Tensor) and image.dtype != tf.string
        and image.shape.rank == 3 and image.shape.is_fully_defined()):
      return batch_from
  return None
