"""A tiny in-memory dataset with the `datasets.registry` interface, for tests."""
import numpy as np
import tensorflow as tf

SPLITS = ("train", "val", "trainval", "test")


class InMemoryDataset:
  """Random uint8 images with labels; splits are fixed slices of one array."""

  def __init__(self, num_train=64, num_val=16, num_test=16, size=16,
               channels=1, num_classes=3, seed=0, separable=False):
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

  def prepare(self):
    pass

  def num_examples(self, split):
    a, b = self._ranges[split]
    return b - a

  def as_dataset(self, split, *, shuffle_files=False, seed=0, input_context=None):
    del shuffle_files, seed
    a, b = self._ranges[split]
    ds = tf.data.Dataset.from_tensor_slices(
        {"image": self.images[a:b], "label": self.labels[a:b]})
    ds = ds.enumerate().map(lambda i, f: dict(f, index=i))
    if input_context:
      ds = ds.shard(input_context.num_input_pipelines,
                    input_context.input_pipeline_id)
    return ds
