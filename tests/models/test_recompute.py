"""Memory saving (models/recompute.py): same step as the plain trunk, BN updated once.

Each case runs one training-mode forward and backward pass of a width-1
trunk on 4 images of 32x32 with memory saving and without, from the same
weights, and compares the loss, every gradient and the BN moving statistics
after the step, eagerly and inside a tf.function.
"""
import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

import models
from models import recompute
from models import resnet
from models import revnet
from models import vgg

# Gradients of 'reversible' come from inputs rebuilt from outputs, exact to
# float32 round-off (about 1e-7 of the activations) on RevNet's
# unnormalised main stream; training-mode batch norm scales that error by
# the largest gradients of the step (up to thousands at init with 4 images),
# so the absolute tolerance is 1e-5 of the step's largest gradient (seen:
# 1e-6 to 3e-6; percents when the rebuilt zeros of a block input met a ReLU,
# see RevNetBlock.reversible_call). 'recompute' reruns the same ops on the
# same input and is held to 1e-5 of each variable's own largest gradient.
TOLERANCE = 1e-5

_CLASSES = {'resnet50_v1': lambda **kw: resnet.ResNet50(version='v1', **kw),
            'resnet50_v2': lambda **kw: resnet.ResNet50(version='v2', **kw),
            'revnet50': revnet.RevNet50, 'vgg19_bn': vgg.VGG19BN}


def _batch():
  rng = np.random.RandomState(0)
  images = tf.constant(rng.randn(4, 32, 32, 3).astype(np.float32))
  return images, tf.constant([0, 1, 2, 0])


def _model(name, mode, weights=None):
  """A width-1 trunk with 3 classes in `mode`, built for 32x32, with `weights`."""
  keras.utils.set_random_seed(0)
  model = _CLASSES[name](width=1, num_classes=3, memory_saving=mode)
  model.build((None, 32, 32, 3))
  if weights is not None:
    model.set_weights(weights)
  return model


def _step(model, images, labels):
  """Loss and gradients of one training-mode step (updates BN moving statistics)."""
  with tf.GradientTape() as tape:
    logits, _ = model(images, training=True)
    loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
        labels, logits, from_logits=True)) + tf.add_n(model.losses)
  return loss, tape.gradient(loss, model.trainable_variables)


def _run(model, compiled):
  step = tf.function(_step) if compiled else _step
  loss, grads = step(model, *_batch())
  assert all(g is not None for g in grads), 'a variable got no gradient'
  return (loss.numpy(), [g.numpy() for g in grads],
          [v.numpy() for v in model.non_trainable_variables])


_REFERENCES = {}


def _reference(name, compiled):
  """The plain model's initial weights and step; cached, 'none' is shared by modes."""
  key = (name, compiled)
  if key not in _REFERENCES:
    model = _model(name, 'none')
    weights = model.get_weights()
    _REFERENCES[key] = (weights,) + _run(model, compiled)
  return _REFERENCES[key]


@pytest.mark.parametrize('compiled', [False, True], ids=['eager', 'tf_function'])
@pytest.mark.parametrize('name,mode', [
    ('revnet50', 'reversible'), ('revnet50', 'recompute'),
    ('resnet50_v2', 'recompute'), ('vgg19_bn', 'recompute')])
def test_step_equals_the_plain_trunks(name, mode, compiled):
  weights, ref_loss, ref_grads, ref_stats = _reference(name, compiled)
  model = _model(name, mode, weights)
  assert model.memory_saving == mode
  loss, grads, stats = _run(model, compiled)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
  largest = max(np.abs(g).max() for g in ref_grads)
  for variable, g, ref in zip(model.trainable_variables, grads, ref_grads):
    scale = largest if mode == 'reversible' else np.abs(ref).max()
    np.testing.assert_allclose(g, ref, rtol=TOLERANCE, atol=TOLERANCE * scale,
                               err_msg=variable.path)
  # Moved once by the step (as the plain model's), not twice by the
  # recomputation, and the recomputation's frozen momentum is restored.
  for variable, s, ref in zip(model.non_trainable_variables, stats, ref_stats):
    np.testing.assert_allclose(s, ref, rtol=0, atol=1e-6, err_msg=variable.path)
  moved = [np.abs(s).max() for variable, s in zip(model.non_trainable_variables, stats)
           if variable.path.endswith('moving_mean')]
  assert moved and max(moved) > 1e-3  # Starts at 0: the step did update it.
  assert {bn.momentum for bn in recompute.batch_norms([model])} == {0.99}


def test_recompute_under_a_bfloat16_policy_keeps_the_dtypes():
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy('mixed_bfloat16')
  try:
    ref = _model('vgg19_bn', 'none')
    weights = ref.get_weights()
    _, ref_grads, _ = _run(ref, compiled=False)
    model = _model('vgg19_bn', 'recompute', weights)
    assert model.conv2_1.conv.compute_dtype == 'bfloat16'
    _, grads, _ = _run(model, compiled=False)
  finally:
    keras.config.set_dtype_policy(previous)
  for variable, g, ref in zip(model.trainable_variables, grads, ref_grads):
    assert g.dtype == np.float32  # float32 variables, float32 gradients
    np.testing.assert_allclose(g, ref, rtol=TOLERANCE, atol=TOLERANCE * np.abs(ref).max(),
                               err_msg=variable.path)


@pytest.mark.parametrize('name', ['resnet50_v1', 'resnet50_v2', 'vgg19_bn'])
def test_reversible_needs_reversible_units(name):
  with pytest.raises(ValueError, match="only revnet50.*use memory_saving.mode = 'recompute'"):
    _CLASSES[name](width=1, memory_saving='reversible')


def test_unknown_mode_lists_the_modes():
  with pytest.raises(ValueError, match="Unknown memory_saving.mode 'checkpoint'; use one "
                                       "of none, recompute, reversible"):
    revnet.RevNet50(width=1, memory_saving='checkpoint')


@pytest.fixture
def no_gin_bindings():
  # Not conftest's clean_gin: these bindings need no task names registered.
  gin.clear_config()
  yield
  gin.clear_config()


def test_gin_binding_reaches_every_block(no_gin_bindings):
  # vgg19_bn is returned unbuilt: the cheapest trunk to construct.
  assert models.get_model('vgg19_bn', width=1).memory_saving == 'none'
  gin.bind_parameter('memory_saving.mode', 'reversible')
  model = models.get_model('revnet50', width=1)
  assert [getattr(model, b).memory_saving for b in model.block_names] == ['reversible'] * 4
  with pytest.raises(ValueError, match='only revnet50'):
    models.get_model('resnet50_v2', width=1)
  gin.bind_parameter('memory_saving.mode', 'recompute')
  assert models.get_model('vgg19_bn', width=1).memory_saving == 'recompute'
  gin.bind_parameter('memory_saving.mode', 'all')
  with pytest.raises(ValueError, match='none, recompute, reversible'):
    models.get_model('vgg19_bn', width=1)
