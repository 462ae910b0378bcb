"""Small stand-in datasets for tests: in memory, and Fashion-MNIST IDX files."""
import gzip
import os
import struct

import numpy as np
import tensorflow as tf

from datasets import fashion_mnist

SPLITS = ("train", "val", "trainval", "test")
NUM_TRAIN = 30  # tiny Fashion-MNIST files: training images
NUM_TEST = 8


class InMemoryDataset:
  """Random uint8 images with labels; splits are fixed slices of one array."""

  def __init__(self, num_train=64, num_val=16, num_test=16, size=16,
               channels=1, num_classes=3, seed=0, separable=False,
               encode_png=False):
    rng = np.random.RandomState(seed)
    n = num_train + num_val + num_test
    self.images = rng.randint(0, 256, size=(n, size, size, channels)).astype(np.uint8)
    self.labels = rng.randint(0, num_classes, size=(n,)).astype(np.int64)
    if separable:
      # Class c lights up row c (mod size) brightly over low noise: a linear
      # classifier on pixels separates the classes perfectly.
      self.images //= 4
      for i, label in enumerate(self.labels):
        self.images[i, label % size, :, :] = 255
    self._ranges = {
        "train": (0, num_train), "val": (num_train, num_train + num_val),
        "trainval": (0, num_train + num_val),
        "test": (num_train + num_val, n)}
    self.name = "in_memory"
    self.num_classes = num_classes
    self.image_shape = (size, size, channels)
    # PNG strings, as datasets that leave decoding to the `decode` op yield.
    self._encode_png = encode_png

  def prepare(self):
    pass

  def num_examples(self, split):
    a, b = self._ranges[split]
    return b - a

  def as_dataset(self, split, *, shuffle_files=False, seed=0, input_context=None):
    del shuffle_files, seed
    a, b = self._ranges[split]
    images = self.images[a:b]
    if self._encode_png:
      images = np.array([tf.io.encode_png(x).numpy() for x in images], object)
    ds = tf.data.Dataset.from_tensor_slices(
        {"image": images, "label": self.labels[a:b]})
    ds = ds.enumerate().map(lambda i, f: dict(f, index=i))
    if input_context:
      ds = ds.shard(input_context.num_input_pipelines,
                    input_context.input_pipeline_id)
    return ds


def small_pixels(separable=True):
  """120 / 30 / 30 images of 8x8, 3 classes: the protocols' test data."""
  return InMemoryDataset(num_train=120, num_val=30, num_test=30, size=8,
                         num_classes=3, separable=separable)


def idx_bytes(array):
  """The IDX encoding of a uint8 array: magic 0x0000080<rank>, big-endian dims, data."""
  header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f'>{array.ndim}I', *array.shape)
  return header + array.tobytes()


def write_gz(path, data):
  with gzip.open(path, 'wb') as f:
    f.write(data)


def make_images(start, count):
  """Image k is filled with the value start + k, so pixels name their source position."""
  values = np.arange(start, start + count, dtype=np.uint8)
  return np.broadcast_to(values[:, None, None], (count, 28, 28)).copy()


def write_fashion_files(folder, num_train=NUM_TRAIN, num_test=NUM_TEST, seed=None):
  """The four Fashion-MNIST IDX files; images as make_images, or random with a seed."""
  os.makedirs(folder, exist_ok=True)
  if seed is None:
    train, test = make_images(0, num_train), make_images(100, num_test)
  else:
    rng = np.random.RandomState(seed)
    train, test = (rng.randint(0, 256, (n, 28, 28)).astype(np.uint8)
                   for n in (num_train, num_test))
  write_gz(os.path.join(folder, fashion_mnist.TRAIN_IMAGES), idx_bytes(train))
  write_gz(os.path.join(folder, fashion_mnist.TRAIN_LABELS),
           idx_bytes(np.arange(num_train, dtype=np.uint8) % 10))
  write_gz(os.path.join(folder, fashion_mnist.TEST_IMAGES), idx_bytes(test))
  write_gz(os.path.join(folder, fashion_mnist.TEST_LABELS),
           idx_bytes((np.arange(num_test, dtype=np.uint8) * 3) % 10))
  return folder


def prepared_fashion_mnist(root, seed, holdout=6):
  """A Fashion-MNIST of random pixels prepared under `root`: 24 train, 6 val, 8 test."""
  manual_dir = write_fashion_files(os.path.join(root, "idx"), seed=seed)
  ds = fashion_mnist.FashionMnist(data_dir=os.path.join(root, "tfds"),
                                  manual_dir=manual_dir, holdout=holdout)
  ds.prepare()
  return ds
