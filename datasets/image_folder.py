"""A user's own images in class folders, seen through the study's splits.

Two layouts, told apart by whether `<root>/train` and `<root>/test` both exist:

  split folders   <root>/train/<class>/*, <root>/test/<class>/*, optionally
                  <root>/val/<class>/*;
  class folders   <root>/<class>/* (no test split).

Images are files ending in .jpg, .jpeg or .png (any case) directly inside a class
folder; other files are ignored. Class ids are the sorted class-folder names of the
training folder (`<root>/train` or `<root>`).

Without a val folder, val is held out deterministically from the training folder:
within each class, files in sorted name order, every `holdout_every`-th file (the
10th, 20th, ... by default) is val and the rest is train; trainval is all of them.
With a val folder, train is the train folder, val the val folder, trainval both.

`as_dataset` yields the encoded file bytes as 'image' (the `decode` preprocessing op
decodes them), plus 'label', 'index' and 'path'. `prepare()` (what a run calls
before training) decodes every file once and refuses a folder with a file that
does not decode, naming it: damage inside a file with intact start and end
markers shows only when decoded, and the decoder's own error names no file.
Each file is also checked to be a complete JPEG or PNG as it is read, so one
truncated later stops the pipeline with an error naming it; `check_images(root)`
(or `python -m datasets.image_folder --check ROOT`) lists every bad one with why.

`bad_images='skip'` (gin: `image_folder.bad_images = 'skip'`) instead decodes
every file once, before the first use of a split, and leaves out those that do
not decode, logging how many and which. Leaving them out of the file lists,
rather than filtering the stream, keeps split sizes (epochs, steps) and 'index'
(0..n-1) right.

A folder must have at least two classes, each with a training image: a linear
probe of one class, or of a class it never sees, scores nothing about the
representation.
"""
import argparse
import os
import sys

import gin
import numpy as np
import tensorflow as tf

from datasets import registry
from datasets import tfds_dataset

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
HOLDOUT_EVERY = 10

_JPEG_START = b'\xff\xd8'
_JPEG_END = b'\xff\xd9'
_PNG_START = b'\x89PNG\r\n\x1a\n'
_PNG_END = b'IEND\xaeB`\x82'
# The end marker must lie in this many final bytes; tolerates the trailing padding
# some writers append after a JPEG's end marker.
_TAIL_BYTES = 4096

LAYOUT_HINT = (
    'Arrange images as <root>/<class_name>/*.jpg|jpeg|png, or as '
    '<root>/train/<class_name>/..., <root>/test/<class_name>/... and optionally '
    '<root>/val/<class_name>/....')


BAD_IMAGES = ('fail', 'skip')


@gin.configurable('image_folder')
def bad_images_setting(bad_images='fail'):
  """What an ImageFolder does with undecodable files when not told: 'fail' or 'skip'."""
  return bad_images


def _check_command(root):
  return (f'run `python -m datasets.image_folder --check {root}` '
          '(datasets.image_folder.check_images) to list every bad file, then replace '
          'or remove them')


def looks_complete(data):
  """Whether encoded bytes start like a JPEG/PNG and contain its end marker near the end.

  Catches truncated and non-image files without decoding; a full decode
  (check_images) also catches damage inside a file.

  Args:
    data: tf.string scalar, the file's bytes.

  Returns:
    tf.bool scalar.
  """
  length = tf.strings.length(data)
  tail_start = tf.maximum(length - _TAIL_BYTES, 0)
  tail = tf.strings.substr(data, tail_start, length - tail_start)

  def contains(marker):
    return tf.size(tf.strings.split(tail, sep=marker)) > 1

  is_jpeg = tf.equal(tf.strings.substr(data, 0, len(_JPEG_START)), _JPEG_START)
  is_png = tf.equal(tf.strings.substr(data, 0, len(_PNG_START)), _PNG_START)
  return tf.logical_or(tf.logical_and(is_jpeg, contains(_JPEG_END)),
                       tf.logical_and(is_png, contains(_PNG_END)))


