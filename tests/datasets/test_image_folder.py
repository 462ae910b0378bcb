"""Tests for datasets made from a folder of class folders."""
import os

import pytest
import tensorflow as tf

from datasets import image_folder
from datasets import registry


def write_image(path, value, fmt):
  """An 6x5 RGB image whose pixels all equal `value`."""
  image = tf.fill([6, 5, 3], tf.constant(value, tf.uint8))
  data = tf.io.encode_png(image) if fmt == 'png' else tf.io.encode_jpeg(image, quality=100)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(data.numpy())
  return path


def make_classes(folder, counts, start=0):
  """Writes counts[class] images per class; returns {path: pixel value}."""
  values = {}
  value = start
  for name, count in counts.items():
    for i in range(count):
      fmt = 'png' if i % 2 else 'jpg'
      ext = {'png': '.png', 'jpg': '.JPG' if i == 2 else '.jpg'}[fmt]
      values[write_image(os.path.join(folder, name, f'img{i:02d}{ext}'), value, fmt)] = value
      value += 1
  return values


@pytest.fixture
def flat(tmp_path):
  root = str(tmp_path / 'flat')
  values = make_classes(root, {'dog': 10, 'cat': 12, 'zebra': 3})
  with open(os.path.join(root, 'cat', 'README.txt'), 'w') as f:
    f.write('not an image')
  return root, values


def read(ds, split, **kwargs):
  return [(ex['path'].numpy().decode(), int(ex['label']), int(ex['index']))
          for ex in ds.as_dataset(split, **kwargs)]


def test_class_folders_hold_out_every_tenth_file(flat):
  root, values = flat
  ds = registry.get_dataset(f'image_folder:{root}')
  assert ds.name == f'image_folder:{root}'
  assert ds.class_names == ('cat', 'dog', 'zebra') and ds.num_classes == 3
  assert ds.image_shape == (None, None, 3)
  assert ds.splits == ('train', 'val', 'trainval')
  assert [ds.num_examples(s) for s in ('train', 'val', 'trainval')] == [23, 2, 25]
  val = read(ds, 'val')
  assert val == [(os.path.join(root, 'cat', 'img09.png'), 0, 0),
                 (os.path.join(root, 'dog', 'img09.png'), 1, 1)]
  train = read(ds, 'train')
  assert [index for _, _, index in train] == list(range(23))
  assert [label for _, label, _ in train] == [0] * 11 + [1] * 9 + [2] * 3
  trainval_paths = {path for path, _, _ in read(ds, 'trainval')}
  assert trainval_paths == set(values)
  assert {path for path, _, _ in train} | {path for path, _, _ in val} == trainval_paths
  assert not {path for path, _, _ in train} & {path for path, _, _ in val}
  with pytest.raises(ValueError, match='has no test split; put the images in'):
    ds.num_examples('test')


def test_images_are_encoded_bytes_that_decode_to_the_file(flat):
  root, values = flat
  ds = image_folder.ImageFolder(root)
  for ex in ds.as_dataset('trainval'):
    assert ex['image'].dtype == tf.string and ex['image'].shape == ()
    pixels = tf.io.decode_image(ex['image'], channels=3, expand_animations=False)
    assert pixels.shape == (6, 5, 3)
    expected = values[ex['path'].numpy().decode()]
    assert abs(int(tf.reduce_mean(tf.cast(pixels, tf.int32))) - expected) <= 1


def test_shuffled_files_keep_their_index(flat):
  root, _ = flat
  ds = image_folder.ImageFolder(root)
  ordered = read(ds, 'train')
  shuffled = read(ds, 'train', shuffle_files=True, seed=1)
  assert shuffled != ordered
  assert sorted(shuffled, key=lambda e: e[2]) == ordered
  assert read(ds, 'train', shuffle_files=True, seed=1) == shuffled
  context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0)
  shard = read(ds, 'train', shuffle_files=True, seed=1, input_context=context)
  assert shard == shuffled[0::2]


def test_split_folders(tmp_path):
  root = str(tmp_path)
  make_classes(os.path.join(root, 'train'), {'a': 11, 'b': 2})
  make_classes(os.path.join(root, 'test'), {'b': 3}, start=100)
  ds = image_folder.ImageFolder(root)
  assert ds.class_names == ('a', 'b')
  assert [ds.num_examples(s) for s in registry.SPLITS] == [12, 1, 13, 3]
  assert read(ds, 'val') == [(os.path.join(root, 'train', 'a', 'img09.png'), 0, 0)]
  assert [label for _, label, _ in read(ds, 'test')] == [1, 1, 1]

  make_classes(os.path.join(root, 'val'), {'a': 2}, start=200)
  ds = image_folder.ImageFolder(root)
  assert [ds.num_examples(s) for s in registry.SPLITS] == [13, 2, 15, 3]
  assert [path for path, _, _ in read(ds, 'val')] == [
      os.path.join(root, 'val', 'a', 'img00.jpg'),
      os.path.join(root, 'val', 'a', 'img01.png')]
  # Ordered by class, then train folder before val folder.
  assert read(ds, 'trainval')[10:] == [
      (os.path.join(root, 'train', 'a', 'img10.jpg'), 0, 10),
      (os.path.join(root, 'val', 'a', 'img00.jpg'), 0, 11),
      (os.path.join(root, 'val', 'a', 'img01.png'), 0, 12),
      (os.path.join(root, 'train', 'b', 'img00.jpg'), 1, 13),
      (os.path.join(root, 'train', 'b', 'img01.png'), 1, 14)]


