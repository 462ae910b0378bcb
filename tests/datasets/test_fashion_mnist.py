"""Tests for the local Fashion-MNIST tfds builder and its study splits."""
import gzip
import os
import struct

import numpy as np
import pytest
import tensorflow as tf

from datasets import fashion_mnist
from datasets import registry
from fake_data import (NUM_TEST, NUM_TRAIN, idx_bytes, make_images, write_fashion_files,
                       write_gz)

DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  """A prepared tiny Fashion-MNIST: 30 train (last 6 held out as val), 8 test."""
  root = tmp_path_factory.mktemp('fashion')
  manual_dir = write_fashion_files(str(root / 'idx'))
  ds = fashion_mnist.FashionMnist(data_dir=str(root / 'tfds'), manual_dir=manual_dir,
                                  holdout=6)
  ds.prepare()
  return ds


def collect(dataset):
  """(source positions from the pixels, labels, indices) of every example."""
  positions, labels, indices = [], [], []
  for ex in dataset:
    assert ex['image'].dtype == tf.uint8 and ex['image'].shape == (28, 28, 1)
    assert ex['label'].dtype == tf.int64 and ex['index'].dtype == tf.int64
    assert int(tf.reduce_min(ex['image'])) == int(tf.reduce_max(ex['image']))
    positions.append(int(ex['image'][0, 0, 0]))
    labels.append(int(ex['label']))
    indices.append(int(ex['index']))
  return positions, labels, indices


def test_study_splits_follow_file_order(tiny):
  assert [tiny.num_examples(s) for s in registry.SPLITS] == [24, 6, 30, 8]
  assert (tiny.name, tiny.num_classes, tiny.image_shape) == ('fashion_mnist', 10,
                                                            (28, 28, 1))
  positions, labels, indices = collect(tiny.as_dataset('train'))
  assert positions == list(range(24))
  assert labels == [p % 10 for p in range(24)]
  assert indices == list(range(24))
  positions, labels, indices = collect(tiny.as_dataset('val'))
  assert positions == list(range(24, 30))
  assert labels == [4, 5, 6, 7, 8, 9]
  assert indices == list(range(6))
  positions, _, indices = collect(tiny.as_dataset('trainval'))
  assert positions == list(range(30)) and indices == list(range(30))
  # What the feature cache relies on to read trainval as train then val.
  assert tiny.split_parts('trainval') == ('train', 'val')
  assert [tiny.split_parts(s) for s in ('train', 'val', 'test')] == [None] * 3
  positions, labels, indices = collect(tiny.as_dataset('test'))
  assert positions == list(range(100, 108))
  assert labels == [0, 3, 6, 9, 2, 5, 8, 1]
  assert indices == list(range(8))


def test_shuffle_files_keeps_the_single_file_order(tiny):
  positions, _, indices = collect(tiny.as_dataset('val', shuffle_files=True, seed=5))
  assert positions == list(range(24, 30)) and indices == list(range(6))


def test_prepare_is_idempotent_and_prints_one_line(tiny, capsys):
  tiny.prepare()
  out = capsys.readouterr().out
  assert out.count('\n') == 1
  assert out.startswith('fashion_mnist: prepared tfds data found in ')


def test_first_prepare_prints_one_line(tmp_path, capsys):
  manual_dir = write_fashion_files(str(tmp_path / 'idx'), num_train=12, num_test=3)
  ds = fashion_mnist.FashionMnist(data_dir=str(tmp_path / 'tfds'),
                                  manual_dir=manual_dir, holdout=2)
  ds.prepare()
  out = capsys.readouterr().out
  assert out.count('\n') == 1
  assert out.startswith('fashion_mnist: preparing tfds data in ')
  assert [ds.num_examples(s) for s in registry.SPLITS] == [10, 2, 12, 3]


def test_missing_files_name_the_fix(tmp_path):
  manual_dir = write_fashion_files(str(tmp_path / 'idx'))
  os.remove(os.path.join(manual_dir, fashion_mnist.TEST_LABELS))
  ds = fashion_mnist.FashionMnist(data_dir=str(tmp_path / 'tfds'), manual_dir=manual_dir)
  with pytest.raises(FileNotFoundError) as info:
    ds.prepare()
  message = str(info.value)
  assert f'{manual_dir} lacks {fashion_mnist.TEST_LABELS}. ' in message
  assert 'apt-get install dataset-fashion-mnist' in message
  assert 'manual_dir' in message


def test_unprepared_dataset_asks_for_prepare(tmp_path):
  ds = fashion_mnist.FashionMnist(data_dir=str(tmp_path / 'tfds'),
                                  manual_dir=str(tmp_path / 'idx'))
  with pytest.raises(RuntimeError, match=r'Call prepare\(\) first'):
    ds.num_examples('train')
  with pytest.raises(RuntimeError, match=r'Call prepare\(\) first'):
    ds.as_dataset('test')


