"""RevNet50: ResNet50's layout with analytically invertible units (SPEC section 1).

Root: 7x7 conv with 64k filters (stride 2, or 1 in patch mode), no BN and no
weight decay, then the 3x3/2 max-pool -> `after_root`. Four blocks of 3, 4, 6,
3 reversible units -> `block1` .. `block4`; after blocks 1..3 an average pool
by the next block's stride and zero channel padding double the channels
(64k, 128k, 256k, 512k). Head as ResNet v2: BN, optional ReLU, global average
pool -> `pre_logits` [B, 512k].
"""
import tensorflow as tf

from models import layers
from models import resnet


class ReversibleUnit(layers.CompositeLayer):
  """x = concat([x1, x2]) -> concat([x2, x1 + F(x2)]), F a v2 bottleneck.

  F is BN-ReLU, conv1x1 (C/8), BN-ReLU, conv3x3 (C/8), BN-ReLU, conv1x1 (C/2)
  with no shortcut. Maps [B, H, W, C] to [B, H, W, C]; `inverse` undoes it.
  """

  def __init__(self, channels, weight_decay, **kwargs):
    super().__init__(**kwargs)
    if channels % 8:
      raise ValueError(f'A reversible unit needs channels divisible by 8, got {channels}.')
    self.channels = channels
    self.residual_fn = resnet.BottleneckV2(
        channels // 2, 1, projection=False, weight_decay=weight_decay, residual=False,
        name='residual_fn')

  def call(self, x, training=False):
    x1, x2 = tf.split(x, 2, axis=-1)
    y1 = x1 + self.residual_fn(x2, training=training)
    return tf.concat([x2, y1], axis=-1)

  def inverse(self, y, training=False):
    """Recovers the unit's input from its output.

    Exact only when F sees the same BN statistics as in the forward pass, i.e.
    with training=False (moving statistics).

    Args:
      y: [B, H, W, C], an output of this unit.
      training: Python bool passed to F's batch norms.

    Returns:
      x: [B, H, W, C] with call(x) == y.
    """
    y2, y1 = tf.split(y, 2, axis=-1)
    x1 = y1 - self.residual_fn(y2, training=training)
    return tf.concat([x1, y2], axis=-1)


def pool_and_double_channels(x, stride):
  """Average-pools by `stride` (SAME) and zero-pads C/2 channels on each side.

  Args:
    x: [B, H, W, C].
    stride: int; 1 skips the pooling but still doubles the channels.

  Returns:
    [B, ceil(H/stride), ceil(W/stride), 2C].
  """
  if stride > 1:
    x = tf.nn.avg_pool2d(x, ksize=stride, strides=stride, padding='SAME')
  half = x.shape[-1] // 2
  return tf.pad(x, [[0, 0], [0, 0], [0, 0], [half, half]])


class RevNetBlock(layers.CompositeLayer):
  """`num_units` reversible units at constant shape [B, H, W, channels]."""

  def __init__(self, num_units, channels, weight_decay, **kwargs):
    super().__init__(**kwargs)
    self.unit_names = tuple(f'unit{i + 1}' for i in range(num_units))
    for unit_name in self.unit_names:
      setattr(self, unit_name, ReversibleUnit(channels, weight_decay, name=unit_name))

  def call(self, x, training=False):
    for unit_name in self.unit_names:
      x = getattr(self, unit_name)(x, training=training)
    return x


class RevNet50(layers.Trunk):
  """RevNet50; see the module docstring for the layout.

  End points (same shapes as ResNet50 except after_root): after_root
  [B, H/4, W/4, 64k], block1 [B, H/4, W/4, 64k], block2 [B, H/8, W/8, 128k],
  block3 [B, H/16, W/16, 256k], block4 [B, H/32, W/32, 512k], pre_logits
  [B, 512k] (or representation_size), logits [B, num_classes].
  """

  def __init__(self, width=4, num_classes=None, last_relu=True, patch_mode=False,
               representation_size=None, weight_decay=1e-4, name='revnet50'):
    layers.check_positive_int(width, 'width', 'it is the widening factor k, e.g. 4.')
    super().__init__(num_classes, representation_size, weight_decay, name=name)
    self.width = width
    self.last_relu = last_relu
    self.patch_mode = patch_mode
    self.strides = resnet.block_strides(patch_mode)
    # The root is a random projection raising the channels to block 1's width;
    # the reference leaves it undecayed and without BN.
    self.root_conv = layers.conv2d(64 * width, 7, 'root_conv',
                                   strides=1 if patch_mode else 2, weight_decay=0.0)
    self.block_names = ('block1', 'block2', 'block3', 'block4')
    for i, block_name in enumerate(self.block_names):
      setattr(self, block_name, RevNetBlock(
          resnet.UNITS_PER_BLOCK[i], 64 * width * 2**i, weight_decay, name=block_name))
    self.final_bn = layers.batch_norm('final_bn')
    self.add_head()

  def trunk_features(self, images, training, end_points):
    x = self.root_conv(layers.fixed_padding(images, 7))
    x = layers.root_max_pool(x)
    end_points['after_root'] = x
    for i, block_name in enumerate(self.block_names):
      if i > 0:
        x = pool_and_double_channels(x, self.strides[i])
      x = getattr(self, block_name)(x, training=training)
      end_points[block_name] = x
    x = self.final_bn(x, training=training)
    if self.last_relu:
      x = tf.nn.relu(x)
    return x
