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
                 repeat: Optional[bool] = None) -> tf.data.Dataset:
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

  Returns:
    tf.data.Dataset of dicts; 'image' is [batch, ...op dependent shape...],
    'label' is [batch].
  """
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  ds = dataset.as_dataset(split, shuffle_files=training, seed=seed,
                          input_context=input_context)
  if cache:
    ds = ds.cache()
  if repeat if repeat is not None else training:
    ds = ds.repeat()
  if training:
    ds = ds.shuffle(shuffle_buffer, seed=seed + pipeline_id)
  ds = ds.enumerate().map(_add_rng(seed, pipeline_id))
  pp_fn = preprocess_registry.get_preprocess_fn(pp, training=training)
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.with_options(options)
  ds = ds.map(lambda f: _drop_private(pp_fn(f)), num_parallel_calls=AUTOTUNE)
  ds = ds.batch(batch_size, drop_remainder=training)
  return ds.prefetch(AUTOTUNE)
