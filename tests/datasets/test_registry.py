"""Tests for the dataset registry and the shared split/index/shard logic."""
import os

import pytest
import tensorflow as tf

from datasets import fashion_mnist
from datasets import image_folder
from datasets import imagenet
from datasets import places
from datasets import registry


def test_names_and_splits():
  assert registry.DATASET_NAMES == ('fashion_mnist', 'imagenet2012', 'places365',
                                    'image_folder')
  assert registry.SPLITS == ('train', 'val', 'trainval', 'test')


def test_get_dataset_builds_each_kind(tmp_path):
  data_dir = str(tmp_path / 'tfds')
  ds = registry.get_dataset('fashion_mnist', data_dir=data_dir, manual_dir='/x')
  assert isinstance(ds, fashion_mnist.FashionMnist)
  assert (ds.manual_dir, ds.holdout) == ('/x', 5000)
  assert ds.builder.name == 'fashion_mnist_idx' and str(ds.builder.version) == '1.0.0'
  assert ds.builder.info.features['label'].names[9] == 'Ankle boot'
  assert registry.get_dataset('fashion_mnist').manual_dir == (
      '/usr/share/datasets/fashion-mnist/')
  ds = registry.get_dataset('imagenet2012', data_dir=data_dir, holdout=7)
  assert isinstance(ds, imagenet.Imagenet2012) and ds.holdout == 7
  assert ds.builder.name == 'imagenet2012'
  ds = registry.get_dataset('places365', data_dir=data_dir)
  assert isinstance(ds, places.Places365) and ds.builder.name == 'places365_small'
  folder = tmp_path / 'images' / 'cls'
  os.makedirs(folder)
  with open(folder / 'a.png', 'wb') as f:
    f.write(tf.io.encode_png(tf.zeros([2, 2, 3], tf.uint8)).numpy())
  ds = registry.get_dataset(f'image_folder:{tmp_path / "images"}', holdout_every=3)
  assert isinstance(ds, image_folder.ImageFolder) and ds.holdout_every == 3


@pytest.mark.parametrize('name', ['mnist', 'imagenet', 'image_folder', 'image_folder:',
                                  'Fashion_MNIST'])
def test_unknown_name_lists_the_names(name):
  with pytest.raises(ValueError) as info:
    registry.get_dataset(name)
  assert str(info.value) == (
      f'Unknown dataset {name!r}; use one of fashion_mnist, imagenet2012, places365, '
      'image_folder:<root> (a folder with one sub-folder of images per class).')


def test_unknown_split_lists_the_splits(tmp_path):
  with pytest.raises(ValueError) as info:
    registry.check_split('validation')
  assert str(info.value) == (
      "Unknown split 'validation'; use one of train, val, trainval, test.")
  ds = registry.get_dataset('fashion_mnist', data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="Unknown split 'eval'"):
    ds.num_examples('eval')
  with pytest.raises(ValueError, match="Unknown split 'train\\[:10\\]'"):
    ds.as_dataset('train[:10]')


@pytest.mark.parametrize('holdout', [0, -5, 2.5, True, '100'])
def test_holdout_must_be_a_positive_int(tmp_path, holdout):
  with pytest.raises(ValueError, match='holdout must be a positive int'):
    registry.get_dataset('imagenet2012', data_dir=str(tmp_path), holdout=holdout)


def make_examples(n):
  return tf.data.Dataset.from_tensor_slices({
      'image': tf.reshape(tf.cast(tf.range(n * 4), tf.uint8), [n, 2, 2, 1]),
      'label': tf.range(n, dtype=tf.int32) % 3,
  })


def test_index_and_shard_numbers_before_sharding():
  out = list(registry.index_and_shard(make_examples(7)))
  assert [int(ex['index']) for ex in out] == list(range(7))
  assert [int(ex['label']) for ex in out] == [0, 1, 2, 0, 1, 2, 0]
  assert out[0]['label'].dtype == tf.int64 and out[0]['index'].dtype == tf.int64
  assert int(out[5]['image'][0, 0, 0]) == 20
  shards = []
  for pipeline in range(3):
    context = tf.distribute.InputContext(num_input_pipelines=3,
                                         input_pipeline_id=pipeline)
    shards.append([int(ex['index']) for ex in
                   registry.index_and_shard(make_examples(7), context)])
  assert shards == [[0, 3, 6], [1, 4], [2, 5]]
  single = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0)
  assert len(list(registry.index_and_shard(make_examples(7), single))) == 7
