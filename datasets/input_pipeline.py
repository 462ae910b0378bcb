"""From a dataset split and a pipeline string to batches, per input pipeline.

Randomness is made deterministic here: every example gets a `_rng` seed derived
from (run seed, input pipeline id, position in the stream), and the preprocessing
ops draw from it with stateless random ops. Parallel maps then give the same
batches for the same seed, whatever the thread scheduling.
"""
from typing import Optional

import tensorflow as tf

from datasets import preprocess_registry

AUTOTUNE = tf.data.AUTOTUNE


def _add_rng(seed: int, pipeline_id: int):
  def add(position, features):
    features = dict(features)
    features["_rng"] = tf.stack([
        tf.cast(seed * 1000003 + pipeline_id, tf.int64),
        tf.cast(position, tf.int64)])
    return features
  return add


def _drop_private(features):
  return {k: v for k, v in features.items()
          if not k.startswith("_") and k not in ("index", "path")}


def make_dataset(dataset, split: str, pp: str, batch_size: int, *,
                 training: bool, seed: int = 0,
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
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  one_pass = not (repeat if repeat is not None else training)
  ds = dataset.as_dataset(split, shuffle_files=training, seed=seed,
                          input_context=input_context)
  if cache:
    ds = ds.cache()
  if not one_pass:
    ds = ds.repeat()
  if training:
    ds = ds.shuffle(shuffle_buffer, seed=seed + pipeline_id)
  options = tf.data.Options()
  options.deterministic = True
  if one_pass:
    # Deleting a finished one-pass iterator waits for tf.data's autotuning
    # thread to wake up; measured on 2 cores it stalled the deletion by up to
    # the iterator's whole lifetime (20 s after a 20 s feature extraction, in
    # 2 of 6 runs). A single pass has nothing to tune for, so the model is off
    # and AUTOTUNE parallelism falls back to one call per core.
    options.autotune.enabled = False
  ds = ds.with_options(options)
  ops = preprocess_registry.get_preprocess_ops(pp, training=training)
  batch_from = _batched_suffix_start(ds, ops) if batch_preprocessing else None
  if (batch_from == 0 and one_pass and not training and not cache
      and hasattr(dataset, "as_batched_dataset")):
    # Every op runs per batch, so records can be parsed per batch too.
    batches = dataset.as_batched_dataset(split, batch_size,
                                         input_context=input_context)
    if batches is not None:
      batch_fn = preprocess_registry.compose(ops)
      batches = batches.with_options(options).map(
          lambda f: _drop_private(batch_fn(f)), num_parallel_calls=AUTOTUNE)
      return batches.prefetch(AUTOTUNE)
  per_example = ops if batch_from is None else ops[:batch_from]
  if per_example:
    ds = ds.enumerate().map(_add_rng(seed, pipeline_id))
    pp_fn = preprocess_registry.compose(per_example)
    ds = ds.map(lambda f: _drop_private(pp_fn(f)), num_parallel_calls=AUTOTUNE)
  elif batch_from is None:  # the empty pipeline
    ds = ds.map(_drop_private)
  ds = ds.batch(batch_size, drop_remainder=training)
  if batch_from is not None:
    batch_fn = preprocess_registry.compose(ops[batch_from:])
    ds = ds.map(lambda f: _drop_private(batch_fn(f)), num_parallel_calls=AUTOTUNE)
  return ds.prefetch(AUTOTUNE)


def _batched_suffix_start(ds: tf.data.Dataset, ops) -> Optional[int]:
  """Where the pipeline may switch from per-example to per-batch ops, if at all.

  The ops from there on must all be batchable and receive equally sized,
  decoded single images: a fully defined [H, W, C] non-string 'image' (known
  by tracing the per-example prefix). None when no op would run per batch.
  """
  start = len(ops)
  while start > 0 and preprocess_registry.is_batchable(ops[start - 1]):
    start -= 1
  probe = dict(ds.element_spec)
  probe[preprocess_registry.RNG_KEY] = tf.TensorSpec([2], tf.int64)
  for batch_from in range(start, len(ops)):
    prefix = preprocess_registry.compose(ops[:batch_from])
    image = tf.function(prefix).get_concrete_function(probe).structured_outputs
    image = image.get("image") if isinstance(image, dict) else None
    if (isinstance(image, tf.Tensor) and image.dtype != tf.string
        and image.shape.rank == 3 and image.shape.is_fully_defined()):
      return batch_from
  return None
