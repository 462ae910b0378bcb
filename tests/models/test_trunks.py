"""End points, shapes and exact parameter counts of every trunk at k = 1 and 4.

The expected counts are computed here from the layer list of docs/protocol.md §1,
independently of models/ (which is only used to build the Keras models), so a
disagreement means the builders do not follow the spec.
"""
import numpy as np
import pytest
import tensorflow as tf

import models
from models import flops

WIDTHS = (1, 4)
RESNET_NAMES = ('resnet50_v1', 'resnet50_v2', 'revnet50')
RESNET_END_POINTS = ('after_root', 'block1', 'block2', 'block3', 'block4', 'pre_logits')
VGG_END_POINTS = ('block1', 'block2', 'block3', 'block4', 'fc6', 'pre_logits')

_MODELS = {}


def _model(name, width, patch_mode=False):
  """Models are cached: building k=4 trunks dominates this file's run time."""
  key = (name, width, patch_mode)
  if key not in _MODELS:
    _MODELS[key] = models.get_model(name, width=width, patch_mode=patch_mode)
  return _MODELS[key]


def _end_points(model, size):
  _, end_points = model(tf.zeros([1, size, size, 3]), training=False)
  return end_points


def _trainable_count(model):
  return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


# ---- Parameter counts written from docs/protocol.md §1 --------------------------------


def _bn(c):
  return 2 * c  # gamma and beta


def _spec_resnet_params(version, k):
  """Root 7x7 (16k, v1: +BN); units: 1x1 (C/4), 3x3 (C/4), 1x1 (C); v2 final BN."""
  total = 7 * 7 * 3 * 16 * k
  if version == 'v1':
    total += _bn(16 * k)
  c_in = 16 * k
  for b, units in enumerate((3, 4, 6, 3)):
    c = 64 * k * 2**b
    m = c // 4
    for u in range(units):
      cin = c_in if u == 0 else c
      if version == 'v1':
        total += cin * m + _bn(m) + 9 * m * m + _bn(m) + m * c + _bn(c)
        if u == 0:  # every block's first unit changes width or strides
          total += cin * c + _bn(c)
      else:
        total += _bn(cin) + cin * m + _bn(m) + 9 * m * m + _bn(m) + m * c
        if u == 0:
          total += cin * c
    c_in = c
  if version == 'v2':
    total += _bn(512 * k)
  return total


def _spec_revnet_params(k):
  """Root 7x7 (64k, no BN); F on C/2 channels: BN, 1x1 C/8, BN, 3x3 C/8, BN, 1x1 C/2."""
  total = 7 * 7 * 3 * 64 * k
  for b, units in enumerate((3, 4, 6, 3)):
    c = 64 * k * 2**b
    h, q = c // 2, c // 8
    total += units * (_bn(h) + h * q + _bn(q) + 9 * q * q + _bn(q) + q * h)
  return total + _bn(512 * k)


def _spec_vgg_params(k, fc6_extent):
  """3x3 convs + BN in stages (2, 2, 4, 4, 4) x (w, 2w, 4w, 8w, 8w); fc6, fc7 + BN."""
  w = 8 * k
  total, c_in = 0, 3
  for n, c in ((2, w), (2, 2 * w), (4, 4 * w), (4, 8 * w), (4, 8 * w)):
    for _ in range(n):
      total += 9 * c_in * c + _bn(c)
      c_in = c
  total += fc6_extent**2 * c_in * 512 * k + _bn(512 * k)
  return total + 512 * k * 512 * k + _bn(512 * k)


def _spec_params(name, k, fc6_extent=7):
  if name == 'revnet50':
    return _spec_revnet_params(k)
  if name == 'vgg19_bn':
    return _spec_vgg_params(k, fc6_extent)
  return _spec_resnet_params(name[-2:], k)


# ---- Tests -------------------------------------------------------------------------


@pytest.mark.parametrize('width', WIDTHS)
@pytest.mark.parametrize('name', RESNET_NAMES)
def test_resnet_family_end_points_at_224(name, width):
  k = width
  end_points = _end_points(_model(name, width), 224)
  root_channels = 64 * k if name == 'revnet50' else 16 * k
  expected = {
      'after_root': (1, 56, 56, root_channels),
      'block1': (1, 56, 56, 64 * k),
      'block2': (1, 28, 28, 128 * k),
      'block3': (1, 14, 14, 256 * k),
      'block4': (1, 7, 7, 512 * k),
      'pre_logits': (1, 512 * k),
  }
  assert tuple(end_points) == RESNET_END_POINTS
  assert {n: tuple(t.shape) for n, t in end_points.items()} == expected