def test_bad_layouts_say_how_to_fix_them(tmp_path):
  with pytest.raises(FileNotFoundError, match='is not a folder. Arrange images as'):
    image_folder.ImageFolder(str(tmp_path / 'missing'))
  os.makedirs(tmp_path / 'empty')
  with pytest.raises(ValueError, match='has no class folders. Arrange images as'):
    image_folder.ImageFolder(str(tmp_path / 'empty'))
  os.makedirs(tmp_path / 'no_images' / 'cls')
  with pytest.raises(ValueError, match='no .jpg/.jpeg/.png files under'):
    image_folder.ImageFolder(str(tmp_path / 'no_images'))
  root = str(tmp_path / 'split')
  make_classes(os.path.join(root, 'train'), {'a': 1})
  make_classes(os.path.join(root, 'test'), {'c': 1})
  with pytest.raises(ValueError, match='test/c is not among the training classes'):
    image_folder.ImageFolder(root)
  with pytest.raises(ValueError, match='holdout_every must be an int >= 2'):
    image_folder.ImageFolder(root, holdout_every=1)


def break_two_files(root):
  """Truncates dog/img04.jpg (train) and makes zebra/img01.png plain text."""
  bad = os.path.join(root, 'dog', 'img04.jpg')
  with open(bad, 'rb') as f:
    data = f.read()
  with open(bad, 'wb') as f:
    f.write(data[:len(data) // 2])
  not_image = os.path.join(root, 'zebra', 'img01.png')
  with open(not_image, 'wb') as f:
    f.write(b'plain text')
  return bad, not_image


def test_truncated_jpeg_is_named_by_the_pipeline_and_the_check(flat, capsys):
  root, _ = flat
  bad, not_image = break_two_files(root)
  ds = image_folder.ImageFolder(root)
  with pytest.raises(tf.errors.InvalidArgumentError) as info:
    list(ds.as_dataset('train'))
  message = str(info.value)
  assert 'not a complete JPEG or PNG image' in message
  assert bad in message
  assert f'python -m datasets.image_folder --check {root}' in message

  problems = image_folder.check_images(root)
  assert [path for path, _ in problems] == [bad, not_image]
  assert all(reason.startswith('does not decode: ') for _, reason in problems)
  assert image_folder.main(['--check', root]) == 1
  out = capsys.readouterr().out.splitlines()
  assert out[0].startswith(f'{bad}: does not decode: ')
  assert out[-1] == f'2 bad image(s) under {root}'


def test_bad_images_skip_leaves_them_out_and_says_so(flat, capsys):
  root, values = flat
  bad, not_image = break_two_files(root)
  clean = image_folder.ImageFolder(root)
  ds = image_folder.ImageFolder(root, bad_images='skip')
  ds.prepare()
  out = capsys.readouterr().out
  assert (f"skipping 2 of 25 files under {root} that are not complete JPEG or PNG "
          f"images (image_folder.bad_images='skip'): {bad}, {not_image}") in out
  assert f'{ds.name}: 3 classes; train 21, val 2, trainval 23 images' in out
  for split in ('train', 'val', 'trainval'):
    expected = [path for path in clean.files(split)[0] if path not in (bad, not_image)]
    got = read(ds, split)
    assert [path for path, _, _ in got] == expected
    assert [index for _, _, index in got] == list(range(len(expected)))
    assert ds.num_examples(split) == len(expected)
  # Every image left decodes to its own pixels.
  for ex in ds.as_dataset('trainval'):
    path = ex['path'].numpy().decode()
    assert int(tf.io.decode_image(ex['image'])[0, 0, 0]) == pytest.approx(values[path], abs=2)

  import gin
  with gin.unlock_config():
    gin.bind_parameter('image_folder.bad_images', 'skip')
  try:
    assert image_folder.ImageFolder(root).num_examples('train') == 21
  finally:
    gin.clear_config()
  with pytest.raises(ValueError, match="bad_images must be one of 'fail', 'skip'"):
    image_folder.ImageFolder(root, bad_images='ignore')


def test_check_passes_a_clean_folder(flat, capsys):
  root, _ = flat
  assert image_folder.check_images(root) == []
  assert image_folder.main(['--check', root]) == 0
  assert capsys.readouterr().out == f'0 bad image(s) under {root}\n'


def test_prepare_prints_the_split_sizes(flat, capsys):
  root, _ = flat
  image_folder.ImageFolder(root).prepare()
  assert capsys.readouterr().out == (
      f'image_folder:{root}: 3 classes; train 23, val 2, trainval 25 images\n')
