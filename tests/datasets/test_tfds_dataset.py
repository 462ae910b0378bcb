"""Tests for the logic every dataset shares: numbering and sharding a split."""
import tensorflow as tf

from datasets import tfds_dataset


def make_examples(n):
  return tf.data.Dataset.from_tensor_slices({
      'image': tf.reshape(tf.cast(tf.range(n * 4), tf.uint8), [n, 2, 2, 1]),
      'label': tf.range(n, dtype=tf.int32) % 3,
  })


def test_index_and_shard_numbers_before_sharding():
  out = list(tfds_dataset.index_and_shard(make_examples(7)))
  assert [int(ex['index']) for ex in out] == list(range(7))
  assert [int(ex['label']) for ex in out] == [0, 1, 2, 0, 1, 2, 0]
  assert out[0]['label'].dtype == tf.int64 and out[0]['index'].dtype == tf.int64
  assert int(out[5]['image'][0, 0, 0]) == 20
  shards = []
  for pipeline in range(3):
    context = tf.distribute.InputContext(num_input_pipelines=3,
                                         input_pipeline_id=pipeline)
    shards.append([int(ex['index']) for ex in
                   tfds_dataset.index_and_shard(make_examples(7), context)])
  assert shards == [[0, 3, 6], [1, 4], [2, 5]]
  single = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0)
  assert len(list(tfds_dataset.index_and_shard(make_examples(7), single))) == 7