@pytest.mark.parametrize('width', WIDTHS)
@pytest.mark.parametrize('name', RESNET_NAMES)
def test_resnet_family_end_points_in_patch_mode(name, width):
  k = width
  end_points = _end_points(_model(name, width, patch_mode=True), 64)
  root_channels = 64 * k if name == 'revnet50' else 16 * k
  # Root stride 1, max-pool 2, block strides (1,) 2, 2, 1.
  expected = {
      'after_root': (1, 32, 32, root_channels),
      'block1': (1, 32, 32, 64 * k),
      'block2': (1, 16, 16, 128 * k),
      'block3': (1, 8, 8, 256 * k),
      'block4': (1, 8, 8, 512 * k),
      'pre_logits': (1, 512 * k),
  }
  assert tuple(end_points) == RESNET_END_POINTS
  assert {n: tuple(t.shape) for n, t in end_points.items()} == expected


@pytest.mark.parametrize('width', WIDTHS)
def test_vgg_end_points_at_224(width):
  k, w = width, 8 * width
  end_points = _end_points(_model('vgg19_bn', width), 224)
  expected = {
      'block1': (1, 112, 112, 2 * w),
      'block2': (1, 56, 56, 4 * w),
      'block3': (1, 28, 28, 8 * w),
      'block4': (1, 14, 14, 8 * w),
      'fc6': (1, 1, 1, 512 * k),
      'pre_logits': (1, 512 * k),
  }
  assert tuple(end_points) == VGG_END_POINTS
  assert {n: tuple(t.shape) for n, t in end_points.items()} == expected


@pytest.mark.parametrize('width', WIDTHS)
def test_vgg_on_a_patch_has_fc6_covering_2x2(width):
  k, w = width, 8 * width
  # patch_mode is a documented no-op for VGG: the plain net applies to 64x64.
  model = models.get_model('vgg19_bn', width=width, patch_mode=True)
  end_points = _end_points(model, 64)
  expected = {
      'block1': (1, 32, 32, 2 * w),
      'block2': (1, 16, 16, 4 * w),
      'block3': (1, 8, 8, 8 * w),
      'block4': (1, 4, 4, 8 * w),
      'fc6': (1, 1, 1, 512 * k),
      'pre_logits': (1, 512 * k),
  }
  assert tuple(end_points) == VGG_END_POINTS
  assert {n: tuple(t.shape) for n, t in end_points.items()} == expected
  assert tuple(model.fc6.conv.kernel.shape) == (2, 2, 8 * w, 512 * k)
  assert _trainable_count(model) == _spec_vgg_params(k, fc6_extent=2)


@pytest.mark.parametrize('width', WIDTHS)
@pytest.mark.parametrize('name', models.MODEL_NAMES)
def test_trainable_parameter_count_matches_spec(name, width):
  model = _model(name, width)
  if name == 'vgg19_bn':
    model.build((None, 224, 224, 3))
  expected = _spec_params(name, width)
  assert _trainable_count(model) == expected
  # The analytic counter used for the README table agrees as well.
  assert flops.count_params(name, width) == expected


def test_known_reference_sizes():
  # ResNet50 v1 (stride on the 3x3) at k=4 with 1000 classes is the standard
  # ResNet-50: 25,557,032 parameters, 4.09 G multiply-adds at 224.
  assert _spec_resnet_params('v1', 4) + 2048 * 1000 + 1000 == 25557032
  assert flops.count_params('resnet50_v1', 4, num_classes=1000) == 25557032
  assert flops.count_flops('resnet50_v1', 4, num_classes=1000) == 2 * 4089184256


@pytest.mark.parametrize('name', models.MODEL_NAMES)
def test_head_layers_add_exact_parameters(name):
  model = models.get_model(name, width=1, num_classes=10, representation_size=32)
  end_points = _end_points(model, 224)
  assert tuple(end_points)[-2:] == ('pre_logits', 'logits')
  assert tuple(end_points['pre_logits'].shape) == (1, 32)
  assert tuple(end_points['logits'].shape) == (1, 10)
  expected = _spec_params(name, 1) + (512 * 32 + 32) + (32 * 10 + 10)
  assert _trainable_count(model) == expected
  assert flops.count_params(name, 1, num_classes=10, representation_size=32) == expected


@pytest.mark.parametrize("name,last_relu,patch_mode", [
    ("resnet50_v1", True, False), ("resnet50_v2", False, True),
    ("revnet50", False, False), ("vgg19_bn", True, False)])
def test_identity_is_read_from_the_built_trunk(name, last_relu, patch_mode):
  model = models.get_model(name, width=1, last_relu=last_relu,
                           patch_mode=patch_mode, representation_size=16)
  assert model.identity() == dict(
      architecture=name, width=1, last_relu=last_relu, patch_mode=patch_mode,
      representation_size=16)
