"""RevNet50 specifics: reversible unit order and inverse, channel doubling, root."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from models import revnet


def _random(shape, seed=0):
  return tf.constant(np.random.RandomState(seed).randn(*shape).astype(np.float32))


def _train_batch_norms(unit, x):
  """A few training-mode passes move the BN moving statistics away from (0, 1)."""
  for bn in unit._flatten_layers(include_self=False):
    if isinstance(bn, keras.layers.BatchNormalization):
      bn.momentum = 0.0  # adopt this batch's statistics in one step
  unit(x * 3.0 + 1.0, training=True)
  for bn in unit._flatten_layers(include_self=False):
    if isinstance(bn, keras.layers.BatchNormalization):
      bn.momentum = 0.99


def test_reversible_unit_split_and_concat_order():
  unit = revnet.ReversibleUnit(16, weight_decay=0.0)
  x = _random([2, 5, 5, 16])
  y = unit(x)
  x1, x2 = x[..., :8], x[..., 8:]
  np.testing.assert_array_equal(y[..., :8], x2)  # y2 = x2 comes first
  np.testing.assert_allclose(y[..., 8:], x1 + unit.residual_fn(x2), atol=1e-6)


def test_residual_function_widths():
  unit = revnet.ReversibleUnit(64, weight_decay=0.0)
  unit(_random([1, 3, 3, 64]))
  f = unit.residual_fn
  assert (f.conv1.filters, f.conv2.filters, f.conv3.filters) == (8, 8, 32)
  assert f.conv2.kernel_size == (3, 3) and f.shortcut_conv is None
  assert tuple(f.preact_bn.gamma.shape) == (32,)


def test_reversible_unit_inverse_reconstructs_input():
  unit = revnet.ReversibleUnit(32, weight_decay=0.0)
  x = _random([2, 7, 7, 32])
  unit(x)
  _train_batch_norms(unit, x)
  y = unit(x, training=False)
  assert not np.allclose(y, tf.concat([x[..., 16:], x[..., :16]], -1), atol=1e-2)
  np.testing.assert_allclose(unit.inverse(y, training=False), x, atol=1e-5)


@pytest.mark.parametrize('patch_mode', [False, True])
def test_every_unit_of_a_model_inverts(patch_mode):
  # Seeded: float32 round-off of an inversion through three units depends on
  # the weights (1e-6 to 1.5e-5 over seeds 0-5), and unseeded weights made the
  # outcome depend on which tests had drawn random numbers before.
  keras.utils.set_random_seed(0)
  model = models.get_model('revnet50', width=1, patch_mode=patch_mode)
  images = _random([1, 32, 32, 3], seed=2)
  _, end_points = model(images)
  # block4's input: pooled, padded block3 output.
  stride = 1 if patch_mode else 2
  x = revnet.pool_and_double_channels(end_points['block3'], stride)
  for unit_name in model.block4.unit_names:
    unit = getattr(model.block4, unit_name)
    y = unit(x)
    np.testing.assert_allclose(unit.inverse(y), x, atol=1e-5)
    x = y
  np.testing.assert_allclose(x, end_points['block4'], atol=1e-6)
  # A whole block inverts unit by unit, last unit first.
  y = end_points['block1']
  for unit_name in reversed(model.block1.unit_names):
    y = getattr(model.block1, unit_name).inverse(y)
  np.testing.assert_allclose(y, end_points['after_root'], atol=1e-5)


@pytest.mark.parametrize('stride', [1, 2])
def test_pool_and_double_channels(stride):
  x = _random([2, 6, 6, 4])
  y = revnet.pool_and_double_channels(x, stride).numpy()
  pooled = tf.nn.avg_pool2d(x, stride, stride, 'SAME').numpy() if stride > 1 else x.numpy()
  assert y.shape == (2, 6 // stride, 6 // stride, 8)
  np.testing.assert_array_equal(y[..., :2], 0.0)
  np.testing.assert_allclose(y[..., 2:6], pooled, atol=1e-6)
  np.testing.assert_array_equal(y[..., 6:], 0.0)


def test_block_inputs_are_pooled_zero_padded_outputs():
  model = models.get_model('revnet50', width=1, patch_mode=True)
  images = _random([1, 32, 32, 3], seed=3)
  _, end_points = model(images)
  strides = (2, 2, 1)  # patch mode
  for prev, block_name, stride in zip(('block1', 'block2', 'block3'),
                                      ('block2', 'block3', 'block4'), strides):
    x = revnet.pool_and_double_channels(end_points[prev], stride)
    np.testing.assert_allclose(getattr(model, block_name)(x), end_points[block_name],
                               atol=1e-5)
  assert end_points['block3'].shape[1:3] == end_points['block4'].shape[1:3]
  assert end_points['block4'].shape[-1] == 2 * end_points['block3'].shape[-1]


def test_root_has_no_bn_and_is_not_decayed():
  model = models.get_model('revnet50', width=2)
  assert model.root_conv.filters == 128 and model.root_conv.kernel_size == (7, 7)
  assert model.root_conv.kernel_regularizer is None
  images = _random([1, 16, 16, 3])
  _, end_points = model(images)
  root = model.root_conv(tf.pad(images, [[0, 0], [3, 3], [3, 3], [0, 0]]))
  pooled = tf.nn.max_pool2d(tf.pad(root, [[0, 0], [1, 1], [1, 1], [0, 0]]), 3, 2, 'VALID')
  np.testing.assert_allclose(end_points['after_root'], pooled, atol=1e-6)
