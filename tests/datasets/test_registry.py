"""Tests for the dataset registry: names, lookup, registration, split names."""
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from datasets import fashion_mnist
from datasets import image_folder
from datasets import imagenet
from datasets import places
from datasets import places205
from datasets import registry


def test_names_and_splits():
  assert registry.DATASET_NAMES == ('fashion_mnist', 'imagenet2012', 'places205',
                                    'places365', 'image_folder')
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
  ds = registry.get_dataset('places205', data_dir=data_dir, manual_dir='/p')
  assert isinstance(ds, places205.Places205) and (ds.manual_dir, ds.holdout) == ('/p',
                                                                                 50000)
  assert ds.builder.name == 'places205_archives'
  for name in ('cls', 'other'):  # an image folder classifies at least two classes
    folder = tmp_path / 'images' / name
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
      f'Unknown dataset {name!r}; use one of fashion_mnist, imagenet2012, places205, places365, '
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


@pytest.fixture
def scratch_registry(monkeypatch):
  """Lets a test register datasets; the registry is as before after it."""
  registry.dataset_names()  # Imports (and so registers) the built-in datasets.
  monkeypatch.setattr(registry, '_DATASETS', dict(registry._DATASETS))


class _Recorder:
  """Keeps what it was built with."""

  def __init__(self, *args, **kwargs):
    self.args, self.kwargs = args, kwargs


def test_a_dataset_defined_here_registers_and_is_built(scratch_registry):
  @registry.register('toy')
  class Toy(_Recorder):
    pass

  @registry.register('toy_folder:', usage='toy_folder:<path>')
  class ToyFolder(_Recorder):
    pass

  ds = registry.get_dataset('toy', data_dir='/d', size=3)
  assert isinstance(ds, Toy)
  assert (ds.args, ds.kwargs) == ((), {'data_dir': '/d', 'manual_dir': None, 'size': 3})
  # A prefix name receives the rest (which may hold ':' itself) first.
  ds = registry.get_dataset('toy_folder:gs://b/x', manual_dir='/m')
  assert isinstance(ds, ToyFolder)
  assert (ds.args, ds.kwargs) == (('gs://b/x',), {'data_dir': None, 'manual_dir': '/m'})
  assert registry.dataset_names() == ('fashion_mnist', 'imagenet2012', 'places205',
                                      'places365', 'toy', 'image_folder:', 'toy_folder:')
  assert registry.DATASET_NAMES[-2:] == ('image_folder', 'toy_folder')
  assert registry.register('toy')(Toy) is Toy  # The same class again is no clash.
  with pytest.raises(ValueError, match="Dataset 'toy' is registered twice"):
    registry.register('toy')(ToyFolder)


@pytest.mark.parametrize('name', ['', ':', 'a:b', 'a::'])
def test_malformed_names_are_refused(name):
  with pytest.raises(ValueError, match='must be non-empty with ":" only at its end'):
    registry.register(name)


@pytest.mark.parametrize('name', ['nope', 'toy_folder', 'toy_folder:', 'toy:x'])
def test_unknown_name_lists_every_registered_one(scratch_registry, name):
  registry.register('toy')(_Recorder)
  registry.register('toy_folder:')(_Recorder)
  with pytest.raises(ValueError) as info:
    registry.get_dataset(name)
  assert str(info.value) == (
      f'Unknown dataset {name!r}; use one of fashion_mnist, imagenet2012, places205, places365, '
      'toy, image_folder:<root> (a folder with one sub-folder of images per class), '
      'toy_folder:<arg>.')


def test_built_in_datasets_are_found_without_importing_them():
  code = ('from datasets import registry; import sys; '
          'before = [m for m in sys.modules if m.startswith("datasets.")]; '
          'print(sorted(before)); print(registry.dataset_names())')
  out = subprocess.run([sys.executable, '-c', code], check=True, capture_output=True,
                       text=True, cwd=os.path.dirname(os.path.dirname(
                           os.path.dirname(os.path.abspath(__file__))))).stdout
  assert out.splitlines() == [
      "['datasets.registry', 'datasets.tfds_dataset']",
      "('fashion_mnist', 'imagenet2012', 'places205', 'places365', 'image_folder:')"]
