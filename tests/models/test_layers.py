"""Unit-level structure of docs/protocol.md §1: padding, unit order, BN, weight decay, errors."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from models import layers
from models import resnet
from models import vgg


def _random(shape, seed=0):
  return tf.constant(np.random.RandomState(seed).randn(*shape).astype(np.float32))


def _layers_of(model, layer_class):
  return [l for l in model._flatten_layers(include_self=False) if isinstance(l, layer_class)]


# ---- Fixed padding -----------------------------------------------------------------


@pytest.mark.parametrize('kernel_size,before,after', [(7, 3, 3), (3, 1, 1), (2, 0, 1), (1, 0, 0)])
def test_fixed_padding_splits_kernel_minus_one_floor_ceil(kernel_size, before, after):
  x = tf.ones([1, 5, 6, 2])
  padded = layers.fixed_padding(x, kernel_size).numpy()
  assert padded.shape == (1, 5 + before + after, 6 + before + after, 2)
  np.testing.assert_array_equal(padded[:, before:before + 5, before:before + 6], 1.0)
  assert padded.sum() == x.numpy().sum()  # the border is zeros


def test_root_conv_uses_fixed_padding_not_same():
  model = models.get_model('resnet50_v2', width=1)
  images = _random([1, 8, 8, 3])
  _, end_points = model(images)
  root = model.root_conv(tf.pad(images, [[0, 0], [3, 3], [3, 3], [0, 0]]))
  pooled = tf.nn.max_pool2d(tf.pad(root, [[0, 0], [1, 1], [1, 1], [0, 0]]), 3, 2, 'VALID')
  np.testing.assert_allclose(end_points['after_root'], pooled, atol=1e-6)
  # SAME padding would pad (2, 3) for a stride-2 7x7 on an even input, so it
  # would give different values.
  same = tf.nn.conv2d(images, model.root_conv.kernel, 2, 'SAME')
  assert not np.allclose(same, root, atol=1e-3)
  assert model.root_conv.padding == 'valid' and model.root_conv.strides == (2, 2)


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_stride_sits_on_the_3x3_convolution(version):
  model = models.get_model(f'resnet50_{version}', width=1)
  for block_name, stride in zip(('block1', 'block2', 'block3', 'block4'), (1, 2, 2, 2)):
    unit = getattr(model, block_name).unit1
    assert unit.conv1.kernel_size == (1, 1) and unit.conv1.strides == (1, 1)
    assert unit.conv2.kernel_size == (3, 3) and unit.conv2.strides == (stride, stride)
    assert unit.conv2.padding == 'valid'
    assert unit.conv3.strides == (1, 1)
    assert unit.shortcut_conv.strides == (stride, stride)
    assert getattr(model, block_name).unit2.shortcut_conv is None


def test_patch_mode_strides():
  model = models.get_model('resnet50_v1', width=1, patch_mode=True)
  assert model.root_conv.strides == (1, 1)
  strides = [getattr(model, b).unit1.conv2.strides[0] for b in model.block_names]
  assert strides == [1, 2, 2, 1]


# ---- Unit order ------------------------------------------------------------------


def _moving_stats_randomised(layer):
  """Gives every BN non-trivial moving statistics so the order of ops matters."""
  rng = np.random.RandomState(1)
  for bn in _layers_of(layer, keras.layers.BatchNormalization):
    c = bn.moving_mean.shape[0]
    bn.moving_mean.assign(rng.randn(c).astype(np.float32))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype(np.float32))
    bn.gamma.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))
    bn.beta.assign(rng.randn(c).astype(np.float32))


def test_v1_unit_order():
  unit = resnet.BottleneckV1(16, 2, projection=True, weight_decay=0.0)
  x = _random([2, 6, 6, 8])
  unit(x)
  _moving_stats_randomised(unit)
  relu = tf.nn.relu
  shortcut = unit.shortcut_bn(unit.shortcut_conv(x))
  y = relu(unit.bn1(unit.conv1(x)))
  y = relu(unit.bn2(unit.conv2(layers.fixed_padding(y, 3))))
  y = unit.bn3(unit.conv3(y))
  np.testing.assert_allclose(unit(x), relu(y + shortcut), atol=1e-5)
  assert unit(x).shape == (2, 3, 3, 16)


def test_v2_unit_order_projection_of_preactivated_input_without_bn():
  unit = resnet.BottleneckV2(16, 2, projection=True, weight_decay=0.0)
  x = _random([2, 6, 6, 8])
  unit(x)
  _moving_stats_randomised(unit)
  relu = tf.nn.relu
  preact = relu(unit.preact_bn(x))
  y = relu(unit.bn1(unit.conv1(preact)))
  y = relu(unit.bn2(unit.conv2(layers.fixed_padding(y, 3))))
  y = unit.conv3(y)
  np.testing.assert_allclose(unit(x), y + unit.shortcut_conv(preact), atol=1e-5)
  # v2 has no activation after the add: outputs can be negative.
  assert float(tf.reduce_min(unit(x))) < 0
  assert len(_layers_of(unit, keras.layers.BatchNormalization)) == 3


def test_v2_identity_shortcut_adds_the_raw_input():
  unit = resnet.BottleneckV2(8, 1, projection=False, weight_decay=0.0)
  x = _random([1, 4, 4, 8])
  unit(x)
  _moving_stats_randomised(unit)
  residual = unit.conv3(tf.nn.relu(unit.bn2(unit.conv2(layers.fixed_padding(
      tf.nn.relu(unit.bn1(unit.conv1(tf.nn.relu(unit.preact_bn(x))))), 3)))))
  np.testing.assert_allclose(unit(x), x + residual, atol=1e-5)


def test_v1_root_has_bn_relu_and_v2_head_has_final_bn():
  v1 = models.get_model('resnet50_v1', width=1)
  v2 = models.get_model('resnet50_v2', width=1)
  assert v1.root_bn is not None and v1.final_bn is None
  assert v2.root_bn is None and v2.final_bn is not None
  _, end_points = v1(_random([1, 32, 32, 3]))
  assert float(tf.reduce_min(end_points['after_root'])) >= 0  # ReLU before the pool
  assert float(tf.reduce_min(end_points['block4'])) >= 0  # v1 units end in ReLU


# ---- BN and weight decay -----------------------------------------------------------


@pytest.mark.parametrize('name', models.MODEL_NAMES)
def test_batch_norm_configuration(name):
  model = models.get_model(name, width=1)
  model.build((None, 32, 32, 3))
  bns = _layers_of(model, keras.layers.BatchNormalization)
  assert bns
  for bn in bns:
    assert (bn.momentum, bn.epsilon, bn.synchronized, bn.axis) == (0.99, 1e-3, True, -1)


@pytest.mark.parametrize('name', models.MODEL_NAMES)
def test_weight_decay_is_half_l2_on_conv_and_head_kernels_only(name):
  wd = 3e-4
  model = models.get_model(name, width=1, num_classes=5, representation_size=7,
                           weight_decay=wd)
  model.build((None, 32, 32, 3))
  convs = _layers_of(model, keras.layers.Conv2D)
  denses = _layers_of(model, keras.layers.Dense)
  decayed = [c.kernel for c in convs if not (name == 'revnet50' and c is model.root_conv)]
  decayed += [d.kernel for d in denses]
  expected = sum(wd * float(tf.reduce_sum(tf.square(k))) / 2 for k in decayed)
  assert len(model.losses) == len(decayed)
  np.testing.assert_allclose(float(tf.add_n(model.losses)), expected, rtol=1e-5)
  assert all(not c.use_bias for c in convs)
  assert all(d.use_bias for d in denses)
  if name == 'revnet50':
    assert model.root_conv.kernel_regularizer is None


def test_weight_decay_zero_adds_no_losses():
  model = models.get_model('resnet50_v2', width=1, num_classes=3, weight_decay=0.0)
  assert model.losses == []


# ---- VGG specifics ----------------------------------------------------------------


def test_vgg_layout():
  model = models.get_model('vgg19_bn', width=1, num_classes=3)
  model.build((None, 224, 224, 3))
  convs = [getattr(model, n) for stage in model.conv_names for n in stage]
  assert [len(stage) for stage in model.conv_names] == [2, 2, 4, 4, 4]
  assert [c.conv.filters for c in convs] == [8] * 2 + [16] * 2 + [32] * 4 + [64] * 8
  assert all(c.conv.kernel_size == (3, 3) and c.conv.padding == 'same' for c in convs)
  assert model.fc6.conv.kernel_size == (7, 7) and model.fc6.conv.padding == 'valid'
  assert model.fc7.conv.kernel_size == (1, 1) and model.fc7.conv.filters == 512
  assert not _layers_of(model, keras.layers.Dropout)
  # pre_logits is fc7's output (after BN-ReLU), squeezed to 2-D.
  images = _random([2, 224, 224, 3])
  _, end_points = model(images)
  fc7 = model.fc7(end_points['fc6'])
  np.testing.assert_allclose(end_points['pre_logits'], fc7[:, 0, 0, :], atol=1e-6)


def test_vgg_larger_input_than_built_pools_spatial_fc7():
  model = models.get_model('vgg19_bn', width=1)
  model.build((None, 64, 64, 3))  # fc6 covers 2x2
  _, end_points = model(_random([1, 96, 96, 3]))  # 3x3 after the pools
  assert tuple(end_points['fc6'].shape) == (1, 2, 2, 512)
  fc7 = model.fc7(end_points['fc6'])
  np.testing.assert_allclose(end_points['pre_logits'], tf.reduce_mean(fc7, [1, 2]), atol=1e-6)


def test_vgg_needs_static_spatial_size_of_at_least_32():
  with pytest.raises(ValueError, match='static'):
    models.get_model('vgg19_bn', width=1).build((None, None, None, 3))
  with pytest.raises(ValueError, match='at least 32x32'):
    models.get_model('vgg19_bn', width=1).build((None, 16, 16, 3))


# ---- Head ----------------------------------------------------------------------------


@pytest.mark.parametrize('name', models.MODEL_NAMES)
def test_no_logits_returns_none_and_no_logits_end_point(name):
  model = models.get_model(name, width=1)
  logits, end_points = model(_random([1, 32, 32, 3]))
  assert logits is None
  assert 'logits' not in end_points
  assert list(end_points)[-1] == 'pre_logits'


def test_representation_bottleneck_is_linear_between_pool_and_pre_logits():
  model = models.get_model('revnet50', width=1, num_classes=4, representation_size=6)
  images = _random([2, 32, 32, 3])
  logits, end_points = model(images)
  pooled = tf.reduce_mean(tf.nn.relu(model.final_bn(end_points['block4'])), [1, 2])
  rep = model.head.representation
  np.testing.assert_allclose(end_points['pre_logits'], pooled @ rep.kernel + rep.bias,
                             atol=1e-5)
  assert rep.activation is keras.activations.linear
  head = model.head.logits
  np.testing.assert_allclose(logits, end_points['pre_logits'] @ head.kernel + head.bias,
                             atol=1e-5)
  assert logits is end_points['logits']


# ---- Errors ----------------------------------------------------------------------------


def test_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match='resnet50_v1, resnet50_v2, revnet50, vgg19_bn'):
    models.get_model('resnet101')


@pytest.mark.parametrize('width', [0, -1, 2.0, True, '4'])
def test_width_must_be_positive_int(width):
  with pytest.raises(ValueError, match='width must be a positive integer'):
    models.get_model('resnet50_v2', width=width)


def test_v1_without_last_relu_is_an_error():
  with pytest.raises(ValueError, match='resnet50_v2 or revnet50 with last_relu=False'):
    models.get_model('resnet50_v1', width=1, last_relu=False)


def test_vgg_without_last_relu_is_an_error():
  with pytest.raises(ValueError, match='last_relu=False is only'):
    models.get_model('vgg19_bn', width=1, last_relu=False)


@pytest.mark.parametrize('kwargs,match', [
    (dict(num_classes=0), 'num_classes'),
    (dict(representation_size=-3), 'representation_size'),
    (dict(weight_decay=-1e-4), 'weight_decay'),
])
def test_invalid_head_and_decay_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    models.get_model('resnet50_v2', width=1, **kwargs)


def test_model_names():
  assert models.MODEL_NAMES == ('resnet50_v1', 'resnet50_v2', 'revnet50', 'vgg19_bn')
  assert vgg.CONVS_PER_STAGE == (2, 2, 4, 4, 4)


@pytest.mark.parametrize('shape', [(4, 5, 5, 6), (7, 6)])
def test_fused_batch_norm_equals_keras_batch_normalization(shape):
  """Outputs, moving statistics (biased variance) and gradients as Keras's."""
  x = tf.random.stateless_normal(shape, seed=[1, 2]) * 3.0 + 1.0
  ours = layers.batch_norm('ours')
  keras_bn = keras.layers.BatchNormalization(
      momentum=layers.BN_MOMENTUM, epsilon=layers.BN_EPSILON, name='keras')
  gamma = tf.range(shape[-1], dtype=tf.float32) * 0.1 + 0.5
  for bn in (ours, keras_bn):
    bn.build(x.shape)
    bn.gamma.assign(gamma)
  # Not sum(y**2): normalised outputs make that nearly constant in x.
  weights = tf.random.stateless_normal(shape, seed=[5, 6])
  for training in (True, False, True):
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(x)
      a, b = ours(x, training=training), keras_bn(x, training=training)
      loss_a = tf.reduce_sum(a * weights)
      loss_b = tf.reduce_sum(b * weights)
    np.testing.assert_allclose(a, b, atol=2e-6)
    np.testing.assert_allclose(ours.moving_mean, keras_bn.moving_mean, atol=1e-7)
    np.testing.assert_allclose(ours.moving_variance, keras_bn.moving_variance,
                               rtol=1e-6)
    grads_a = tape.gradient(loss_a, [x, ours.gamma, ours.beta])
    grads_b = tape.gradient(loss_b, [x, keras_bn.gamma, keras_bn.beta])
    for ga, gb in zip(grads_a, grads_b):
      np.testing.assert_allclose(ga, gb, rtol=1e-5, atol=1e-5 * float(
          tf.reduce_max(tf.abs(gb))))


def test_fused_batch_norm_reads_bfloat16_and_keeps_float32_statistics():
  x = tf.random.stateless_normal([8, 3, 3, 4], seed=[3, 4]) * 2.0 + 5.0
  bn = layers.BatchNorm(momentum=0.5, epsilon=1e-3, dtype='mixed_bfloat16')
  y = bn(tf.cast(x, tf.bfloat16), training=True)
  assert y.dtype == tf.bfloat16
  assert bn.moving_mean.dtype == 'float32'
  mean, variance = tf.nn.moments(tf.cast(tf.cast(x, tf.bfloat16), tf.float32),
                                 [0, 1, 2])
  np.testing.assert_allclose(bn.moving_mean, 0.5 * mean, rtol=1e-5)
  np.testing.assert_allclose(bn.moving_variance, 0.5 + 0.5 * variance, rtol=1e-5)
  np.testing.assert_allclose(
      tf.cast(y, tf.float32), (x - mean) / tf.sqrt(variance + 1e-3), atol=0.05)
