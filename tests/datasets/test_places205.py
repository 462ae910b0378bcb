"""Tests for the Places205 builder, on stand-in archives laid out as the official ones.

The stand-in has the real 205 labels (the builder insists on them), with category
paths like the real ones, sub-categories included; 2 training and 1 validation
image per class, 8x8 JPEGs of one colour each that encodes the image's position in
its csv file. The archive holds the images in another order than the csv files, so
the tests see that the builder restores csv order.
"""
import io
import os
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core import shuffle as tfds_shuffle

from datasets import places205
from datasets import registry

PREFIX = 'data/vision/torralba/deeplearning/images256/'
NUM_TRAIN, NUM_VAL, HOLDOUT = 410, 205, 30
# Colour channel c of the image at csv position p is LEVELS[digit c of p in base 8];
# 32 levels apart, the colours survive JPEG's rounding.
LEVELS = np.arange(16, 256, 32)


def category_names():
  """205 distinct category paths by label, among them real ones and sub-categories."""
  names = ['a/abbey', 'b/bedroom', 's/shoe_shop', 'f/field/cultivated', 'f/field/wild']
  letters = 'abcdefghijklmnopqrstuvwxyz'
  names += [f'{letters[i % 26]}/place_{i:03d}' for i in range(len(names), 205)]
  # Labels are not in name order, as nothing says they must be.
  return names[::-1]


