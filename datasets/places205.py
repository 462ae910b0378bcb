"""Places205 built from its official archives (manual download), with the study's splits.

tfds has no Places205 (docs/protocol.md §7), so `Places205Archives` is a local tfds builder
(tfds name `places205_archives`) reading the two archives of the Places205 download
page, http://places.csail.mit.edu/downloadData.html, from a manual directory:

  imagesPlaces205_resize.tar.gz    the images (resized to 256x256), as
      data/vision/torralba/deeplearning/images256/<letter>/<category>[/<sub>]/<name>.jpg
  trainvalsplit_places205.tar.gz   trainvalsplit_places205/train_places205.csv and
      .../val_places205.csv, lines '<path under images256> <label>'.

tfds 'train' and 'validation' hold the images of the two csv files in csv order
(`disable_shuffling`); class names are the category paths ('a/abbey',
'f/field/cultivated'), read from the train csv. The images are streamed out of the
archive, never extracted, and stored as the original JPEG bytes. Each one is decoded
once while preparing, as the `decode` op will decode it, so a damaged file stops the
preparation, named, rather than a training run days later.

The study's splits (docs/protocol.md §7, as ImageNet): val is the last 50,000 images of the
train csv, train the rest, trainval all of them, test the official val csv (tfds
'validation', 100 images per class).
"""
import collections
import concurrent.futures
import os
import posixpath
import tarfile
import zlib

import tensorflow as tf
import tensorflow_datasets as tfds

from datasets import image_folder
from datasets import registry
from datasets import tfds_dataset

IMAGES_ARCHIVE = 'imagesPlaces205_resize.tar.gz'
SPLITS_ARCHIVE = 'trainvalsplit_places205.tar.gz'
ARCHIVES = (IMAGES_ARCHIVE, SPLITS_ARCHIVE)
TRAIN_CSV = 'train_places205.csv'
VAL_CSV = 'val_places205.csv'
# Image paths in the csv files are relative to this folder of the images archive.
IMAGES_DIR = 'images256'
DOWNLOAD_PAGE = 'http://places.csail.mit.edu/downloadData.html'
NUM_CLASSES = 205
HOLDOUT = 50000

MANUAL_DIR_HINT = (
    f'Download {IMAGES_ARCHIVE} and {SPLITS_ARCHIVE} from {DOWNLOAD_PAGE} into one '
    'folder, leaving them packed, and pass that folder as manual_dir (default: '
    '<data_dir>/downloads/manual); prepare() then builds the tfds files once.')

# tfds keeps an unshuffled split in key order by sorting the examples in 1,000
# buckets that cut the key range [0, 2**128) evenly, one bucket in memory at a time.
# Spreading the keys over that range keeps each bucket ~1/1,000 of the split (the
# train split is ~30 GB) instead of putting everything in the first one.
_KEY_RANGE = 2 ** 128

# Images are decoded (checked) by this many threads while the archive streams on.
_CHECK_THREADS = min(8, os.cpu_count() or 1)

# Bad or missing files an error lists by name before it just counts the rest.
_MAX_LISTED = 10


