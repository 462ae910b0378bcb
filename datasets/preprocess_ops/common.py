"""What the preprocessing ops share: size arguments, the image, stacks."""

from typing import Callable, Optional, Sequence, Tuple, Union

import tensorflow as tf

from datasets import preprocess_registry as ppr

Size = Union[int, Sequence[int]]


def height_width(size: Size, op: str) -> Tuple[int, int]:
  """Normalises an int or (h, w) size argument to a pair of positive ints."""
  if isinstance(size, int) and not isinstance(size, bool):
    h = w = size
  elif (isinstance(size, (tuple, list)) and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in size)):
    h, w = size
  else:
    raise ValueError(f"{op}: size must be an int or a pair (height, width) of ints; "
                     f"got {size!r}.")
  if h <= 0 or w <= 0:
    raise ValueError(f"{op}: size must be positive; got {size!r}.")
  return h, w


def image_of(features: ppr.Features, op: str) -> tf.Tensor:
  """features['image'], or an error naming the op and the keys there are."""
  if "image" not in features:
    raise ValueError(f"{op} needs features['image']; the example has keys "
                     f"{sorted(features)}.")
  return features["image"]


def float_image(features: ppr.Features, op: str,
                ranks: Sequence[int] = (3, 4)) -> tf.Tensor:
  """features['image'] checked to be float, [H, W, C] or [N, H, W, C] (`ranks`)."""
  image = tf.convert_to_tensor(image_of(features, op))
  if not image.dtype.is_floating:
    raise ValueError(f"{op} expects a float image; got {image.dtype.name}. Put "
                     f"`decode` first in the pipeline.")
  if image.shape.rank not in ranks:
    expected = " or ".join({3: "[H, W, C]", 4: "[N, H, W, C]"}[r] for r in ranks)
    raise ValueError(f"{op} expects an image of shape {expected}; got shape "
                     f"{image.shape}.")
  return image


def with_image(features: ppr.Features, image: tf.Tensor) -> ppr.Features:
  """A shallow copy of `features` whose 'image' is `image`."""
  features = dict(features)
  features["image"] = image
  return features


def per_element(fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], image: tf.Tensor,
                seed: tf.Tensor, out_hw: Optional[Tuple[int, int]] = None) -> tf.Tensor:
  """Applies fn(image [H, W, C], seed [2]) to an image or to each of a stack.

  Each element of a stack gets its own seed, so copies are augmented
  independently. fn must keep the channel count; `out_hw` is its output
  height and width when it changes them (None: unchanged).
  """
  if image.shape.rank == 3:
    return fn(image, seed)
  seeds = ppr.split_seed(seed, tf.shape(image)[0])
  hw = list(out_hw) if out_hw is not None else image.shape[1:3].as_list()
  # Explicit element shape: map_fn cannot infer it and would drop it.
  spec = tf.TensorSpec(hw + [image.shape[-1]], image.dtype)
  return tf.map_fn(lambda args: fn(*args), (image, seeds), fn_output_signature=spec)