def colour(position):
  digits = [position // 64 % 8, position // 8 % 8, position % 8]
  return LEVELS[digits].astype(np.uint8)


def position_of(image):
  """The csv position encoded in a decoded image's colour."""
  mean = image.reshape(-1, 3).mean(axis=0)
  digits = np.abs(mean[:, None] - LEVELS[None, :]).argmin(axis=1)
  assert np.abs(mean - LEVELS[digits]).max() < 8, mean
  return int(digits[0] * 64 + digits[1] * 8 + digits[2])


def jpeg(position):
  return tf.io.encode_jpeg(np.broadcast_to(colour(position), (8, 8, 3)).copy(),
                           quality=95).numpy()


def csv_lists():
  """{csv name: [(path, label)]}: train lists class by class twice round, val once."""
  names = category_names()
  train = [(f'{names[label]}/gsun_{label:03d}_{round_}.jpg', label)
           for round_ in range(2) for label in range(205)]
  val = [(f'{names[label]}/val_{label:03d}.jpg', label)
         for label in reversed(range(205))]
  return {places205.TRAIN_CSV: train, places205.VAL_CSV: val}


def add_file(tar, name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def write_archives(folder, drop=None, damage=None):
  """Writes the two archives into `folder`; returns it.

  Args:
    folder: where to write them.
    drop: an image path (under images256) to leave out of the images archive.
    damage: an image path whose JPEG is cut short.
  """
  os.makedirs(folder, exist_ok=True)
  lists = csv_lists()
  with tarfile.open(os.path.join(folder, places205.SPLITS_ARCHIVE), 'w:gz') as tar:
    for name, entries in lists.items():
      text = ''.join(f'{path} {label}\n' for path, label in entries)
      add_file(tar, f'trainvalsplit_places205/{name}', text.encode())
  files = [(path, jpeg(position)) for entries in lists.values()
           for position, (path, _) in enumerate(entries)]
  # Archive order: by path, as a directory walk might give, unlike the csv order.
  files.sort(reverse=True)
  with tarfile.open(os.path.join(folder, places205.IMAGES_ARCHIVE), 'w:gz') as tar:
    info = tarfile.TarInfo(PREFIX.rstrip('/'))
    info.type = tarfile.DIRTYPE
    tar.addfile(info)
    add_file(tar, PREFIX + 'README.txt', b'not an image, not listed')
    add_file(tar, PREFIX + 'z/unlisted/extra.jpg', jpeg(0))
    for path, data in files:
      if path == drop:
        continue
      add_file(tar, PREFIX + path, data[:len(data) // 2] if path == damage else data)
  return folder


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  root = tmp_path_factory.mktemp('places205')
  manual_dir = write_archives(str(root / 'manual'))
  ds = places205.Places205(data_dir=str(root / 'tfds'), manual_dir=manual_dir,
                           holdout=HOLDOUT)
  # The real train split is ~30 GB, far over tfds's 1 GB in-memory limit, so tfds
  # sorts it in buckets on disk; this stand-in takes the same way.
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(tfds_shuffle, 'MAX_MEM_BUFFER_SIZE', 1000)
    ds.prepare()
  return ds


def collect(dataset):
  """(positions from the colours, labels, indices) of a split's examples."""
  positions, labels, indices = [], [], []
  for ex in dataset:
    assert ex['image'].dtype == tf.string and ex['image'].shape == ()
    image = tf.io.decode_image(ex['image'], channels=3).numpy()
    assert image.shape == (8, 8, 3)
    positions.append(position_of(image))
    labels.append(int(ex['label']))
    indices.append(int(ex['index']))
  return positions, labels, indices


def test_study_splits_follow_csv_order(prepared):
  assert (prepared.name, prepared.num_classes, prepared.image_shape) == (
      'places205', 205, (None, None, 3))
  assert [prepared.num_examples(s) for s in registry.SPLITS] == [380, 30, 410, 205]
  train_labels = [label for _, label in csv_lists()[places205.TRAIN_CSV]]
  expected = {
      'train': (range(380), train_labels[:380]),
      'val': (range(380, 410), train_labels[380:]),
      'trainval': (range(410), train_labels),
      'test': (range(205), list(range(204, -1, -1))),
  }
  for split, (positions, labels) in expected.items():
    assert collect(prepared.as_dataset(split)) == (
        list(positions), labels, list(range(len(labels)))), split


def test_class_names_and_file_names_come_from_the_csv_files(prepared):
  label_feature = prepared.builder.info.features['label']
  assert label_feature.names == category_names()
  assert label_feature.names[201] == 'f/field/cultivated'
  for tfds_split, csv_name in (('train', places205.TRAIN_CSV),
                               ('validation', places205.VAL_CSV)):
    file_names = [ex['file_name'].decode() for ex in
                  prepared.builder.as_dataset(split=tfds_split).as_numpy_iterator()]
    assert file_names == [path for path, _ in csv_lists()[csv_name]]


def test_registry_finds_the_prepared_data(prepared, capsys):
  data_dir = os.fspath(prepared.builder.data_dir_root)
  ds = registry.get_dataset('places205', data_dir=data_dir,
                            manual_dir=prepared.manual_dir)
  assert isinstance(ds, places205.Places205)
  assert ds.builder.name == 'places205_archives' and ds.holdout == 50000
  ds.prepare()
  assert capsys.readouterr().out.startswith('places205: prepared tfds data found in ')
  # The names come back from the prepared files, not from the archives.
  assert ds.builder.info.features['label'].names == category_names()
  assert [ds.num_examples(s) for s in ('trainval', 'test')] == [410, 205]
  with pytest.raises(ValueError, match='not more than the val hold-out of 50000'):
    ds.num_examples('train')
  assert 'places205' in registry.DATASET_NAMES


def test_missing_archive_names_file_folder_and_page(tmp_path):
  manual_dir = write_archives(str(tmp_path / 'manual'))
  os.remove(os.path.join(manual_dir, places205.SPLITS_ARCHIVE))
  ds = registry.get_dataset('places205', data_dir=str(tmp_path / 'tfds'),
                            manual_dir=manual_dir)
  with pytest.raises(FileNotFoundError) as info:
    ds.prepare()
  message = str(info.value)
  assert f'{manual_dir} lacks {places205.SPLITS_ARCHIVE}. ' in message
  assert places205.DOWNLOAD_PAGE in message
  # The builder on its own says the same.
  with pytest.raises(FileNotFoundError) as info:
    ds.builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  message = str(info.value)
  assert os.path.join(manual_dir, places205.SPLITS_ARCHIVE) in message
  assert f'put {places205.SPLITS_ARCHIVE} in {manual_dir}' in message
  assert places205.DOWNLOAD_PAGE in message
  assert not ds.builder.is_prepared()


@pytest.mark.parametrize('csv_name, damage', [
    (places205.TRAIN_CSV, 'drop'),
    (places205.VAL_CSV, 'drop'),
    (places205.TRAIN_CSV, 'damage'),
    (places205.VAL_CSV, 'damage'),
])
def test_absent_or_damaged_images_are_named(tmp_path, csv_name, damage):
  path = csv_lists()[csv_name][7][0]
  manual_dir = write_archives(str(tmp_path / 'manual'), **{damage: path})
  ds = places205.Places205(data_dir=str(tmp_path / 'tfds'), manual_dir=manual_dir,
                           holdout=HOLDOUT)
  with pytest.raises(ValueError) as info:
    ds.prepare()
  message = str(info.value)
  archive = os.path.join(manual_dir, places205.IMAGES_ARCHIVE)
  if damage == 'drop':
    assert (f'1 of the {len(csv_lists()[csv_name])} images {csv_name} lists is absent '
            f'from {archive}: {path}.') in message
  else:
    assert (f'1 of the images {csv_name} lists is damaged in {archive}: {path} (not a '
            'complete JPEG or PNG file (truncated or corrupt)).') in message
  assert places205.DOWNLOAD_PAGE in message
  assert not ds.builder.is_prepared()


def test_image_problem_decodes_the_image():
  good = jpeg(3)
  assert places205.image_problem(good) is None
  assert 'truncated' in places205.image_problem(good[:-40])
  # Intact start and end markers around garbage: only decoding finds it.
  garbage = good[:2] + b'\x00' * 50 + good[-2:]
  assert places205.image_problem(garbage).startswith('does not decode (')
  png = tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)).numpy()
  assert places205.image_problem(png) is None


def write_split_archive(path, train_lines, val_lines):
  with tarfile.open(path, 'w:gz') as tar:
    for name, lines in ((places205.TRAIN_CSV, train_lines),
                        (places205.VAL_CSV, val_lines)):
      add_file(tar, f'trainvalsplit_places205/{name}', '\n'.join(lines).encode())
  return path


def good_lines():
  return {name: [f'{path} {label}' for path, label in entries]
          for name, entries in csv_lists().items()}


def test_split_lists_are_read_and_checked(tmp_path):
  lines = good_lines()
  archive = write_split_archive(str(tmp_path / 'ok.tar.gz'),
                                lines[places205.TRAIN_CSV], lines[places205.VAL_CSV])
  lists = places205.read_split_lists(archive)
  assert lists[places205.TRAIN_CSV][0] == ('w/place_204/gsun_000_0.jpg', 0, 1)
  assert lists[places205.VAL_CSV][-1] == ('w/place_204/val_000.jpg', 0, 205)
  assert places205.class_names(lists[places205.TRAIN_CSV]) == category_names()


@pytest.mark.parametrize('edit, expected', [
    (lambda t, v: (t + ['a/abbey/x.jpg'], v),
     r"line 411 of train_places205.csv is 'a/abbey/x.jpg', not"),
    (lambda t, v: (t + ['a/abbey/x.jpg 3'], v),
     r"gives label 3 to category 't/place_201' \(line 4\) and to 'a/abbey' \(line 411\)"),
    (lambda t, v: ([x for x in t if not x.endswith(' 9')], v),
     r'has 204 distinct labels from 0 to 204; Places205 has labels 0..204'),
    (lambda t, v: (t, v + ['b/bedroom/y.jpg 0']),
     r"line 206 of val_places205.csv gives 'b/bedroom/y.jpg' label 0, but label 0 is "
     r"'w/place_204' in train_places205.csv"),
    (lambda t, v: (t, v + ['b/bedroom/y.jpg 205']),
     r"label 205, but labels are 0..204"),
])
def test_inconsistent_split_lists_are_refused(tmp_path, edit, expected):
  lines = good_lines()
  train, val = edit(lines[places205.TRAIN_CSV], lines[places205.VAL_CSV])
  archive = write_split_archive(str(tmp_path / 'bad.tar.gz'), train, val)
  with pytest.raises(ValueError, match=expected):
    lists = places205.read_split_lists(archive)
    names = places205.class_names(lists[places205.TRAIN_CSV])
    places205.check_labels(lists[places205.VAL_CSV], names, places205.VAL_CSV)


def test_split_archive_without_the_lists_is_refused(tmp_path):
  archive = str(tmp_path / places205.SPLITS_ARCHIVE)
  with tarfile.open(archive, 'w:gz') as tar:
    add_file(tar, 'trainvalsplit_places205/readme.txt', b'hi')
  with pytest.raises(ValueError, match=r'lacks train_places205.csv, val_places205.csv '
                     r'\(it holds trainvalsplit_places205/readme.txt\)'):
    places205.read_split_lists(archive)


def test_keys_keep_csv_order_and_fill_tfds_buckets():
  count = 2_448_873  # About the size of the real train csv.
  buckets = [tfds_shuffle.get_bucket_number(places205.example_key(p, count),
                                            tfds_shuffle.BUCKETS_NUMBER)
             for p in (0, 1, count // 2, count - 2, count - 1)]
  assert buckets == sorted(buckets) and buckets[0] == 0
  assert buckets[-1] == tfds_shuffle.BUCKETS_NUMBER - 1
  assert places205.example_key(count - 1, count) < 2 ** 128
