"""The 'small' stem for 28-32 px inputs: 3x3/1 root conv, no max-pool."""
import pytest
import tensorflow as tf

import models
from models import flops

# A 32 px image: the ImageNet stem leaves block4 at 1x1, the small stem at 4x4.
SMALL_STEM_SHAPES_32PX = dict(
    after_root=(2, 32, 32, 16), block1=(2, 32, 32, 64), block2=(2, 16, 16, 128),
    block3=(2, 8, 8, 256), block4=(2, 4, 4, 512), pre_logits=(2, 512))


def _shapes(model, size):
  _, end_points = model(tf.zeros([2, size, size, 3]), training=False)
  return {n: tuple(t.shape) for n, t in end_points.items()}


@pytest.mark.parametrize('name', ['resnet50_v1', 'resnet50_v2'])
def test_resnet_end_points_at_32px(name):
  shapes = _shapes(models.get_model(name, width=1, stem='small'), 32)
  assert shapes == SMALL_STEM_SHAPES_32PX
  assert _shapes(models.get_model(name, width=1), 32)['block4'] == (2, 1, 1, 512)


def test_revnet_end_points_at_28px():
  shapes = _shapes(models.get_model('revnet50', width=1, stem='small'), 28)
  assert shapes == dict(after_root=(2, 28, 28, 64), block1=(2, 28, 28, 64),
                        block2=(2, 14, 14, 128), block3=(2, 7, 7, 256),
                        block4=(2, 4, 4, 512), pre_logits=(2, 512))


def test_small_stem_root_is_a_3x3_conv_and_other_variables_are_unchanged():
  small = models.get_model('resnet50_v2', width=1, stem='small')
  paper = models.get_model('resnet50_v2', width=1)
  assert tuple(small.root_conv.kernel.shape) == (3, 3, 3, 16)
  assert tuple(paper.root_conv.kernel.shape) == (7, 7, 3, 16)
  assert ([v.path for v in small.variables] == [v.path for v in paper.variables])
  # Only the root kernel's size differs: 49 -> 9 taps of 3 x 16.
  count = lambda m: sum(int(tf.size(v)) for v in m.trainable_variables)  # noqa: E731
  assert count(paper) - count(small) == (49 - 9) * 3 * 16


@pytest.mark.parametrize('name', ['resnet50_v1', 'resnet50_v2', 'revnet50'])
def test_flops_counter_follows_the_stem(name):
  model = models.get_model(name, width=1, num_classes=10, stem='small')
  params = sum(int(tf.size(v)) for v in model.trainable_variables)
  assert flops.count_params(name, 1, num_classes=10, stem='small') == params

  @tf.function
  def forward(images):
    return model(images, training=False)[0]

  graph = forward.get_concrete_function(tf.TensorSpec([1, 32, 32, 3])).graph
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options['account_type_regexes'] = ['Conv2D', 'MatMul']
  options['output'] = 'none'
  profiled = tf.compat.v1.profiler.profile(graph=graph, options=options)
  assert profiled.total_float_ops == flops.count_flops(
      name, 1, image_size=32, num_classes=10, stem='small')


def test_identity_names_a_non_default_stem_only():
  assert models.get_model('resnet50_v2', width=1, stem='small').identity() == dict(
      architecture='resnet50_v2', width=1, last_relu=True, patch_mode=False,
      representation_size=None, stem='small')
  assert 'stem' not in models.get_model('revnet50', width=1).identity()


def test_bad_stems_are_refused_with_the_fix():
  with pytest.raises(ValueError, match=r"Unknown stem 'cifar'; valid stems: "
                     r"imagenet, small \(get_model.stem\)"):
    models.get_model('resnet50_v2', width=1, stem='cifar')
  with pytest.raises(ValueError, match="bind get_model.stem = 'imagenet' for vgg19_bn"):
    models.get_model('vgg19_bn', width=1, stem='small')
