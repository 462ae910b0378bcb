"""Tests for Places365 through tfds's `places365_small`, on tfds's mock data.

tfds checks the Places archives against their published SHA-256 sums, so no tiny
stand-in archives can be prepared; the tests mock tfds's reader instead. The split-
aware reader below resolves the split strings this module hands to tfds with tfds's
own split parser, so the hold-out arithmetic is checked end to end.
"""
import os

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from datasets import places
from datasets import registry

SIZES = {'train': 20, 'validation': 6, 'test': 7}
# Fake examples carry their tfds split and position in the label, which must stay
# below the 365 classes: train k -> k, validation k -> 100 + k, test -> -1 (unlabelled
# as in the real tfds 'test').
LABEL_BASE = {'train': 0, 'validation': 100}


def split_dict(sizes):
  return tfds.core.SplitDict([
      tfds.core.SplitInfo(name=name, shard_lengths=[n], num_bytes=0)
      for name, n in sizes.items()])


def split_aware_as_dataset(self, split, decoders=None, read_config=None,
                           shuffle_files=False):
  """Replaces tfds's file reader: examples of exactly the requested slice."""
  del decoders, read_config, shuffle_files
  instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(
      self.info.splits)
  labels = []
  for instruction in instructions:
    name = instruction.splitname
    # tfds writes an open slice end as None.
    stop = self.info.splits[name].num_examples if instruction.to is None else (
        instruction.to)
    for k in range(instruction.from_ or 0, stop):
      labels.append(LABEL_BASE[name] + k if name in LABEL_BASE else -1)
  image = tf.io.encode_jpeg(tf.zeros([256, 256, 3], tf.uint8))
  return tf.data.Dataset.from_tensor_slices(tf.constant(labels, tf.int64)).map(
      lambda label: {'image': image, 'label': label, 'filename': 'x.jpg'})


@pytest.fixture
def mocked(tmp_path):
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                              as_dataset_fn=split_aware_as_dataset):
    ds = registry.get_dataset('places365', data_dir=str(tmp_path), holdout=4)
    ds.builder.info.set_splits(split_dict(SIZES))
    yield ds


def labels_and_indices(ds, split):
  exs = list(ds.as_dataset(split))
  return [int(ex['label']) for ex in exs], [int(ex['index']) for ex in exs]


def test_study_splits(mocked):
  assert (mocked.name, mocked.num_classes, mocked.image_shape) == ('places365', 365,
                                                                   (256, 256, 3))
  assert [mocked.num_examples(s) for s in registry.SPLITS] == [16, 4, 20, 6]
  expected = {
      'train': list(range(16)),
      'val': list(range(16, 20)),
      'trainval': list(range(20)),
      # The study's test is tfds 'validation', which has labels; tfds 'test' has not.
      'test': list(range(100, 106)),
  }
  for split, labels in expected.items():
    assert labels_and_indices(mocked, split) == (labels, list(range(len(labels))))


def test_shards_keep_split_wide_indices(mocked):
  context = tf.distribute.InputContext(num_input_pipelines=3, input_pipeline_id=2)
  exs = list(mocked.as_dataset('val', input_context=context))
  assert [(int(ex['index']), int(ex['label'])) for ex in exs] == [(2, 18)]


def test_images_are_encoded_and_labels_in_range(tmp_path):
  with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
    ds = places.Places365(data_dir=str(tmp_path))
    ds.builder.info.set_splits(split_dict({'train': 1803460, 'validation': 36500,
                                           'test': 328500}))
    assert [ds.num_examples(s) for s in registry.SPLITS] == [1753460, 50000, 1803460,
                                                            36500]
    exs = list(ds.as_dataset('test'))
  assert len(exs) == 3
  for ex in exs:
    assert ex['image'].dtype == tf.string and ex['image'].shape == ()
    assert tf.io.decode_image(ex['image']).shape == (256, 256, 3)
    assert 0 <= int(ex['label']) < 365
    assert set(ex) == {'image', 'label', 'index'}


def test_missing_archives_are_listed_and_nothing_is_downloaded(tmp_path):
  manual_dir = str(tmp_path / 'manual')
  os.makedirs(manual_dir)
  open(os.path.join(manual_dir, 'val_256.tar'), 'wb').close()
  ds = registry.get_dataset('places365', data_dir=str(tmp_path / 'tfds'),
                            manual_dir=manual_dir)
  with pytest.raises(FileNotFoundError) as info:
    ds.prepare()
  message = str(info.value)
  assert (f'{manual_dir} lacks train_256_places365standard.tar, test_256.tar, '
          'filelist_places365-standard.tar. ') in message
  assert 'http://data.csail.mit.edu/places/places365/' in message
  assert not os.path.exists(tmp_path / 'tfds' / 'places365_small')


def test_unprepared_dataset_asks_for_prepare(tmp_path):
  ds = registry.get_dataset('places365', data_dir=str(tmp_path))
  with pytest.raises(RuntimeError, match=r"'train' is not prepared .* Call prepare"):
    ds.num_examples('val')
