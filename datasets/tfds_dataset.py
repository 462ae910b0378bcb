"""What every dataset object offers, and the base class of those stored by tfds.

A dataset object maps the study's four splits (docs/protocol.md §7) onto stored data:

  train     the training set minus a deterministic hold-out,
  val       that hold-out (the study's own validation split),
  trainval  the whole training set,
  test      the official validation/test set.

`as_dataset(split)` yields dicts `{'image', 'label', 'index'}`: 'image' is either a
uint8 [H, W, C] tensor or an encoded image as a scalar string (the `decode`
preprocessing op handles both), 'label' an int64 scalar, and 'index' the example's
int64 position within the split (0..n-1), which seeds per-example randomness. The
dataset is neither shuffled (beyond optional file shuffling), repeated nor batched.
A dataset may also offer `split_parts(split)`: the splits whose concatenation, in
order, `split` is (trainval = train, val here), or None; the feature cache then
reads those parts instead of running the trunk over the same images twice.

`TfdsDataset` implements this over a tfds builder (fashion_mnist, imagenet2012,
places205, places365); `image_folder.ImageFolder` over image files, with the same
`SPLITS` and `check_split`. Datasets are found by name through `datasets.registry`.
"""
import contextlib
import fcntl
import importlib.resources
import importlib.resources.abc  # noqa: F401  (makes `.abc` an attribute)
import io
import os
import sys
import tarfile
import time

import tensorflow as tf
import tensorflow_datasets as tfds

# tfds 4.9.10 imports the `importlib_resources` backport when it locates a builder's
# code (every download_and_prepare) but declares it only for Python < 3.9, so a plain
# `pip install tensorflow-datasets` lacks it. The standard library module has the same
# `abc.Traversable`, which is all tfds uses; installing the backport makes this moot.
try:
  import importlib_resources  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
except ImportError:
  sys.modules['importlib_resources'] = importlib.resources

SPLITS = ('train', 'val', 'trainval', 'test')


def check_split(split):
  """Raises ValueError unless `split` is one of SPLITS."""
  if split not in SPLITS:
    raise ValueError(f'Unknown split {split!r}; use one of {", ".join(SPLITS)}.')


def index_and_shard(examples, input_context=None, numbered=False):
  """Numbers the examples of a split, then keeps this input pipeline's share.

  Numbering happens before sharding so that 'index' is global to the split and every
  example keeps the same index whatever the number of input pipelines.

  Args:
    examples: tf.data.Dataset of dicts with at least 'image' and 'label'.
    input_context: optional tf.distribute.InputContext; with more than one input
      pipeline, pipeline i keeps the examples whose position is i modulo their count.
    numbered: the examples already carry their 'index' (read out of order).

  Returns:
    tf.data.Dataset of dicts: every field of `examples` plus 'index' (int64 scalar),
    with 'label' cast to int64.
  """
  examples = examples.enumerate()
  if input_context is not None and input_context.num_input_pipelines > 1:
    examples = examples.shard(input_context.num_input_pipelines,
                              input_context.input_pipeline_id)

  def add_index(index, example):
    example = dict(example)
    example['label'] = tf.cast(example['label'], tf.int64)
    if not numbered:
      example['index'] = index
    return example

  return examples.map(add_index, num_parallel_calls=tf.data.AUTOTUNE,
                      deterministic=True)


