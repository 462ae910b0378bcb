"""Tests for ImageNet through tfds's real `imagenet2012` builder on tiny archives."""
import io
import os
import tarfile

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from datasets import imagenet
from datasets import registry

# The first three synsets of tfds's label list, so their labels are 0, 1, 2.
SYNSETS = ('n01440764', 'n01443537', 'n01484850')
IMAGES_PER_SYNSET = 4
NUM_VAL_IMAGES = 5
# tfds's validation_labels.txt starts with these synsets for the first five
# ILSVRC2012_val_*.JPEG files; their label ids in tfds's sorted label list:
FIRST_VALIDATION_LABELS = {65, 970, 230, 809, 516}


def jpeg(value):
  return tf.io.encode_jpeg(tf.fill([8, 8, 3], tf.constant(value, tf.uint8))).numpy()


def add_file(tar, name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def write_archives(manual_dir):
  """ILSVRC-2012-shaped archives; returns {jpeg bytes: synset index} for training."""
  os.makedirs(manual_dir, exist_ok=True)
  train = {}
  value = 0
  with tarfile.open(os.path.join(manual_dir, imagenet.TRAIN_ARCHIVE), 'w') as outer:
    for label, synset in enumerate(SYNSETS):
      inner_bytes = io.BytesIO()
      with tarfile.open(fileobj=inner_bytes, mode='w') as inner:
        for i in range(IMAGES_PER_SYNSET):
          data = jpeg(value)
          value += 10
          train[data] = label
          add_file(inner, f'{synset}_{i}.JPEG', data)
      add_file(outer, f'{synset}.tar', inner_bytes.getvalue())
  with tarfile.open(os.path.join(manual_dir, imagenet.VAL_ARCHIVE), 'w') as val:
    for i in range(1, NUM_VAL_IMAGES + 1):
      add_file(val, f'ILSVRC2012_val_{i:08d}.JPEG', jpeg(value))
      value += 10
  return train


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  root = tmp_path_factory.mktemp('imagenet')
  manual_dir = str(root / 'manual')
  train = write_archives(manual_dir)
  ds = registry.get_dataset('imagenet2012', data_dir=str(root / 'tfds'),
                            manual_dir=manual_dir, holdout=3)
  ds.prepare()
  return ds, train


def examples(ds, split):
  return [(ex['image'].numpy(), int(ex['label']), int(ex['index']))
          for ex in ds.as_dataset(split)]


def test_study_splits_partition_the_training_set(prepared):
  ds, train_images = prepared
  assert [ds.num_examples(s) for s in registry.SPLITS] == [9, 3, 12, 5]
  assert (ds.name, ds.num_classes, ds.image_shape) == ('imagenet2012', 1000,
                                                       (None, None, 3))
  by_split = {s: examples(ds, s) for s in ('train', 'val', 'trainval')}
  for split, exs in by_split.items():
    assert [index for _, _, index in exs] == list(range(ds.num_examples(split)))
  train = {image for image, _, _ in by_split['train']}
  val = {image for image, _, _ in by_split['val']}
  trainval = [image for image, _, _ in by_split['trainval']]
  assert len(train) == 9 and len(val) == 3 and not train & val
  assert train | val == set(trainval) == set(train_images)
  # val is the tail of the tfds train order, train its head.
  assert [image for image, _, _ in by_split['train']] == trainval[:9]
  assert [image for image, _, _ in by_split['val']] == trainval[9:]
  for image, label, _ in by_split['trainval']:
    assert label == train_images[image]


def test_examples_are_encoded_jpegs_with_int64_labels(prepared):
  ds, _ = prepared
  ex = next(iter(ds.as_dataset('test')))
  assert ex['image'].dtype == tf.string and ex['image'].shape == ()
  assert ex['label'].dtype == tf.int64 and ex['index'].dtype == tf.int64
  assert tf.io.decode_jpeg(ex['image']).shape == (8, 8, 3)
  assert {label for _, label, _ in examples(ds, 'test')} == FIRST_VALIDATION_LABELS


def test_reading_is_deterministic_and_shards_by_index(prepared):
  ds, _ = prepared
  assert examples(ds, 'train') == examples(ds, 'train')
  context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1)
  shard = [(int(ex['index']), ex['image'].numpy())
           for ex in ds.as_dataset('train', input_context=context)]
  full = examples(ds, 'train')
  assert shard == [(index, image) for image, _, index in full if index % 2 == 1]


