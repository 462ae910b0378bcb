"""The single entry point that builds a trunk by name: `get_model`."""
import gin

from models import layers
from models import resnet
from models import revnet
from models import vgg

MODEL_NAMES = ('resnet50_v1', 'resnet50_v2', 'revnet50', 'vgg19_bn')

# Trunks whose variables do not depend on the input resolution, so they can be
# built at construction time (VGG's fc6 kernel covers the input's final extent).
_RESOLUTION_FREE = ('resnet50_v1', 'resnet50_v2', 'revnet50')


@gin.configurable
def get_model(name, width=4, num_classes=None, last_relu=True, patch_mode=False,
              representation_size=None, weight_decay=1e-4, stem='imagenet'):
  """Builds one of the trunks of Table 1.

  Usage: `logits, end_points = model(images, training=False)` with float32
  images [B, H, W, 3]; see `layers.Trunk.call`. The "(-)" variants of the paper
  are `resnet50_v2` / `revnet50` with `last_relu=False`.

  ResNet/RevNet models are returned built (their variables exist, created in
  the current distribution-strategy scope), since their variables do not
  depend on the image size. `vgg19_bn` is built by its first call or by
  `model.build((None, H, W, 3))`, because fc6's kernel covers the spatial extent
  left after five pools (7x7 at 224, 2x2 at 64); build it before restoring a
  checkpoint or entering a replica function.

  Args:
    name: one of MODEL_NAMES.
    width: widening factor k, positive int (pre_logits has 512k channels).
    num_classes: int, size of the logits layer; None for no logits layer (the
      call then returns `(None, end_points)` and end_points has no 'logits').
    last_relu: whether ResNet v2 / RevNet apply a ReLU after the final BN.
      resnet50_v1 and vgg19_bn always do; False raises for them.
    patch_mode: root stride 1 and block strides (2, 2, 1) for 64x64 patches
      (ResNet/RevNet). A no-op for vgg19_bn, which has no patch mode.
    representation_size: int or None; a linear layer of this size between the
      global pool and pre_logits (paper Fig. 6).
    weight_decay: L2 strength on convolution kernels (and the logits /
      bottleneck kernels); the loss term is `weight_decay * sum(w**2) / 2`,
      exposed via `model.losses`.
    stem: 'imagenet' (the paper's 7x7/2 root conv and 3x3/2 max-pool) or
      'small' (a 3x3/1 root conv and no pool, for 28-32 px images, where the
      ImageNet stem leaves block4 at 1x1); ResNet/RevNet only: vgg19_bn has
      no stem and refuses 'small'.

  Returns:
    A `keras.Model` (`layers.Trunk` subclass).
  """
  if name not in MODEL_NAMES:
    raise ValueError(f'Unknown model name {name!r}; valid names: {", ".join(MODEL_NAMES)}.')
  layers.check_positive_int(width, 'width', 'it is the widening factor k, e.g. 4.')
  layers.root_geometry(stem, patch_mode)  # an unknown stem fails here
  kwargs = dict(width=width, num_classes=num_classes, last_relu=last_relu,
                patch_mode=patch_mode, representation_size=representation_size,
                weight_decay=weight_decay)
  if name == 'resnet50_v1':
    model = resnet.ResNet50(version='v1', stem=stem, **kwargs)
  elif name == 'resnet50_v2':
    model = resnet.ResNet50(version='v2', stem=stem, **kwargs)
  elif name == 'revnet50':
    model = revnet.RevNet50(stem=stem, **kwargs)
  else:
    if stem != 'imagenet':
      raise ValueError(
          f"vgg19_bn has no stem to change (its five conv stages and pools are the "
          f"whole network), so get_model.stem = {stem!r} is not defined for it; "
          f"bind get_model.stem = 'imagenet' for vgg19_bn cells.")
    model = vgg.VGG19BN(**kwargs)
  if name in _RESOLUTION_FREE:
    model.build((None, None, None, 3))
  return model
