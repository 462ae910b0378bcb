"""Distribution, synchronized BN, checkpoints, gin and seeding of the trunks."""
import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

import strategies

import models


def _images(batch, size, seed=0):
  return np.random.RandomState(seed).randn(batch, size, size, 3).astype(np.float32)


def _strategy():
  return strategies.two_replicas()


# Tracing a replicated ResNet50/RevNet50 step costs about a minute on 2 CPU
# cores, so the step runs VGG19-BN (fewest layers), which uses the same conv, BN
# (synchronized) and head layers as the residual trunks. Eager MirroredStrategy
# is not an option: its collectives race between replica threads.
def test_sgd_step_under_two_replica_mirrored_strategy():
  name = 'vgg19_bn'
  strategy = _strategy()
  keras.utils.set_random_seed(0)
  with strategy.scope():
    model = models.get_model(name, width=1, num_classes=4)
    model.build((None, 32, 32, 3))
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
  dataset = tf.data.Dataset.from_tensor_slices(
      (_images(4, 32), np.array([0, 1, 2, 3], np.int32))).batch(4)
  batch = next(iter(strategy.experimental_distribute_dataset(dataset)))

  def step(images, labels):
    def replica_step(images, labels):
      with tf.GradientTape() as tape:
        logits, _ = model(images, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True))
        loss = (loss + tf.add_n(model.losses)) / strategy.num_replicas_in_sync
      grads = tape.gradient(loss, model.trainable_variables)
      optimizer.apply_gradients(zip(grads, model.trainable_variables))
      return loss, tf.shape(images)[0]
    losses, local_batch = strategy.run(replica_step, args=(images, labels))
    return strategy.reduce('SUM', losses, axis=None), local_batch

  step = tf.function(step)
  before = [v.numpy().copy() for v in model.trainable_variables]
  loss, local_batch = step(*batch)
  assert np.isfinite(float(loss))
  assert [int(b) for b in strategy.experimental_local_results(local_batch)] == [2, 2]
  assert all(not np.array_equal(b, v.numpy())
             for b, v in zip(before, model.trainable_variables))
  bn = next(l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization))
  assert not np.allclose(bn.moving_mean.numpy(), 0.0)


def test_batch_norm_statistics_are_synchronized_across_replicas():
  strategy = _strategy()
  with strategy.scope():
    model = models.get_model('vgg19_bn', width=1)
    model.build((None, 32, 32, 3))
  images = _images(4, 32, seed=1)
  # Each replica sees 2 images whose statistics differ from the global ones.
  images[2:] = images[2:] * 3.0 + 2.0
  bn_input = model.conv1_1.conv(images).numpy().reshape(-1, 8)  # input of the first BN
  dataset = tf.data.Dataset.from_tensor_slices(images).batch(4)
  batch = next(iter(strategy.experimental_distribute_dataset(dataset)))

  @tf.function
  def forward(images):
    strategy.run(lambda x: model(x, training=True), args=(images,))

  forward(batch)
  bn = model.conv1_1.bn
  np.testing.assert_allclose(bn.moving_mean.numpy(), 0.01 * bn_input.mean(0), rtol=1e-4,
                             atol=1e-6)
  np.testing.assert_allclose(bn.moving_variance.numpy(), 0.99 + 0.01 * bn_input.var(0),
                             rtol=1e-5)
  half = len(bn_input) // 2
  per_replica_var = (bn_input[:half].var(0) + bn_input[half:].var(0)) / 2
  assert not np.allclose(per_replica_var, bn_input.var(0), rtol=1e-2)


# resnet50_v2 shares ResNet50 (and every layer type) with resnet50_v1.
@pytest.mark.parametrize('name', ['resnet50_v1', 'revnet50', 'vgg19_bn'])
def test_checkpoint_restores_into_a_fresh_model(name, tmp_path):
  keras.utils.set_random_seed(1)
  model = models.get_model(name, width=1, num_classes=3)
  model.build((None, 32, 32, 3))
  rng = np.random.RandomState(0)
  for v in model.variables:  # also moves BN statistics away from their init
    v.assign(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))
  path = tf.train.Checkpoint(model=model).save(str(tmp_path / 'ckpt'))

  keras.utils.set_random_seed(2)
  fresh = models.get_model(name, width=1, num_classes=3)
  fresh.build((None, 32, 32, 3))
  tf.train.Checkpoint(model=fresh).restore(path).assert_consumed()
  images = _images(2, 32)
  logits, end_points = model(images)
  fresh_logits, fresh_points = fresh(images)
  np.testing.assert_array_equal(logits, fresh_logits)
  for key in end_points:
    np.testing.assert_array_equal(end_points[key], fresh_points[key])
  saved = dict(tf.train.list_variables(path))
  assert len([k for k in saved if k.startswith('model/')]) == len(model.variables)


def test_variable_names_are_stable_and_hierarchical():
  model = models.get_model('resnet50_v1', width=1, num_classes=2)
  paths = [v.path for v in model.variables]
  assert paths[:3] == ['resnet50_v1/root_conv/kernel', 'resnet50_v1/root_bn/gamma',
                       'resnet50_v1/root_bn/beta']
  assert 'resnet50_v1/block2/unit1/shortcut_conv/kernel' in paths
  assert paths[-2:] == ['resnet50_v1/head/logits/kernel', 'resnet50_v1/head/logits/bias']
  assert len(set(paths)) == len(paths)
  assert [v.path for v in models.get_model('resnet50_v1', width=1, num_classes=2).variables
         ] == paths


def test_initialisation_is_seedable():
  def initial_weights(seed):
    keras.utils.set_random_seed(seed)
    model = models.get_model('vgg19_bn', width=1, num_classes=2)
    model.build((None, 32, 32, 3))
    return model.get_weights()

  first, second, third = initial_weights(3), initial_weights(3), initial_weights(4)
  assert all(np.array_equal(a, b) for a, b in zip(first, second))
  assert not np.array_equal(first[0], third[0])


def test_conv_kernels_are_glorot_uniform_by_default_he_as_an_option():
  keras.utils.set_random_seed(0)
  model = models.get_model('resnet50_v2', width=1)
  kernel = model.block3.unit2.conv2.kernel.numpy()  # 3x3x64x64: fan_in = fan_out = 576
  assert kernel.shape == (3, 3, 64, 64)
  limit = np.sqrt(6.0 / (576 + 576))
  assert np.abs(kernel).max() <= limit
  np.testing.assert_allclose(kernel.std(), limit / np.sqrt(3.0), rtol=0.05)
  try:
    gin.parse_config("conv_initializer.kind = 'he'")
    keras.utils.set_random_seed(0)
    he = models.get_model('resnet50_v2', width=1).block3.unit2.conv2.kernel.numpy()
  finally:
    gin.clear_config()
  np.testing.assert_allclose(he.std(), np.sqrt(2.0 / 576), rtol=0.05)
  with pytest.raises(ValueError, match="glorot_uniform, he"):
    models.layers.conv_initializer('xavier')


def test_gin_configures_get_model():
  try:
    gin.parse_config('get_model.width = 2\nget_model.num_classes = 5')
    model = models.get_model('resnet50_v2')
  finally:
    gin.clear_config()
  logits, end_points = model(_images(1, 32))
  assert model.width == 2
  assert tuple(end_points['pre_logits'].shape) == (1, 1024)
  assert tuple(logits.shape) == (1, 5)