def test_holdout_larger_than_train_is_refused(tiny):
  ds = fashion_mnist.FashionMnist(data_dir=os.fspath(tiny.builder.data_dir_root),
                                  manual_dir=tiny.manual_dir)  # Default holdout 5000.
  assert ds.num_examples('trainval') == 30 and ds.num_examples('test') == 8
  with pytest.raises(ValueError, match='not more than the val hold-out of 5000; pass a '
                                       'smaller holdout'):
    ds.num_examples('train')


def test_read_idx_returns_the_array(tmp_path):
  path = str(tmp_path / 'x-idx3-ubyte.gz')
  images = make_images(7, 3)
  write_gz(path, idx_bytes(images))
  np.testing.assert_array_equal(fashion_mnist.read_idx(path, rank=3), images)


@pytest.mark.parametrize('damage, expected', [
    (lambda data: gzip.compress(data)[:-20], 'not a complete gzip file'),
    (lambda data: gzip.compress(b'\x00\x00\x08\x01' + data[4:]), 'IDX magic number'),
    (lambda data: gzip.compress(data[:-100]), 'truncated or corrupt'),
    (lambda data: b'not gzip at all', 'not a complete gzip file'),
])
def test_damaged_files_are_named(tmp_path, damage, expected):
  path = str(tmp_path / fashion_mnist.TRAIN_IMAGES)
  with open(path, 'wb') as f:
    f.write(damage(idx_bytes(make_images(0, 4))))
  with pytest.raises(ValueError, match=expected) as info:
    fashion_mnist.read_idx(path, rank=3)
  assert path in str(info.value)


def test_inconsistent_pairs_are_named(tmp_path):
  folder = write_fashion_files(str(tmp_path))
  write_gz(os.path.join(folder, fashion_mnist.TRAIN_LABELS),
           idx_bytes(np.zeros(NUM_TRAIN - 1, np.uint8)))
  with pytest.raises(ValueError, match='disagree on the number of examples'):
    fashion_mnist.read_split(folder, fashion_mnist.TRAIN_IMAGES, fashion_mnist.TRAIN_LABELS)
  write_gz(os.path.join(folder, fashion_mnist.TRAIN_LABELS),
           idx_bytes(np.full(NUM_TRAIN, 10, np.uint8)))
  with pytest.raises(ValueError, match='holds label 10; labels must be in 0..9'):
    fashion_mnist.read_split(folder, fashion_mnist.TRAIN_IMAGES, fashion_mnist.TRAIN_LABELS)
  write_gz(os.path.join(folder, fashion_mnist.TEST_IMAGES),
           idx_bytes(np.zeros((NUM_TEST, 28, 27), np.uint8)))
  with pytest.raises(ValueError, match=r'images of shape \(28, 27\)'):
    fashion_mnist.read_split(folder, fashion_mnist.TEST_IMAGES, fashion_mnist.TEST_LABELS)


def test_prepare_reports_a_truncated_file_by_name(tmp_path):
  manual_dir = write_fashion_files(str(tmp_path / 'idx'))
  path = os.path.join(manual_dir, fashion_mnist.TEST_IMAGES)
  with open(path, 'rb') as f:
    data = f.read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])
  ds = fashion_mnist.FashionMnist(data_dir=str(tmp_path / 'tfds'), manual_dir=manual_dir)
  with pytest.raises(ValueError, match='not a complete gzip file') as info:
    ds.prepare()
  assert path in str(info.value)
  assert not ds.builder.is_prepared()


@pytest.mark.skipif(not os.path.isdir(DEBIAN_DIR),
                    reason='Debian package dataset-fashion-mnist not installed')
def test_real_debian_files(tmp_path):
  ds = registry.get_dataset('fashion_mnist', data_dir=str(tmp_path))
  ds.prepare()
  assert [ds.num_examples(s) for s in registry.SPLITS] == [55000, 5000, 60000, 10000]
  labels = next(iter(ds.as_dataset('test').map(lambda e: e['label']).batch(10000)))
  assert labels.shape == (10000,)
  # The official test set is balanced: 1,000 images per class.
  assert np.bincount(labels.numpy(), minlength=10).tolist() == [1000] * 10
  raw_images = fashion_mnist.read_idx(
      os.path.join(DEBIAN_DIR, fashion_mnist.TRAIN_IMAGES), rank=3)
  raw_labels = fashion_mnist.read_idx(
      os.path.join(DEBIAN_DIR, fashion_mnist.TRAIN_LABELS), rank=1)
  first_val = next(iter(ds.as_dataset('val')))
  assert int(first_val['index']) == 0
  np.testing.assert_array_equal(first_val['image'].numpy()[..., 0], raw_images[55000])
  assert int(first_val['label']) == raw_labels[55000]
