"""ResNet50 v1 and v2 (pre-activation) at any widening factor k (docs/protocol.md §1).

Root: 7x7 conv (16k filters; stride 2, or 1 in patch mode) with fixed padding,
[v1: BN-ReLU], 3x3/2 max-pool -> `after_root`. Four blocks of 3, 4, 6, 3
bottleneck units with 64k, 128k, 256k, 512k output channels and strides
1, 2, 2, 2 (patch mode 1, 2, 2, 1), the stride on the 3x3 conv -> `block1` ..
`block4`. v2 ends with BN and (if `last_relu`) ReLU; global average pool ->
`pre_logits` [B, 512k].

The 'small' stem (models/layers.STEMS) replaces the root by a 3x3/1 conv
without max-pool, for 28-32 px images: every end point is then 4x larger
per side than with the ImageNet stem (block4 of a 32 px image is 4x4).
"""
import tensorflow as tf

from models import layers
from models import recompute

UNITS_PER_BLOCK = (3, 4, 6, 3)
BLOCK_STRIDES = (1, 2, 2, 2)
PATCH_MODE_BLOCK_STRIDES = (1, 2, 2, 1)


def block_strides(patch_mode):
  """Strides of blocks 1..4; patch mode keeps 64x64 patches from vanishing."""
  return PATCH_MODE_BLOCK_STRIDES if patch_mode else BLOCK_STRIDES


class BottleneckV1(layers.CompositeLayer):
  """Post-activation bottleneck: conv1x1-BN-ReLU, conv3x3-BN-ReLU, conv1x1-BN, add, ReLU.

  The shortcut is the identity, or a strided conv1x1 + BN when `projection`.
  Maps [B, H, W, C_in] to [B, ceil(H/s), ceil(W/s), filters].
  """

  def __init__(self, filters, strides, projection, weight_decay, **kwargs):
    super().__init__(**kwargs)
    self.strides = strides
    inner = filters // 4
    self.shortcut_conv = None
    self.shortcut_bn = None
    if projection:
      self.shortcut_conv = layers.conv2d(filters, 1, 'shortcut_conv', strides=strides,
                                         weight_decay=weight_decay)
      self.shortcut_bn = layers.batch_norm('shortcut_bn')
    self.conv1 = layers.conv2d(inner, 1, 'conv1', weight_decay=weight_decay)
    self.bn1 = layers.batch_norm('bn1')
    self.conv2 = layers.conv2d(inner, 3, 'conv2', strides=strides, weight_decay=weight_decay)
    self.bn2 = layers.batch_norm('bn2')
    self.conv3 = layers.conv2d(filters, 1, 'conv3', weight_decay=weight_decay)
    self.bn3 = layers.batch_norm('bn3')

  def call(self, x, training=False):
    shortcut = x
    if self.shortcut_conv is not None:
      shortcut = self.shortcut_bn(self.shortcut_conv(x), training=training)
    y = tf.nn.relu(self.bn1(self.conv1(x), training=training))
    y = layers.fixed_padding(y, 3)
    y = tf.nn.relu(self.bn2(self.conv2(y), training=training))
    y = self.bn3(self.conv3(y), training=training)
    return tf.nn.relu(y + shortcut)


class BottleneckV2(layers.CompositeLayer):
  """Pre-activation bottleneck: BN-ReLU, conv1x1, BN-ReLU, conv3x3, BN-ReLU, conv1x1.

  With `residual`, the shortcut is added (no activation after the add): the
  identity, or when `projection` a strided conv1x1 (no BN) of the
  pre-activated input. Without `residual` it is the plain residual function,
  the `F` of a RevNet unit. Maps [B, H, W, C_in] to [B, ceil(H/s), ceil(W/s),
  filters]; the inner width is filters // 4.
  """

  def __init__(self, filters, strides, projection, weight_decay, residual=True, **kwargs):
    super().__init__(**kwargs)
    if projection and not residual:
      raise ValueError('A projection shortcut needs residual=True.')
    self.strides = strides
    self.residual = residual
    inner = filters // 4
    self.preact_bn = layers.batch_norm('preact_bn')
    self.shortcut_conv = None
    if projection:
      self.shortcut_conv = layers.conv2d(filters, 1, 'shortcut_conv', strides=strides,
                                         weight_decay=weight_decay)
    self.conv1 = layers.conv2d(inner, 1, 'conv1', weight_decay=weight_decay)
    self.bn1 = layers.batch_norm('bn1')
    self.conv2 = layers.conv2d(inner, 3, 'conv2', strides=strides, weight_decay=weight_decay)
    self.bn2 = layers.batch_norm('bn2')
    self.conv3 = layers.conv2d(filters, 1, 'conv3', weight_decay=weight_decay)

  def call(self, x, training=False):
    preact = tf.nn.relu(self.preact_bn(x, training=training))
    y = self.conv1(preact)
    y = tf.nn.relu(self.bn1(y, training=training))
    y = layers.fixed_padding(y, 3)
    y = self.conv2(y)
    y = tf.nn.relu(self.bn2(y, training=training))
    y = self.conv3(y)
    if not self.residual:
      return y
    shortcut = x if self.shortcut_conv is None else self.shortcut_conv(preact)
    return y + shortcut