class TfdsDataset:
  """A tfds builder seen through the study's splits.

  The val split is the last `holdout` examples of the tfds train split; tfds keeps a
  prepared split's order fixed, so the hold-out is deterministic.

  Attributes:
    name: the registry name.
    num_classes: number of labels.
    image_shape: (H, W, C) of decoded images, None where sizes vary.
    builder: the tfds DatasetBuilder.
  """

  def __init__(self, *, name, builder, num_classes, image_shape, holdout, test_split,
               manual_dir, manual_files, missing_data_hint, decode_images,
               train_split='train', quiet_prepare=False):
    """Wraps `builder` with the study's split names.

    Args:
      name: registry name, used in messages.
      builder: a tfds DatasetBuilder.
      num_classes: number of labels.
      image_shape: (H, W, C) of decoded images, None in varying dimensions.
      holdout: number of examples at the end of `train_split` that form val.
      test_split: the tfds split the study calls test.
      manual_dir: folder holding the manually obtained source files; None uses
        tfds's default, <data_dir>/downloads/manual.
      manual_files: names of the files that must be in `manual_dir` to prepare.
      missing_data_hint: sentence telling a user how to provide the source files.
      decode_images: True yields uint8 images; False yields the stored encoded
        bytes so that preprocessing can decode (and crop) them itself.
      train_split: the tfds split that train/val/trainval come from.
      quiet_prepare: hide tfds's own progress output while preparing (for sets
        that prepare in seconds; the hours-long ImageNet build keeps it).
    """
    if not isinstance(holdout, int) or isinstance(holdout, bool) or holdout < 1:
      raise ValueError(f'{name}: holdout must be a positive int (number of training '
                       f'examples held out as val), got {holdout!r}.')
    self.name = name
    self.builder = builder
    self.num_classes = num_classes
    self.image_shape = tuple(image_shape)
    self.holdout = holdout
    self._test_split = test_split
    self._train_split = train_split
    self._manual_dir = os.fspath(
        manual_dir or os.path.join(builder.data_dir_root, 'downloads', 'manual'))
    self._manual_files = tuple(manual_files)
    self._missing_data_hint = missing_data_hint
    self._decode_images = decode_images
    self._quiet_prepare = quiet_prepare

  @property
  def manual_dir(self):
    """The folder prepare() reads the source files from."""
    return self._manual_dir

  def _missing_manual_files(self):
    return [name for name in self._manual_files
            if not os.path.isfile(os.path.join(self._manual_dir, name))]

  def _check_archives(self):
    """Each manual .tar file opens (its first header reads): an empty, cut or
    unreadable download is named before tfds fails inside its extractor."""
    for name in self._manual_files:
      if not name.endswith(('.tar', '.tar.gz', '.tgz')):
        continue
      path = os.path.join(self._manual_dir, name)
      try:
        if os.path.getsize(path) == 0:
          raise tarfile.ReadError('it is empty (0 bytes)')
        with tarfile.open(path) as archive:
          archive.next()
      except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(
            f'{self.name}: cannot prepare: {path} is not a readable tar archive '
            f'({e}); download it again. {self._missing_data_hint}') from None

  def prepare(self):
    """Builds the tfds files from the manual dir once; later calls do nothing.

    Raises:
      FileNotFoundError: the data is not prepared and source files are missing.
      ValueError: a source archive is empty, cut or unreadable (named).
    """
    data_dir = os.fspath(self.builder.data_dir)
    if self.builder.is_prepared():
      print(f'{self.name}: prepared tfds data found in {data_dir}', flush=True)
      return
    # Two runs started together on a fresh machine (a sweep with --jobs, a
    # parallel test suite) would both build into the same folder and the
    # second rename fails: one prepares, the others wait and then read it.
    with _prepare_lock(data_dir, self.name):
      if self.builder.is_prepared():
        # Built by the run we waited for: our builder read no info at creation.
        self.builder.info.read_from_directory(data_dir)
        print(f'{self.name}: prepared tfds data found in {data_dir}', flush=True)
        return
      self._prepare_unlocked(data_dir)

  def _prepare_unlocked(self, data_dir):
    missing = self._missing_manual_files()
    if missing:
      raise FileNotFoundError(
          f'{self.name}: cannot prepare: {self._manual_dir} lacks '
          f'{", ".join(missing)}. {self._missing_data_hint}')
    self._check_archives()
    print(f'{self.name}: preparing tfds data in {data_dir} from {self._manual_dir} ...',
          end=' ' if self._quiet_prepare else '\n', flush=True)
    start = time.time()
    # No GCS: prepared copies are not reachable offline and the attempt can hang.
    download_config = tfds.download.DownloadConfig(
        manual_dir=self._manual_dir, try_download_gcs=False)
    try:
      if self._quiet_prepare:
        with _quiet_tfds():
          self.builder.download_and_prepare(download_config=download_config)
      else:
        self.builder.download_and_prepare(download_config=download_config)
    except tarfile.ReadError as e:
      # Damage past the first header (a cut download): tfds names no file.
      raise ValueError(
          f'{self.name}: cannot prepare: an archive in {self._manual_dir} '
          f'({", ".join(self._manual_files)}) is damaged ({e}); download it '
          f'again. {self._missing_data_hint}') from None
    elapsed = f'{time.time() - start:.1f} s'
    print(f'done in {elapsed}' if self._quiet_prepare
          else f'{self.name}: prepared in {elapsed}', flush=True)

  def _split_size(self, tfds_split):
    splits = self.builder.info.splits
    if tfds_split not in splits or not splits[tfds_split].num_examples:
      raise RuntimeError(
          f'{self.name}: tfds split {tfds_split!r} is not prepared in '
          f'{os.fspath(self.builder.data_dir)}. Call prepare() first (it reads the '
          f'source files: {self._missing_data_hint})')
    return splits[tfds_split].num_examples

  def _tfds_split(self, split):
    """Returns (tfds split string, number of examples) for a study split."""
    check_split(split)
    if split == 'test':
      return self._test_split, self._split_size(self._test_split)
    total = self._split_size(self._train_split)
    if split == 'trainval':
      return self._train_split, total
    if total <= self.holdout:
      raise ValueError(
          f'{self.name}: the tfds {self._train_split!r} split has {total} examples, '
          f'not more than the val hold-out of {self.holdout}; pass a smaller holdout '
          f'(registry.get_dataset({self.name!r}, holdout=...)).')
    cut = total - self.holdout
    if split == 'train':
      return f'{self._train_split}[:{cut}]', cut
    return f'{self._train_split}[{cut}:]', self.holdout

  def num_examples(self, split):
    """Number of examples in a study split."""
    return self._tfds_split(split)[1]

  def split_parts(self, split):
    """The study splits `split` is, example for example, the concatenation of.

    trainval is train then val (the tfds train split read in order, cut at the
    hold-out), so what is computed per example on train and val (frozen
    features) need not be computed again for trainval. None for a split that
    is its own.
    """
    check_split(split)
    return ('train', 'val') if split == 'trainval' else None

  def as_dataset(self, split, *, shuffle_files=False, seed=0, input_context=None):
    """The examples of a study split; see the module docstring for the fields.

    Args:
      split: one of SPLITS.
      shuffle_files: read the tfds files in a seeded random order (the same one
        on every iteration); 'index' stays the place in the split.
      seed: seed of the file order.
      input_context: optional tf.distribute.InputContext to shard by.

    Returns:
      tf.data.Dataset of {'image', 'label', 'index'} dicts.
    """
    tfds_split, _ = self._tfds_split(split)
    # Ordered builders (fashion_mnist) keep file order by contract and refuse to
    # shuffle files; they hold one file per split, so there is nothing to shuffle.
    shuffle_files = shuffle_files and not self.builder.info.disable_shuffling
    # The same file order every time the dataset is iterated: the training
    # stream re-reads it once per epoch and must be rebuildable on resume.
    read_config = tfds.ReadConfig(shuffle_seed=seed, add_tfds_id=shuffle_files,
                                  shuffle_reshuffle_each_iteration=False)
    decoders = None if self._decode_images else {'image': tfds.decode.SkipDecoding()}
    examples = self.builder.as_dataset(
        split=tfds_split, shuffle_files=shuffle_files, read_config=read_config,
        decoders=decoders)
    if not shuffle_files:
      examples = examples.map(
          lambda ex: {'image': ex['image'], 'label': ex['label']},
          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
      return index_and_shard(examples, input_context)
    # Files read out of order: 'index' must still be the place in the split
    # (low-data subsets select by it), so it is rebuilt from each record's
    # file and place in that file, which tfds puts in 'tfds_id'.
    first_index = self._first_index_of_files(tfds_split)

    def number(ex):
      file = tf.strings.regex_replace(ex['tfds_id'], '__[0-9]+$', '')
      record = tf.strings.to_number(
          tf.strings.regex_replace(ex['tfds_id'], '^.*__', ''), tf.int64)
      return {'image': ex['image'], 'label': ex['label'],
              'index': first_index.lookup(file) + record}

    examples = examples.map(number, num_parallel_calls=tf.data.AUTOTUNE,
                            deterministic=True)
    return index_and_shard(examples, input_context, numbered=True)

  def _first_index_of_files(self, tfds_split):
    """file name -> the split index of its record 0 (a lookup table).

    A file's records from `skip` on belong to the split, in order, after the
    `take`s of the files before it.
    """
    names, firsts, offset = [], [], 0
    for instruction in self.builder.info.splits[tfds_split].file_instructions:
      names.append(os.path.basename(instruction.filename))
      firsts.append(offset - instruction.skip)
      offset += instruction.take
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(names), tf.constant(firsts, tf.int64)),
        default_value=-(2 ** 62))


  def as_batched_dataset(self, split, batch_size, *, input_context=None):
    """One ordered pass over a split in batches, parsed a batch at a time.

    Same examples, order, sharding and fields as `as_dataset(split).batch(
    batch_size)`, but each batch of serialized records is parsed and decoded
    by one op: tfds parses record by record, which measured 54-73 us of CPU
    per 28x28 image on this 2-core machine, more than a small trunk's forward.

    Returns:
      tf.data.Dataset of {'image' [b, H, W, C] or [b] strings, 'label' [b],
      'index' [b]} dicts, or None where the stored features cannot be parsed
      as fixed-size fields (the caller then reads per example).
    """
    tfds_split, _ = self._tfds_split(split)
    features = self.builder.info.features
    serialized = features.get_serialized_info()
    wanted = ('image', 'label')
    if not all(k in serialized for k in wanted):
      return None
    spec = {}
    for key in wanted:
      info = serialized[key]
      if (getattr(info, 'sequence_rank', 0) or info.shape is None
          or not all(isinstance(d, int) for d in info.shape)):
        return None
      spec[key] = tf.io.FixedLenFeature(info.shape, info.tf_dtype)
    parts = []
    for instruction in self.builder.info.splits[tfds_split].file_instructions:
      part = tf.data.TFRecordDataset(instruction.filename)
      parts.append(part.skip(instruction.skip).take(instruction.take))
    records = parts[0]
    for part in parts[1:]:
      records = records.concatenate(part)
    records = records.enumerate()
    if input_context is not None and input_context.num_input_pipelines > 1:
      records = records.shard(input_context.num_input_pipelines,
                              input_context.input_pipeline_id)

    def parse(index, serialized_batch):
      parsed = tf.io.parse_example(serialized_batch, spec)
      image = parsed['image']
      if self._decode_images:
        image = _decode_image_batch(features['image'], image)
      return {'image': image,
              'label': tf.cast(features['label'].decode_batch_example(
                  parsed['label']), tf.int64),
              'index': index}

    return records.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def _decode_image_batch(feature, data):
  """tfds `feature.decode_batch_example(data)`, without its per-example loop.

  tfds decodes a batch of raw-bytes tensors with tf.map_fn; one decode_raw
  over the batch gives the same array (checked against tfds's per-example
  reading in tests/datasets/test_input_pipeline.py) at a fraction of the cost.
  """
  shape = getattr(feature, 'shape', None)
  if (isinstance(feature, tfds.features.Tensor)
      and getattr(feature, '_encoded_to_bytes', False)
      and shape is not None and all(isinstance(d, int) for d in shape)):
    return tf.reshape(tf.io.decode_raw(data, feature.tf_dtype), [-1, *shape])
  return feature.decode_batch_example(data)


@contextlib.contextmanager
def _prepare_lock(data_dir, name):
  """Holds an exclusive lock beside `data_dir` (<builder>.prepare.lock)."""
  path = os.path.dirname(data_dir) + '.prepare.lock'
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'a') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      print(f'{name}: another process is preparing {data_dir}; waiting for it '
            f'(lock {path}) ...', flush=True)
      fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet_tfds():
  """Silences tfds's progress bars and status prints for the enclosed calls."""
  tqdm_utils = tfds.core.utils.tqdm_utils
  was_active = getattr(tqdm_utils, '_active', True)
  tfds.display_progress_bar(False)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    tfds.display_progress_bar(was_active)