def test_prepare_twice_reuses_the_files(prepared, capsys):
  ds, _ = prepared
  ds.prepare()
  assert capsys.readouterr().out.startswith('imagenet2012: prepared tfds data found in')


def test_default_holdout_needs_more_than_50000_training_images(prepared):
  ds, _ = prepared
  default = imagenet.Imagenet2012(data_dir=os.fspath(ds.builder.data_dir_root),
                                  manual_dir=ds.manual_dir)
  assert default.holdout == 50000
  assert default.num_examples('test') == 5
  with pytest.raises(ValueError, match='has 12 examples, not more than the val '
                                       'hold-out of 50000; pass a smaller holdout'):
    default.as_dataset('val')


def test_missing_archive_names_where_to_put_it(tmp_path):
  manual_dir = str(tmp_path / 'manual')
  os.makedirs(manual_dir)
  open(os.path.join(manual_dir, imagenet.TRAIN_ARCHIVE), 'wb').close()
  ds = registry.get_dataset('imagenet2012', data_dir=str(tmp_path / 'tfds'),
                            manual_dir=manual_dir)
  with pytest.raises(FileNotFoundError) as info:
    ds.prepare()
  message = str(info.value)
  assert f'{manual_dir} lacks {imagenet.VAL_ARCHIVE}. ' in message
  assert 'manual_dir' in message and imagenet.TRAIN_ARCHIVE in message
  assert not os.path.exists(tmp_path / 'tfds' / 'imagenet2012')


def test_default_manual_dir_is_tfds_default(tmp_path):
  ds = imagenet.Imagenet2012(data_dir=str(tmp_path))
  assert ds.manual_dir == os.path.join(str(tmp_path), 'downloads', 'manual')


def test_full_size_split_arithmetic_under_mock_data(tmp_path):
  # mock_data reports no split sizes, so give the builder ImageNet's real ones.
  with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
    ds = registry.get_dataset('imagenet2012', data_dir=str(tmp_path))
    ds.builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name='train', shard_lengths=[1281167], num_bytes=0),
        tfds.core.SplitInfo(name='validation', shard_lengths=[50000], num_bytes=0),
    ]))
    assert [ds.num_examples(s) for s in registry.SPLITS] == [1231167, 50000, 1281167,
                                                            50000]
    exs = list(ds.as_dataset('val'))
  assert [int(ex['index']) for ex in exs] == [0, 1, 2, 3]
  for ex in exs:
    assert ex['image'].dtype == tf.string
    assert tf.io.decode_image(ex['image']).shape[-1] == 3
    assert 0 <= int(ex['label']) < 1000


def test_shuffled_files_keep_each_example_its_index(tmp_path):
  # Three files, so that shuffling them changes the order: 'index' must still
  # be the place in the split (low-data subsets select by it).
  manual_dir = str(tmp_path / 'manual')
  write_archives(manual_dir)
  ds = registry.get_dataset('imagenet2012', data_dir=str(tmp_path / 'tfds'),
                            manual_dir=manual_dir, holdout=3)
  ds.builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir, try_download_gcs=False, num_shards=3))
  assert len(ds.builder.info.splits['train'].file_instructions) == 3
  for split in ('train', 'val', 'trainval'):
    ordered = {index: (image, label) for image, label, index in examples(ds, split)}
    assert sorted(ordered) == list(range(ds.num_examples(split)))
    orders = []
    for seed in (0, 1, 2, 3):
      shuffled = [(ex['image'].numpy(), int(ex['label']), int(ex['index']))
                  for ex in ds.as_dataset(split, shuffle_files=True, seed=seed)]
      assert {index: (image, label) for image, label, index in shuffled} == ordered
      orders.append([index for _, _, index in shuffled])
      again = [int(ex['index']) for ex in ds.as_dataset(split, shuffle_files=True,
                                                        seed=seed)]
      assert again == orders[-1]
    if split != 'val':
      assert any(order != sorted(order) for order in orders)
