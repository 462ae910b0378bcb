"""Analytic parameter and FLOP counts of the trunks, without building them.

Walks the same layer list as the Keras builders (docs/protocol.md §1) with static
shapes. Conventions:
  * parameters: trainable ones only, i.e. conv/dense kernels, dense biases
    and BN gamma/beta (BN moving statistics are not counted);
  * FLOPs: forward pass per image, 2 x multiply-adds of convolutions and
    dense layers only (BN, ReLU, pooling, residual adds and biases are not
    counted).
"""
import collections
import math

from models import layers
from models import registry
from models import resnet
from models import vgg

LayerCost = collections.namedtuple('LayerCost', ['name', 'params', 'flops'])


class _Counter:
  """Accumulates LayerCost entries while tracking the feature-map shape."""

  def __init__(self, height, width, channels):
    self.height = height
    self.width = width
    self.channels = channels
    self.costs = []

  def conv(self, name, filters, kernel, stride=1, padding='fixed'):
    """A bias-free conv; 'fixed'/'same' give ceil(H/s), 'valid' (H-k)//s+1."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    if padding == 'valid':
      self.height = (self.height - kh) // stride + 1
      self.width = (self.width - kw) // stride + 1
    else:
      self.height = math.ceil(self.height / stride)
      self.width = math.ceil(self.width / stride)
    params = kh * kw * self.channels * filters
    flops = 2 * params * self.height * self.width
    self.costs.append(LayerCost(name, params, flops))
    self.channels = filters

  def batch_norm(self, name):
    self.costs.append(LayerCost(name, 2 * self.channels, 0))

  def dense(self, name, units):
    params = self.channels * units + units
    self.costs.append(LayerCost(name, params, 2 * self.channels * units))
    self.channels = units

  def pool(self, stride, floor=False):
    round_fn = math.floor if floor else math.ceil
    self.height = round_fn(self.height / stride)
    self.width = round_fn(self.width / stride)


def _resnet_costs(counter, version, width, patch_mode, stem):
  kernel, stride, pool = layers.root_geometry(stem, patch_mode)
  counter.conv('root_conv', 16 * width, kernel, stride=stride)
  if version == 'v1':
    counter.batch_norm('root_bn')
  if pool:
    counter.pool(2)
  strides = resnet.block_strides(patch_mode)
  for b, num_units in enumerate(resnet.UNITS_PER_BLOCK):
    filters = 64 * width * 2**b
    for u in range(num_units):
      prefix = f'block{b + 1}/unit{u + 1}/'
      stride = strides[b] if u == 0 else 1
      in_channels, in_h, in_w = counter.channels, counter.height, counter.width
      projection = u == 0 and (stride > 1 or in_channels != filters)
      if version == 'v2':
        counter.batch_norm(prefix + 'preact_bn')
      if projection:
        counter.conv(prefix + 'shortcut_conv', filters, 1, stride=stride, padding='valid')
        if version == 'v1':
          counter.batch_norm(prefix + 'shortcut_bn')
        counter.channels, counter.height, counter.width = in_channels, in_h, in_w
      counter.conv(prefix + 'conv1', filters // 4, 1)
      counter.batch_norm(prefix + 'bn1')
      counter.conv(prefix + 'conv2', filters // 4, 3, stride=stride)
      counter.batch_norm(prefix + 'bn2')
      counter.conv(prefix + 'conv3', filters, 1)
      if version == 'v1':
        counter.batch_norm(prefix + 'bn3')
  if version == 'v2':
    counter.batch_norm('final_bn')


def _revnet_costs(counter, width, patch_mode, stem):
  kernel, stride, pool = layers.root_geometry(stem, patch_mode)
  counter.conv('root_conv', 64 * width, kernel, stride=stride)
  if pool:
    counter.pool(2)
  strides = resnet.block_strides(patch_mode)
  for b, num_units in enumerate(resnet.UNITS_PER_BLOCK):
    if b > 0:
      counter.pool(strides[b])
      counter.channels *= 2
    channels = counter.channels
    for u in range(num_units):
      prefix = f'block{b + 1}/unit{u + 1}/residual_fn/'
      counter.channels = channels // 2
      counter.batch_norm(prefix + 'preact_bn')
      counter.conv(prefix + 'conv1', channels // 8, 1)
      counter.batch_norm(prefix + 'bn1')
      counter.conv(prefix + 'conv2', channels // 8, 3)
      counter.batch_norm(prefix + 'bn2')
      counter.conv(prefix + 'conv3', channels // 2, 1)
    counter.channels = channels
  counter.batch_norm('final_bn')


def _vgg_costs(counter, width):
  w = 8 * width
  for stage, (num_convs, mult) in enumerate(
      zip(vgg.CONVS_PER_STAGE, vgg.STAGE_WIDTH_MULTIPLIERS)):
    for i in range(num_convs):
      counter.conv(f'conv{stage + 1}_{i + 1}/conv', w * mult, 3)
      counter.batch_norm(f'conv{stage + 1}_{i + 1}/bn')
    counter.pool(2, floor=True)
  counter.conv('fc6/conv', 512 * width, (counter.height, counter.width), padding='valid')
  counter.batch_norm('fc6/bn')
  counter.conv('fc7/conv', 512 * width, 1)
  counter.batch_norm('fc7/bn')


def layer_costs(name, width, image_size=224, patch_mode=False, num_classes=None,
                representation_size=None, stem='imagenet'):
  """Per-layer trainable parameters and forward FLOPs for one image.

  Args:
    name: one of `registry.MODEL_NAMES`.
    width: widening factor k.
    image_size: side of the square input image.
    patch_mode: as in `get_model` (ignored by vgg19_bn).
    num_classes: size of the logits layer, or None.
    representation_size: size of the bottleneck, or None.
    stem: as in `get_model` ('imagenet' or 'small'; vgg19_bn: 'imagenet').

  Returns:
    A list of LayerCost(name, params, flops) in network order.
  """
  if name not in registry.MODEL_NAMES:
    raise ValueError(
        f'Unknown model name {name!r}; valid names: {", ".join(registry.MODEL_NAMES)}.')
  counter = _Counter(image_size, image_size, 3)
  if name in ('resnet50_v1', 'resnet50_v2'):
    _resnet_costs(counter, name[-2:], width, patch_mode, stem)
  elif name == 'revnet50':
    _revnet_costs(counter, width, patch_mode, stem)
  else:
    if stem != 'imagenet':
      raise ValueError(f'vgg19_bn has no stem; got stem {stem!r}.')
    _vgg_costs(counter, width)
  if representation_size is not None:
    counter.dense('head/representation', representation_size)
  if num_classes is not None:
    counter.dense('head/logits', num_classes)
  return counter.costs


def count_params(name, width, **kwargs):
  """Total trainable parameters; kwargs as `layer_costs`."""
  return sum(c.params for c in layer_costs(name, width, **kwargs))


def count_flops(name, width, **kwargs):
  """Forward FLOPs per image (2 x conv/dense multiply-adds); kwargs as `layer_costs`."""
  return sum(c.flops for c in layer_costs(name, width, **kwargs))