def example_key(position, count):
  """The tfds key of the example at `position` (0-based) of a csv of `count` lines."""
  return position * (_KEY_RANGE // count)


def _listing(names):
  listed = ', '.join(names[:_MAX_LISTED])
  more = len(names) - _MAX_LISTED
  return listed + (f' and {more} more' if more > 0 else '')


def parse_csv(text, csv_name):
  """Parses a Places205 split list.

  Args:
    text: the csv file's contents, lines '<path under images256> <label>'.
    csv_name: the file's name, for messages.

  Returns:
    A list of (path, label, line number) in file order; a leading '/' is dropped
    from paths.

  Raises:
    ValueError: naming the file and line, for a line that is not a path and an int.
  """
  entries = []
  for number, line in enumerate(text.splitlines(), start=1):
    if not line.strip():
      continue
    fields = line.split()
    try:
      if len(fields) != 2:
        raise ValueError
      label = int(fields[1])
    except ValueError:
      raise ValueError(
          f'places205: line {number} of {csv_name} is {line!r}, not '
          f'"<image path> <label>". {MANUAL_DIR_HINT}') from None
    entries.append((fields[0].lstrip('/'), label, number))
  if not entries:
    raise ValueError(f'places205: {csv_name} lists no images. {MANUAL_DIR_HINT}')
  return entries


def class_names(train_entries, csv_name=TRAIN_CSV):
  """The category path of each label, from the train csv: 'a/abbey', 'f/field/cultivated'.

  Args:
    train_entries: parse_csv's list for the train csv.
    csv_name: its name, for messages.

  Returns:
    A list of NUM_CLASSES names, indexed by label.

  Raises:
    ValueError: the labels are not 0..NUM_CLASSES-1, or labels and category folders
      do not correspond one to one.
  """
  by_label = {}
  for path, label, number in train_entries:
    category = posixpath.dirname(path)
    if not category:
      raise ValueError(
          f'places205: line {number} of {csv_name} lists {path!r}, which has no '
          f'category folder. {MANUAL_DIR_HINT}')
    seen = by_label.setdefault(label, (category, number))
    if seen[0] != category:
      raise ValueError(
          f'places205: {csv_name} gives label {label} to category {seen[0]!r} (line '
          f'{seen[1]}) and to {category!r} (line {number}). {MANUAL_DIR_HINT}')
  if sorted(by_label) != list(range(NUM_CLASSES)):
    raise ValueError(
        f'places205: {csv_name} has {len(by_label)} distinct labels from '
        f'{min(by_label)} to {max(by_label)}; Places205 has labels 0..'
        f'{NUM_CLASSES - 1}. {MANUAL_DIR_HINT}')
  names = [by_label[label][0] for label in range(NUM_CLASSES)]
  repeated = [name for name, n in collections.Counter(names).items() if n > 1]
  if repeated:
    raise ValueError(
        f'places205: {csv_name} gives categories {_listing(repeated)} more than one '
        f'label. {MANUAL_DIR_HINT}')
  return names


def check_labels(entries, names, csv_name):
  """Raises ValueError unless every (path, label) of `entries` agrees with `names`."""
  for path, label, number in entries:
    if not 0 <= label < len(names) or posixpath.dirname(path) != names[label]:
      expected = (f'label {label} is {names[label]!r} in {TRAIN_CSV}'
                  if 0 <= label < len(names) else f'labels are 0..{len(names) - 1}')
      raise ValueError(
          f'places205: line {number} of {csv_name} gives {path!r} label {label}, but '
          f'{expected}. {MANUAL_DIR_HINT}')


def read_split_lists(archive):
  """Reads the train and val csv files out of trainvalsplit_places205.tar.gz.

  Args:
    archive: path of the archive.

  Returns:
    {TRAIN_CSV: entries, VAL_CSV: entries}, each as parse_csv returns it.

  Raises:
    ValueError: the archive is damaged, or lacks or repeats one of the files.
  """
  texts = {}
  try:
    with tarfile.open(archive, 'r:gz') as tar:
      members = tar.getmembers()
      for member in members:
        name = posixpath.basename(member.name)
        if member.isfile() and name in (TRAIN_CSV, VAL_CSV):
          if name in texts:
            raise ValueError(f'places205: {archive} holds {name} more than once. '
                             f'{MANUAL_DIR_HINT}')
          texts[name] = tar.extractfile(member).read().decode('utf-8')
  except (tarfile.TarError, OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
    raise ValueError(f'places205: cannot read {archive} ({e}); it is damaged or not '
                     f'the split archive. {MANUAL_DIR_HINT}') from e
  missing = [name for name in (TRAIN_CSV, VAL_CSV) if name not in texts]
  if missing:
    found = [m.name for m in members if m.isfile()]
    raise ValueError(
        f'places205: {archive} lacks {", ".join(missing)} (it holds '
        f'{_listing(found) or "no files"}). {MANUAL_DIR_HINT}')
  return {name: parse_csv(text, name) for name, text in texts.items()}


def iter_archive_images(archive):
  """Streams the image files out of imagesPlaces205_resize.tar.gz, in archive order.

  Args:
    archive: path of the archive.

  Yields:
    (path under images256/, the file's bytes); other members are skipped.

  Raises:
    ValueError: the archive is not a complete tar.gz file.
  """
  marker = IMAGES_DIR + '/'
  try:
    # 'r|gz' reads the ~30 GB once, front to back, and extracts nothing to disk.
    with tarfile.open(archive, 'r|gz') as tar:
      for member in tar:
        # Streaming still keeps every header read so far in tar.members;
        # millions of them would take gigabytes.
        tar.members = []
        if not member.isfile():
          continue
        head, found, path = member.name.partition(marker)
        if not found or (head and not head.endswith('/')):
          continue
        yield path, tar.extractfile(member).read()
  except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
    raise ValueError(f'places205: {archive} is not a complete tar.gz archive ({e}); '
                     f'download it again. {MANUAL_DIR_HINT}') from e


def image_problem(data):
  """Why encoded bytes are not a complete JPEG (or PNG) the `decode` op reads; or None."""
  # The same markers image folders are checked for, then a full decode.
  if not bool(image_folder.looks_complete(tf.constant(data))):
    return 'not a complete JPEG or PNG file (truncated or corrupt)'
  try:
    tf.io.decode_image(data, channels=3, expand_animations=False)
  except tf.errors.OpError as e:
    return f'does not decode ({e.message.strip().splitlines()[-1]})'
  return None


def _checked(images):
  """(path, data, image_problem(data)) for each (path, data), in order.

  The decodes run in threads over a bounded window of the stream.
  """
  window = collections.deque()
  with concurrent.futures.ThreadPoolExecutor(_CHECK_THREADS) as pool:
    for path, data in images:
      window.append((path, data, pool.submit(image_problem, data)))
      if len(window) >= 16 * _CHECK_THREADS:
        path, data, problem = window.popleft()
        yield path, data, problem.result()
    while window:
      path, data, problem = window.popleft()
      yield path, data, problem.result()


class Places205Archives(tfds.core.GeneratorBasedBuilder):
  """Places205 read from its two official archives; tfds name `places205_archives`.

  Splits 'train' and 'validation' follow their csv files' order
  (`disable_shuffling`), so slices such as 'train[-50000:]' are deterministic.
  Features: 'image' (the original JPEG bytes; decodes to uint8 [H, W, 3]), 'label'
  (int64, names = category paths) and 'file_name' (the path under images256/).
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Read from the official archives; original JPEG bytes.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Put {IMAGES_ARCHIVE} (the images, resized to 256x256) and {SPLITS_ARCHIVE} '
      f'(the train/val lists), both as downloaded from {DOWNLOAD_PAGE}, in the manual '
      'directory (default <data_dir>/downloads/manual); they are read packed.')

  def _info(self):
    return self.dataset_info_from_configs(
        description='Places205 (MIT CSAIL): scene images, 205 categories.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3),
                                         encoding_format='jpeg'),
            # The names (category paths) are only known from the train csv;
            # _split_generators sets them and tfds stores them with the data.
            'label': tfds.features.ClassLabel(num_classes=NUM_CLASSES),
            'file_name': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'),
        disable_shuffling=True,
        homepage=DOWNLOAD_PAGE,
    )

  def _split_generators(self, dl_manager):
    try:
      manual_dir = os.fspath(dl_manager.manual_dir)
    except AssertionError as e:
      raise FileNotFoundError(f'{e}\n{MANUAL_DIR_HINT}') from e
    paths = {name: os.path.join(manual_dir, name) for name in ARCHIVES}
    for name, path in paths.items():
      if not os.path.isfile(path):
        raise FileNotFoundError(
            f'places205: {path} is missing: put {name} in {manual_dir}. '
            f'{MANUAL_DIR_HINT}')
    # Both lists are read and checked before the long pass over the images.
    lists = read_split_lists(paths[SPLITS_ARCHIVE])
    names = class_names(lists[TRAIN_CSV])
    check_labels(lists[VAL_CSV], names, VAL_CSV)
    self.info.features['label'].names = names
    images = paths[IMAGES_ARCHIVE]
    return {
        'train': self._generate_examples(images, lists[TRAIN_CSV], TRAIN_CSV),
        'validation': self._generate_examples(images, lists[VAL_CSV], VAL_CSV),
    }

  def _generate_examples(self, archive, entries, csv_name):
    """Yields the images of `entries` in archive order, keyed by csv position.

    tfds writes them in key order, i.e. csv order. Raises ValueError, after the
    whole archive is read, naming every listed image that is absent or damaged.
    """
    positions = collections.defaultdict(list)
    for position, (path, _, _) in enumerate(entries):
      positions[path].append(position)
    wanted = ((path, data) for path, data in iter_archive_images(archive)
              if path in positions)
    seen, damaged = set(), []
    for path, data, problem in _checked(wanted):
      # A path stored twice counts once: the first copy.
      if path in seen:
        continue
      seen.add(path)
      if problem:
        damaged.append(f'{path} ({problem})')
        continue
      for position in positions[path]:
        yield example_key(position, len(entries)), {
            'image': data, 'label': entries[position][1], 'file_name': path}
    absent = [path for path in positions if path not in seen]
    errors = []
    if absent:
      hint = ('' if seen else
              f' (none of the images under {IMAGES_DIR}/ it lists was found)')
      errors.append(f'{len(absent)} of the {len(positions)} images {csv_name} lists '
                    f'{"is" if len(absent) == 1 else "are"} absent from {archive}'
                    f'{hint}: {_listing(absent)}.')
    if damaged:
      errors.append(f'{len(damaged)} of the images {csv_name} lists '
                    f'{"is" if len(damaged) == 1 else "are"} damaged in {archive}: '
                    f'{_listing(damaged)}.')
    if errors:
      raise ValueError(f'places205: {" ".join(errors)} The archive is incomplete or '
                       f'damaged; download it again from {DOWNLOAD_PAGE}.')


@registry.register('places205')
class Places205(tfds_dataset.TfdsDataset):
  """Places205 seen through the study's splits; 'image' is encoded JPEG bytes."""

  def __init__(self, data_dir=None, manual_dir=None, holdout=HOLDOUT):
    """Uses the `places205_archives` builder under `data_dir`.

    Args:
      data_dir: tfds data directory; None uses tfds's default.
      manual_dir: folder with the two Places205 archives; None uses
        <data_dir>/downloads/manual.
      holdout: training images held out from the end of the train csv as val.
    """
    super().__init__(
        name='places205',
        builder=Places205Archives(data_dir=data_dir),
        num_classes=NUM_CLASSES,
        # The builder stores the files' bytes as they are, without checking sizes.
        image_shape=(None, None, 3),
        holdout=holdout,
        test_split='validation',
        manual_dir=manual_dir,
        manual_files=ARCHIVES,
        missing_data_hint=MANUAL_DIR_HINT,
        decode_images=False)