def _undecodable(paths):
  """The paths among `paths` that cannot be read or decoded, or are incomplete.

  One parallel pass of tf.data: an element whose read or decode fails is
  dropped (ignore_errors), so the bad files are those that do not come out.
  """
  if not paths:
    return set()

  def decodes(path):
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    return path, tf.logical_and(looks_complete(data), tf.size(image) > 0)

  checked = tf.data.Dataset.from_tensor_slices(np.array(paths, dtype=str)).map(
      decodes, num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=False).ignore_errors()
  good = set()
  for batch_paths, ok in checked.batch(4096).as_numpy_iterator():
    good.update(p.decode() for p, k in zip(batch_paths, ok) if k)
  return set(paths) - good


def _list_images(folder):
  return sorted(name for name in os.listdir(folder)
                if name.lower().endswith(IMAGE_EXTENSIONS) and
                os.path.isfile(os.path.join(folder, name)))


def _class_names(folder):
  return sorted(name for name in os.listdir(folder)
                if os.path.isdir(os.path.join(folder, name)))


def _scan(folder, class_ids):
  """Lists a folder of class folders.

  Returns:
    {class id: sorted list of image paths}, for every class in `class_ids`.

  Raises:
    ValueError: `folder` has a class folder missing from `class_ids`.
  """
  files = {class_id: [] for class_id in class_ids.values()}
  for name in _class_names(folder):
    if name not in class_ids:
      raise ValueError(
          f'image_folder: class folder {os.path.join(folder, name)} is not among the '
          f'training classes {sorted(class_ids)}; add a training folder for it or '
          'remove it.')
    class_dir = os.path.join(folder, name)
    files[class_ids[name]] = [os.path.join(class_dir, f) for f in _list_images(class_dir)]
  return files


def _flatten(files_by_class):
  """{class id: paths} -> (paths, labels), ordered by class id then path."""
  paths, labels = [], []
  for class_id in sorted(files_by_class):
    paths.extend(files_by_class[class_id])
    labels.extend([class_id] * len(files_by_class[class_id]))
  return paths, labels


@registry.register(
    'image_folder:',
    usage='image_folder:<root> (a folder with one sub-folder of images per class)')