class ResNetBlock(layers.CompositeLayer):
  """A stack of bottleneck units; only the first one strides or changes width.

  Maps [B, H, W, in_channels] to [B, ceil(H/s), ceil(W/s), filters]. With
  memory_saving 'recompute' the block keeps only its input for the backward
  pass (models/recompute.py).
  """

  def __init__(self, version, num_units, in_channels, filters, strides, weight_decay,
               memory_saving='none', **kwargs):
    super().__init__(**kwargs)
    self.memory_saving = memory_saving
    unit_class = BottleneckV1 if version == 'v1' else BottleneckV2
    self.unit_names = tuple(f'unit{i + 1}' for i in range(num_units))
    for i, unit_name in enumerate(self.unit_names):
      first = i == 0
      unit = unit_class(
          filters, strides if first else 1,
          projection=first and (strides > 1 or in_channels != filters),
          weight_decay=weight_decay, name=unit_name)
      setattr(self, unit_name, unit)

  def call(self, x, training=False):
    units = [getattr(self, unit_name) for unit_name in self.unit_names]

    def run(x):
      for unit in units:
        x = unit(x, training=training)
      return x

    # Inference keeps nothing for a backward pass: nothing to save there.
    if training and self.memory_saving == 'recompute':
      return recompute.recompute(run, units, x)
    return run(x)


class ResNet50(layers.Trunk):
  """ResNet50 v1 or v2; see the module docstring for the layout.

  End points: after_root [B, H/4, W/4, 16k], block1 [B, H/4, W/4, 64k],
  block2 [B, H/8, W/8, 128k], block3 [B, H/16, W/16, 256k], block4
  [B, H/32, W/32, 512k], pre_logits [B, 512k] (or representation_size),
  logits [B, num_classes]. In patch mode: after_root/block1 H/2, block2 H/4,
  block3 and block4 H/8. With the 'small' stem: after_root/block1 H,
  block2 H/2, block3 H/4, block4 H/8.

  `memory_saving`: 'none' or 'recompute' (models/recompute.py), None for the
  gin-bound `memory_saving.mode`; 'reversible' raises, ResNet units are not
  invertible.
  """

  def __init__(self, version='v2', width=4, num_classes=None, last_relu=True,
               patch_mode=False, representation_size=None, weight_decay=1e-4, name=None,
               memory_saving=None, stem='imagenet'):
    if version not in ('v1', 'v2'):
      raise ValueError(f"ResNet version must be 'v1' or 'v2', got {version!r}.")
    layers.check_positive_int(width, 'width', 'it is the widening factor k, e.g. 4.')
    if version == 'v1' and not last_relu:
      raise ValueError(
          'resnet50_v1 always ends in a ReLU (it is part of its last unit), so '
          'last_relu=False is not defined for it; the "(-)" variants of the paper are '
          'resnet50_v2 or revnet50 with last_relu=False.')
    name = name or f'resnet50_{version}'
    # Checked before any layer exists: 'reversible' is a configuration error here.
    memory_saving = recompute.trunk_mode(memory_saving, name)
    super().__init__(num_classes, representation_size, weight_decay, name=name)
    self.memory_saving = memory_saving
    self.version = version
    self.width = width
    self.last_relu = last_relu
    self.patch_mode = patch_mode
    self.stem = stem
    kernel, stride, self.root_pool = layers.root_geometry(stem, patch_mode)
    root_filters = 16 * width
    # The root conv is decayed in ResNet (unlike RevNet, whose root is a fixed
    # random projection in the reference).
    self.root_conv = layers.conv2d(root_filters, kernel, 'root_conv',
                                   strides=stride, weight_decay=weight_decay)
    self.root_bn = layers.batch_norm('root_bn') if version == 'v1' else None
    self.block_names = ('block1', 'block2', 'block3', 'block4')
    in_channels = root_filters
    for i, block_name in enumerate(self.block_names):
      filters = 64 * width * 2**i
      setattr(self, block_name, ResNetBlock(
          version, UNITS_PER_BLOCK[i], in_channels, filters, block_strides(patch_mode)[i],
          weight_decay, memory_saving=memory_saving, name=block_name))
      in_channels = filters
    self.final_bn = layers.batch_norm('final_bn') if version == 'v2' else None
    self.add_head()

  def trunk_features(self, images, training, end_points):
    x = self.root_conv(layers.fixed_padding(images, self.root_conv.kernel_size[0]))
    if self.root_bn is not None:
      x = tf.nn.relu(self.root_bn(x, training=training))
    if self.root_pool:
      x = layers.root_max_pool(x)
    end_points['after_root'] = x
    for block_name in self.block_names:
      x = getattr(self, block_name)(x, training=training)
      end_points[block_name] = x
    if self.final_bn is not None:
      x = self.final_bn(x, training=training)
      if self.last_relu:
        x = tf.nn.relu(x)
    return x