class ImageFolder:
  """Images in class folders under `root`, with the study's four splits.

  Attributes:
    name: 'image_folder:<root>'.
    root: the folder.
    class_names: sorted class-folder names; a label is an index into it.
    num_classes: len(class_names).
    image_shape: (None, None, 3): sizes vary, decoding yields RGB.
    splits: the splits this layout has (all but 'test' for class folders).
  """

  def __init__(self, root, holdout_every=HOLDOUT_EVERY, *, bad_images=None,
               data_dir=None, manual_dir=None):
    """Lists the files of every split (no image is read here).

    Args:
      root: the folder; see the module docstring for the layouts.
      holdout_every: without a val folder, every holdout_every-th file of each
        class (in sorted order) is held out as val.
      bad_images: 'fail' (stop at the first file that is not a complete JPEG
        or PNG, naming it) or 'skip' (leave such files out, logging them);
        None: the gin binding `image_folder.bad_images`, 'fail' by default.
      data_dir: unused (the images are read in place); accepted, like
        manual_dir, because registry.get_dataset passes both to every dataset.
      manual_dir: unused.

    Raises:
      FileNotFoundError: `root` is not a folder.
      ValueError: no classes, no images, or a class folder unknown to training.
    """
    if not isinstance(holdout_every, int) or isinstance(holdout_every, bool) or (
        holdout_every < 2):
      raise ValueError(f'image_folder: holdout_every must be an int >= 2 (every n-th '
                       f'file is val), got {holdout_every!r}.')
    if bad_images is None:
      bad_images = bad_images_setting()
    if bad_images not in BAD_IMAGES:
      raise ValueError(f'image_folder: bad_images must be one of '
                       f'{", ".join(map(repr, BAD_IMAGES))}, got {bad_images!r}.')
    if not os.path.isdir(root):
      raise FileNotFoundError(f'image_folder: {root} is not a folder. {LAYOUT_HINT}')
    self.root = root
    self.bad_images = bad_images
    self._checked = bad_images == 'fail'
    self._decoded = False
    self.name = f'image_folder:{root}'
    self.image_shape = (None, None, 3)
    self.holdout_every = holdout_every

    has_split_folders = all(
        os.path.isdir(os.path.join(root, s)) for s in ('train', 'test'))
    train_dir = os.path.join(root, 'train') if has_split_folders else root
    self.class_names = tuple(_class_names(train_dir))
    if not self.class_names:
      raise ValueError(f'image_folder: {train_dir} has no class folders. {LAYOUT_HINT}')
    self.num_classes = len(self.class_names)
    class_ids = {name: i for i, name in enumerate(self.class_names)}

    train_files = _scan(train_dir, class_ids)
    val_dir = os.path.join(root, 'val')
    if has_split_folders and os.path.isdir(val_dir):
      val_files = _scan(val_dir, class_ids)
      trainval_files = {c: train_files[c] + val_files[c] for c in train_files}
    else:
      trainval_files = train_files
      val_files = {c: paths[holdout_every - 1::holdout_every]
                   for c, paths in train_files.items()}
      train_files = {c: [p for i, p in enumerate(paths)
                         if i % holdout_every != holdout_every - 1]
                     for c, paths in train_files.items()}
    self._splits = {
        'train': _flatten(train_files),
        'val': _flatten(val_files),
        'trainval': _flatten(trainval_files),
    }
    if has_split_folders:
      self._splits['test'] = _flatten(_scan(os.path.join(root, 'test'), class_ids))
    self.splits = tuple(s for s in tfds_dataset.SPLITS if s in self._splits)
    if not self._splits['trainval'][0]:
      raise ValueError(f'image_folder: no {"/".join(IMAGE_EXTENSIONS)} files under '
                       f'{train_dir}. {LAYOUT_HINT}')
    empty = sorted(self.class_names[c] for c, paths in trainval_files.items()
                   if not paths)
    if empty and len(empty) < self.num_classes:
      raise ValueError(
          f'image_folder: class folder(s) {", ".join(empty)} under {train_dir} hold '
          f'no {"/".join(IMAGE_EXTENSIONS)} file: a class without images cannot be '
          f'learnt or scored. Add images or remove the folder(s).')
    if self.num_classes < 2 and trainval_files[0]:
      raise ValueError(
          f'image_folder: {train_dir} has one class folder ({self.class_names[0]}); '
          f'an evaluation classifies at least two. {LAYOUT_HINT}')

  def _split(self, split):
    tfds_dataset.check_split(split)
    if split not in self._splits:
      raise ValueError(
          f'image_folder: {self.root} has no test split; put the images in '
          f'{os.path.join(self.root, "train")}/<class>/ and '
          f'{os.path.join(self.root, "test")}/<class>/ to have one.')
    if not self._checked:
      self._leave_out_bad_images()
    return self._splits[split]

  def _all_paths(self):
    return sorted({p for files, _ in self._splits.values() for p in files})

  def _leave_out_bad_images(self):
    """bad_images='skip': drops every file that does not decode from every
    split, once."""
    self._checked = self._decoded = True
    paths = self._all_paths()
    bad = _undecodable(paths)
    if not bad:
      return
    shown = sorted(bad)[:5]
    print(f'image_folder: skipping {len(bad)} of {len(paths)} files under '
          f'{self.root} that are not complete JPEG or PNG images '
          f'(image_folder.bad_images=\'skip\'): {", ".join(shown)}'
          f'{", ..." if len(bad) > len(shown) else ""}', flush=True)
    for split, (files, labels) in self._splits.items():
      kept = [(p, label) for p, label in zip(files, labels) if p not in bad]
      self._splits[split] = ([p for p, _ in kept], [label for _, label in kept])
    if not self._splits['trainval'][0]:
      raise ValueError(f'image_folder: no complete image under {self.root}; '
                       f'{_check_command(self.root)}.')

  def files(self, split):
    """(paths, labels) of a split, in the order that 'index' numbers them."""
    paths, labels = self._split(split)
    return list(paths), list(labels)

  def num_examples(self, split):
    """Number of images in a split."""
    return len(self._split(split)[0])

  def prepare(self):
    """Decodes every image once (see the module docstring); prints the split
    sizes found.

    Raises:
      ValueError: with bad_images='fail', files that do not decode (named).
    """
    if not self._decoded:
      if self.bad_images == 'skip':
        self._leave_out_bad_images()
      else:
        self._decoded = True
        paths = self._all_paths()
        bad = sorted(_undecodable(paths))
        if bad:
          raise ValueError(
              f'image_folder: {len(bad)} of {len(paths)} files under {self.root} '
              f'do not decode as JPEG or PNG images (truncated or corrupt): '
              f'{", ".join(bad[:5])}{", ..." if len(bad) > 5 else ""}. Replace or '
              f'remove them, or set image_folder.bad_images = \'skip\' to leave '
              f'them out.')
    sizes = ', '.join(f'{s} {self.num_examples(s)}' for s in self.splits)
    print(f'{self.name}: {self.num_classes} classes; {sizes} images', flush=True)

  def as_dataset(self, split, *, shuffle_files=False, seed=0, input_context=None):
    """The images of a split.

    Args:
      split: one of tfds_dataset.SPLITS.
      shuffle_files: read the files in an order permuted by `seed`; 'index' still
        numbers each file by its place in the sorted split.
      seed: seed of that permutation.
      input_context: optional tf.distribute.InputContext to shard by.

    Returns:
      tf.data.Dataset of dicts: 'image' (tf.string scalar, the encoded file),
      'label' (int64 scalar), 'index' (int64 scalar), 'path' (tf.string scalar).
    """
    paths, labels = self._split(split)
    order = np.arange(len(paths), dtype=np.int64)
    if shuffle_files:
      order = np.random.default_rng(seed).permutation(order)
    files = tf.data.Dataset.from_tensor_slices({
        'index': order,
        'path': np.array(paths, dtype=str)[order],
        'label': np.array(labels, dtype=np.int64)[order],
    })
    if input_context is not None and input_context.num_input_pipelines > 1:
      files = files.shard(input_context.num_input_pipelines,
                          input_context.input_pipeline_id)
    message = (f'image_folder: this file is not a complete JPEG or PNG image '
               f'(truncated or corrupt); {_check_command(self.root)}. File:')

    def read(example):
      data = tf.io.read_file(example['path'])
      check = tf.debugging.Assert(looks_complete(data), [message, example['path']])
      with tf.control_dependencies([check]):
        data = tf.identity(data)
      return {'image': data, 'label': example['label'], 'index': example['index'],
              'path': example['path']}

    return files.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def check_images(root):
  """Reads and fully decodes every image of every split under `root`.

  Args:
    root: an image_folder root (either layout).

  Returns:
    A list of (path, reason) for each file that is unreadable, truncated or does
    not decode as an RGB image; empty when all are fine. Sorted by path.
  """
  dataset = ImageFolder(root)
  paths = sorted(set(dataset.files('trainval')[0]) | set(
      dataset.files('test')[0] if 'test' in dataset.splits else []))
  problems = []
  for path in paths:
    try:
      data = tf.io.read_file(path)
      tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.OpError, OSError) as e:
      reason = getattr(e, 'message', str(e)).strip().splitlines()[-1]
      problems.append((path, f'does not decode: {reason}'))
      continue
    if not bool(looks_complete(data)):
      problems.append((path, 'decodes, but lacks the end marker of a complete JPEG/PNG'))
  return problems


def main(argv=None):
  parser = argparse.ArgumentParser(
      description='Checks that every image of an image_folder dataset decodes.')
  parser.add_argument('--check', metavar='ROOT', required=True,
                      help='the image_folder root to check')
  args = parser.parse_args(argv)
  problems = check_images(args.check)
  for path, reason in problems:
    print(f'{path}: {reason}')
  print(f'{len(problems)} bad image(s) under {args.check}')
  return 1 if problems else 0


if __name__ == '__main__':
  sys.exit(main())
