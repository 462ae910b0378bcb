"""Built-in preprocessing ops (SPEC §3), registered in preprocess_registry.

Conventions shared by all ops:
- An op acts on the feature dict of ONE example and returns a new dict; most
  ops only touch features['image'].
- `decode` turns the dataset's image (uint8 [H, W, C] with C in {1, 3}, or an
  encoded string scalar) into float32 in [0, 1]; every later op expects
  float32. `value_range` and `standardize` leave that range on purpose, so
  they come last.
- Where it makes sense an op accepts a single image [H, W, C] or a stack
  [N, H, W, C] (copies or patches created by a multi-copy op). Random ops on a
  stack draw independent randomness per element unless stated otherwise.
- Random ops use stateless TF random ops seeded by registry.next_seed, so the
  result is a pure function of features['_rng'].
"""

from typing import Callable, Optional, Sequence, Tuple, Union

import tensorflow as tf

from datasets import preprocess_registry as ppr

Size = Union[int, Sequence[int]]

_RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5",
                   "gaussian", "mitchellcubic")

# Evaluation-time crop of inception-style preprocessing (as in the reference
# code and slim's inception_preprocessing).
INCEPTION_EVAL_CENTRAL_FRACTION = 0.875


def _hw(size: Size, op: str) -> Tuple[int, int]:
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


def _image(features: ppr.Features, op: str) -> tf.Tensor:
  if "image" not in features:
    raise ValueError(f"{op} needs features['image']; the example has keys "
                     f"{sorted(features)}.")
  return features["image"]


def _float_image(features: ppr.Features, op: str,
                 ranks: Sequence[int] = (3, 4)) -> tf.Tensor:
  image = tf.convert_to_tensor(_image(features, op))
  if not image.dtype.is_floating:
    raise ValueError(f"{op} expects a float image; got {image.dtype.name}. Put "
                     f"`decode` first in the pipeline.")
  if image.shape.rank not in ranks:
    expected = " or ".join({3: "[H, W, C]", 4: "[N, H, W, C]"}[r] for r in ranks)
    raise ValueError(f"{op} expects an image of shape {expected}; got shape "
                     f"{image.shape}.")
  return image


def _with_image(features: ppr.Features, image: tf.Tensor) -> ppr.Features:
  features = dict(features)
  features["image"] = image
  return features


def _per_element(fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], image: tf.Tensor,
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


def _central_crop(image: tf.Tensor, h: int, w: int) -> tf.Tensor:
  """Crops the central h x w window of [..., H, W, C]; offsets round down."""
  static_h, static_w = image.shape[-3], image.shape[-2]
  if (static_h is not None and static_h < h) or (static_w is not None and static_w < w):
    raise ValueError(f"Cannot crop {h}x{w} from an image of {static_h}x{static_w}; "
                     f"resize first or crop less.")
  shape = tf.shape(image)
  height, width = shape[-3], shape[-2]
  tf.debugging.assert_greater_equal(
      tf.stack([height, width]), tf.constant([h, w]),
      message=f"central crop of {h}x{w} is larger than the image")
  top = (height - h) // 2
  left = (width - w) // 2
  crop = image[..., top:top + h, left:left + w, :]
  # Slicing at run-time offsets loses the static size, which is known.
  crop.set_shape(image.shape[:-3].concatenate([h, w]).concatenate(image.shape[-1:]))
  return crop


def _resize(image: tf.Tensor, h: int, w: int, method: str = "bilinear") -> tf.Tensor:
  return tf.cast(tf.image.resize(image, [h, w], method=method), tf.float32)


def _inception_crop(image: tf.Tensor, seed: tf.Tensor, h: int, w: int,
                    area_min: float, area_max: float) -> tf.Tensor:
  """Random distorted box of [H, W, C] (aspect 3/4..4/3), resized to h x w."""
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(image),
      bounding_boxes=tf.zeros([1, 0, 4], tf.float32),
      seed=seed,
      min_object_covered=0.0,
      aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
      area_range=(area_min / 100.0, area_max / 100.0),
      max_attempts=100,
      use_image_if_no_bounding_boxes=True)
  crop = tf.slice(image, begin, size)
  crop.set_shape([None, None, image.shape[-1]])
  return _resize(crop, h, w)


def _central_fraction_resize(image: tf.Tensor, h: int, w: int) -> tf.Tensor:
  crop = tf.image.central_crop(image, INCEPTION_EVAL_CENTRAL_FRACTION)
  return _resize(crop, h, w)


def _channels_equal(image: tf.Tensor) -> tf.Tensor:
  """Whether every pixel of [..., 3] has three equal channels (bool scalar).

  A sparse grid of pixels is compared first: a colour image (the usual case)
  is told apart for almost nothing, and only a gray one is compared in full.
  """
  def equal(x):
    return tf.logical_and(tf.reduce_all(tf.equal(x[..., 0], x[..., 1])),
                          tf.reduce_all(tf.equal(x[..., 1], x[..., 2])))

  return tf.cond(equal(image[..., ::8, ::8, :]), lambda: equal(image),
                 lambda: tf.constant(False))


def _color_distort(image: tf.Tensor, seed: tf.Tensor, brightness_delta: float,
                   saturation_lower: float, saturation_upper: float,
                   gray: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Random brightness and saturation of [H, W, 3] in [0, 1], in random order.

  gray: optional bool scalar, whether all channels of `image` are equal;
  where true, the saturation is left out (see below).
  """
  order_seed, brightness_seed, saturation_seed = tf.unstack(ppr.split_seed(seed, 3))

  def brightness(x):
    return tf.image.stateless_random_brightness(x, brightness_delta, brightness_seed)

  def adjust_saturation(x):
    if saturation_lower == saturation_upper:
      # TF's random op needs upper > lower; a fixed factor is the limit case.
      return tf.image.adjust_saturation(x, saturation_lower)
    return tf.image.stateless_random_saturation(
        x, saturation_lower, saturation_upper, saturation_seed)

  # TF's saturation kernel (an HSV round trip per pixel) gives every pixel
  # with equal channels back bit for bit (hue 0, saturation 0 before and
  # after), and a brightness shift keeps channels equal; it is the costliest
  # op of the inception augmentations, and exemplar's grayscale (p = 2/3, before
  # its 8 crops) makes most of its crops gray. Its factor is drawn from its own
  # seed, so skipping it changes no other draw. Only a caller that knows asks
  # for this: in pipelines without grayscale a check per image is pure cost.
  def saturation(x):
    if gray is None:
      return adjust_saturation(x)
    return tf.cond(gray, lambda: x, lambda: adjust_saturation(x))

  brightness_first = tf.random.stateless_uniform([], order_seed) < 0.5
  image = tf.cond(brightness_first,
                  lambda: saturation(brightness(image)),
                  lambda: brightness(saturation(image)))
  # Clip so later ops can rely on [0, 1] (value_range maps it exactly).
  return tf.clip_by_value(image, 0.0, 1.0)


def _inception_preprocess(image: tf.Tensor, seed: Optional[tf.Tensor], h: int,
                          w: int, training: bool, area_min: float,
                          area_max: float,
                          gray: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Inception-style augmentation of [H, W, 3] in [0, 1]; output in [-1, 1].

  gray: as in _color_distort, for `image` (its crops are gray alike).
  """
  if training:
    crop_seed, flip_seed, color_seed = tf.unstack(ppr.split_seed(seed, 3))
    image = _inception_crop(image, crop_seed, h, w, area_min, area_max)
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    image = _color_distort(image, color_seed, 32.0 / 255.0, 0.5, 1.5, gray=gray)
  else:
    image = _central_fraction_resize(image, h, w)
  return image * 2.0 - 1.0


def _check_area(op: str, area_min: float, area_max: float) -> None:
  if not 0 < area_min <= area_max <= 100:
    raise ValueError(f"{op}: need 0 < area_min <= area_max <= 100 (percent of the "
                     f"image area); got area_min={area_min}, area_max={area_max}.")


@ppr.register("decode")
def get_decode(channels: int = 3, *, training: bool) -> ppr.PreprocessFn:
  """Image (encoded string or uint8 [H, W, C], C in {1, 3}) -> float32 [0, 1].

  Output has `channels` channels: grayscale is tiled to RGB, RGB is converted
  to luma for channels=1 (as image decoders do). Already decoded images may
  come as a batch [B, H, W, C].
  """
  del training
  if channels not in (1, 3):
    raise ValueError(f"decode: channels must be 1 or 3; got {channels!r}.")

  def _decode(features):
    image = tf.convert_to_tensor(_image(features, "decode"))
    if image.dtype == tf.string:
      if image.shape.rank != 0:
        raise ValueError(f"decode expects one encoded image (a scalar string); "
                         f"got shape {image.shape}.")
      image = tf.io.decode_image(image, channels=channels, expand_animations=False)
    if image.shape.rank not in (3, 4):
      raise ValueError(f"decode expects one image [H, W, C] or a batch of them; "
                       f"got shape {image.shape}.")
    image = tf.image.convert_image_dtype(image, tf.float32)
    in_channels = image.shape[-1]
    if in_channels is None:
      # Channel count unknown until run time: tiling by 3 // C turns 1 channel
      # into 3 and leaves 3 unchanged.
      if channels == 3:
        multiples = [1] * (image.shape.rank - 1) + [3 // tf.shape(image)[-1]]
        image = tf.tile(image, multiples)
      else:
        image = tf.cond(tf.shape(image)[-1] == 3,
                        lambda: tf.image.rgb_to_grayscale(image), lambda: image)
      image.set_shape([None, None, channels])
    elif in_channels != channels:
      if in_channels == 1:
        image = tf.image.grayscale_to_rgb(image)
      elif in_channels == 3:
        image = tf.image.rgb_to_grayscale(image)
      else:
        raise ValueError(f"decode supports images with 1 or 3 channels; got "
                         f"{in_channels}.")
    return _with_image(features, image)

  return ppr.batchable(_decode)


@ppr.register("resize")
def get_resize(size: Size, method: str = "bilinear", *,
               training: bool) -> ppr.PreprocessFn:
  """Resizes [H, W, C] or [N, H, W, C] to size (int or (h, w)).

  Bilinear by default; `method` is any tf.image.resize method name.
  """
  del training
  h, w = _hw(size, "resize")
  if method not in _RESIZE_METHODS:
    raise ValueError(f"resize: unknown method {method!r}; use one of "
                     f"{', '.join(_RESIZE_METHODS)}.")

  def _apply(features):
    image = _float_image(features, "resize")
    return _with_image(features, _resize(image, h, w, method))

  return ppr.batchable(_apply)


@ppr.register("resize_small")
def get_resize_small(smaller_side: int, *, training: bool) -> ppr.PreprocessFn:
  """Resizes so the smaller side is `smaller_side`, keeping the aspect ratio.

  Uses area interpolation; the longer side is rounded to the nearest pixel.
  Accepts [H, W, C] or [N, H, W, C].
  """
  del training
  if not isinstance(smaller_side, int) or smaller_side <= 0:
    raise ValueError(f"resize_small: smaller_side must be a positive int; got "
                     f"{smaller_side!r}.")

  def _apply(features):
    image = _float_image(features, "resize_small")
    shape = tf.shape(image)
    height = tf.cast(shape[-3], tf.float32)
    width = tf.cast(shape[-2], tf.float32)
    ratio = smaller_side / tf.minimum(height, width)
    new_h = tf.cast(tf.round(height * ratio), tf.int32)
    new_w = tf.cast(tf.round(width * ratio), tf.int32)
    image = tf.image.resize(image, tf.stack([new_h, new_w]), method="area")
    return _with_image(features, tf.cast(image, tf.float32))

  return ppr.batchable(_apply)


@ppr.register("crop")
def get_crop(size: Size, *, training: bool) -> ppr.PreprocessFn:
  """Crops size (int or (h, w)): random position in training, central in eval.

  On a stack [N, H, W, C] all elements are cropped at the same position.
  """
  h, w = _hw(size, "crop")

  def _apply(features):
    image = _float_image(features, "crop")
    if not training:
      return _with_image(features, _central_crop(image, h, w))
    seed, features = ppr.next_seed(features)
    shape = tf.shape(image)
    crop_shape = tf.concat([shape[:-3], [h, w], shape[-1:]], axis=0)
    image = tf.image.stateless_random_crop(image, crop_shape, seed)
    return _with_image(features, image)

  # Deterministic in evaluation only.
  return _apply if training else ppr.batchable(_apply)


@ppr.register("central_crop")
def get_central_crop(size: Size, *, training: bool) -> ppr.PreprocessFn:
  """Crops the central size (int or (h, w)) window of [H, W, C] or [N, H, W, C].

  The offset is (H - h) // 2, i.e. numpy's image[(H-h)//2:(H-h)//2 + h, ...].
  """
  del training
  h, w = _hw(size, "central_crop")

  def _apply(features):
    image = _float_image(features, "central_crop")
    return _with_image(features, _central_crop(image, h, w))

  return ppr.batchable(_apply)


@ppr.register("inception_crop")
def get_inception_crop(size: Size, area_min: float = 5, area_max: float = 100, *,
                       training: bool) -> ppr.PreprocessFn:
  """Inception-style random crop, resized (bilinear) to size (int or (h, w)).

  Training: a box covering area_min..area_max percent of the image with aspect
  ratio 3/4..4/3 (independently per element of a stack). Evaluation: the
  central 87.5% of the image (as the reference's eval preprocessing), resized.
  """
  h, w = _hw(size, "inception_crop")
  _check_area("inception_crop", area_min, area_max)

  def _apply(features):
    image = _float_image(features, "inception_crop")
    if not training:
      return _with_image(features, _central_fraction_resize(image, h, w))
    seed, features = ppr.next_seed(features)
    crop_fn = lambda x, s: _inception_crop(x, s, h, w, area_min, area_max)
    return _with_image(features, _per_element(crop_fn, image, seed, (h, w)))

  # Deterministic in evaluation only.
  return _apply if training else ppr.batchable(_apply)


@ppr.register("flip_lr")
def get_flip_lr(*, training: bool) -> ppr.PreprocessFn:
  """Random left-right flip (p=1/2, per element of a stack); identity in eval."""

  def _apply(features):
    image = _float_image(features, "flip_lr")
    if not training:
      return features
    seed, features = ppr.next_seed(features)
    return _with_image(features, tf.image.stateless_random_flip_left_right(image, seed))

  # Deterministic in evaluation only.
  return _apply if training else ppr.batchable(_apply)


@ppr.register("color_distort")
def get_color_distort(brightness_delta: float = 32.0 / 255.0,
                      saturation_lower: float = 0.5, saturation_upper: float = 1.5,
                      *, training: bool) -> ppr.PreprocessFn:
  """Random brightness and saturation in random order, clipped to [0, 1].

  Training only (identity in eval). Input in [0, 1], RGB, [H, W, 3] or
  [N, H, W, 3] (independent per element).
  """
  if not 0 <= saturation_lower <= saturation_upper or brightness_delta < 0:
    raise ValueError(
        f"color_distort: need brightness_delta >= 0 and 0 <= saturation_lower <= "
        f"saturation_upper; got {brightness_delta}, {saturation_lower}, "
        f"{saturation_upper}.")

  def _apply(features):
    image = _float_image(features, "color_distort")
    if not training:
      return features
    seed, features = ppr.next_seed(features)
    distort = lambda x, s: _color_distort(x, s, brightness_delta, saturation_lower,
                                          saturation_upper)
    return _with_image(features, _per_element(distort, image, seed))

  # Deterministic in evaluation only.
  return _apply if training else ppr.batchable(_apply)


@ppr.register("inception_preprocess")
def get_inception_preprocess(size: Size, area_min: float = 5, area_max: float = 100,
                             *, training: bool) -> ppr.PreprocessFn:
  """Inception-style preprocessing of [H, W, 3] in [0, 1]; output in [-1, 1].

  Training: inception_crop(size) + random flip + colour distortion.
  Evaluation: central crop of 87.5% + bilinear resize to size.
  """
  h, w = _hw(size, "inception_preprocess")
  _check_area("inception_preprocess", area_min, area_max)

  def _apply(features):
    image = _float_image(features, "inception_preprocess")
    if not training:
      # Deterministic and shape-agnostic: works on a whole stack at once.
      return _with_image(
          features, _inception_preprocess(image, None, h, w, False, area_min, area_max))
    seed, features = ppr.next_seed(features)
    fn = lambda x, s: _inception_preprocess(x, s, h, w, True, area_min, area_max)
    return _with_image(features, _per_element(fn, image, seed, (h, w)))

  # Deterministic in evaluation only.
  return _apply if training else ppr.batchable(_apply)


@ppr.register("inception_patches")
def get_inception_patches(n: int, size: Size, area_min: float = 5,
                          area_max: float = 100, *,
                          training: bool) -> ppr.PreprocessFn:
  """n independent inception_preprocess(size) copies of [H, W, C] in [0, 1].

  Output [n, h, w, C] in [-1, 1]. In evaluation the n copies are identical
  central crops.
  """
  h, w = _hw(size, "inception_patches")
  _check_area("inception_patches", area_min, area_max)
  if not isinstance(n, int) or n <= 0:
    raise ValueError(f"inception_patches: n must be a positive int; got {n!r}.")

  def _apply(features):
    image = _float_image(features, "inception_patches", ranks=(3,))
    if not training:
      copy = _inception_preprocess(image, None, h, w, False, area_min, area_max)
      return _with_image(features, tf.repeat(copy[None], n, axis=0))
    seed, features = ppr.next_seed(features)
    seeds = tf.unstack(ppr.split_seed(seed, n))

    # Whether the image is gray (exemplar's to_gray(2/3) runs before this op),
    # asked once rather than of each crop: cropping, bilinear resizing and
    # flipping compute every channel alike, so the crops of a gray image are
    # gray bit for bit (exemplar's batches on bench/input_pipeline.py's
    # stand-in ImageNet came out identical to saturating every crop).
    gray = _channels_equal(image) if image.shape[-1] == 3 else None
    copies = [_inception_preprocess(image, s, h, w, True, area_min, area_max,
                                    gray=gray) for s in seeds]
    return _with_image(features, tf.stack(copies))

  return _apply


@ppr.register("value_range")
def get_value_range(lo: float, hi: float, in_lo: float = 0.0, in_hi: float = 1.0,
                    *, training: bool) -> ppr.PreprocessFn:
  """Maps values linearly from [in_lo, in_hi] (default [0, 1]) to [lo, hi]."""
  del training
  if in_hi == in_lo:
    raise ValueError(f"value_range: in_lo and in_hi must differ; both are {in_lo}.")
  scale = (hi - lo) / (in_hi - in_lo)

  def _apply(features):
    image = _float_image(features, "value_range")
    if in_lo:  # x - 0.0 is x; skipping it saves a pass over the image
      image = image - in_lo
    return _with_image(features, image * scale + lo)

  return ppr.batchable(_apply)


def _gray(image: tf.Tensor) -> tf.Tensor:
  """The mean of the channels, tiled back to the input's channel count."""
  if image.shape[-1] == 3:
    # The same sum in the same order and the same division as reduce_mean
    # (TF sums the 3 values one after the other, then divides by the count),
    # so the same bits; a reduction over a last axis of 3 is a slow path of
    # TF's kernels, and this took about half the time.
    mean = ((image[..., 0:1] + image[..., 1:2]) + image[..., 2:3]) / 3.0
  else:
    mean = tf.reduce_mean(image, axis=-1, keepdims=True)
  return tf.broadcast_to(mean, tf.shape(image))


@ppr.register("to_gray")
def get_to_gray(p: float = 2.0 / 3.0, eval_p: float = 0.0,
                per_element: bool = False, *,
                training: bool) -> ppr.PreprocessFn:
  """With probability p, replaces the image by the mean of its channels.

  The mean is tiled back to the input's channel count so shapes do not change.
  By default the decision is drawn ONCE per example: on a stack [N, H, W, C]
  either all elements become gray or none. per_element=True draws it for each
  element of a stack independently (the patch tasks' per-patch grayscale,
  SPEC §2). In evaluation the probability is `eval_p`, 0 by default (no
  conversion); eval_p=1 converts every evaluation image.
  """
  for name, value in (("p", p), ("eval_p", eval_p)):
    if not 0.0 <= value <= 1.0:
      raise ValueError(f"to_gray: {name} is a probability in [0, 1]; got {value!r}.")
  prob = p if training else eval_p

  def _apply(features):
    image = _float_image(features, "to_gray")
    if prob == 0.0:
      return features
    if prob == 1.0:
      return _with_image(features, _gray(image))
    seed, features = ppr.next_seed(features)
    if per_element:
      if image.shape.rank != 4:
        raise ValueError(f"to_gray(per_element=True) needs a stack [N, H, W, C] "
                         f"(put it after crop_patches); got shape {image.shape}.")
      # One draw per element. Picking each element from [colour; gray] by
      # index copies it once; tf.where with the draws broadcast over H, W, C
      # took twice as long (TF's broadcasting select is a slow path).
      n = tf.shape(image)[0]
      draws = tf.random.stateless_uniform([n], seed)
      picks = tf.range(n) + n * tf.cast(draws < prob, tf.int32)
      return _with_image(features, tf.gather(tf.concat([image, _gray(image)], 0),
                                             picks))
    draws = tf.random.stateless_uniform([], seed)
    # A branch, so a colour example skips computing the gray image at all.
    return _with_image(features, tf.cond(draws < prob, lambda: _gray(image),
                                         lambda: tf.identity(image)))

  # Per-example coin flips only strictly between 0 and 1.
  return ppr.batchable(_apply) if prob in (0.0, 1.0) else _apply


@ppr.register("crop_patches")
def get_crop_patches(splits: int = 3, patch_size: int = 64,
                     jitter: Optional[int] = None, *,
                     training: bool) -> ppr.PreprocessFn:
  """Splits [H, W, C] into a splits x splits grid and crops a patch in each cell.

  Output [splits * splits, patch_size, patch_size, C], row-major (patch
  r * splits + c is grid cell (r, c)). Cells are H // splits by W // splits,
  starting at the top-left corner. In each cell the margin is
  m = cell - patch_size; in evaluation the patch sits at offset m // 2
  (central); in training its offset is drawn uniformly, independently per cell
  and axis, from [(m - j) // 2, (m - j) // 2 + j] with j = jitter (default
  m, i.e. anywhere in the cell).
  """
  if not isinstance(splits, int) or splits <= 0:
    raise ValueError(f"crop_patches: splits must be a positive int; got {splits!r}.")
  if not isinstance(patch_size, int) or patch_size <= 0:
    raise ValueError(f"crop_patches: patch_size must be a positive int; got "
                     f"{patch_size!r}.")
  if jitter is not None and (not isinstance(jitter, int) or jitter < 0):
    raise ValueError(f"crop_patches: jitter must be None or an int >= 0; got "
                     f"{jitter!r}.")
  num_patches = splits * splits

  def _apply(features):
    image = _float_image(features, "crop_patches", ranks=(3,))
    static_hw = image.shape[:2]
    if static_hw.is_fully_defined():
      static_margin = min(static_hw[0], static_hw[1]) // splits - patch_size
      if static_margin < 0:
        raise ValueError(
            f"crop_patches: image {static_hw[0]}x{static_hw[1]} split {splits}x"
            f"{splits} gives cells smaller than patch_size={patch_size}; resize or "
            f"crop to at least {splits * patch_size} pixels first.")
      if jitter is not None and jitter > static_margin:
        raise ValueError(
            f"crop_patches: jitter={jitter} exceeds the cell margin "
            f"{static_margin} (cell - patch_size); use jitter <= {static_margin}.")
    shape = tf.shape(image)
    cell = tf.stack([shape[0] // splits, shape[1] // splits])  # (cell_h, cell_w)
    margin = cell - patch_size
    tf.debugging.assert_non_negative(
        margin, message="crop_patches: grid cells are smaller than patch_size")
    if training:
      if jitter is None:
        span = margin
      else:
        span = tf.fill([2], jitter)
        tf.debugging.assert_less_equal(
            span, margin, message="crop_patches: jitter exceeds cell - patch_size")
      seed, features = ppr.next_seed(features)
      # Integer offsets uniform in [0, span] per cell and axis, independently.
      u = tf.random.stateless_uniform([num_patches, 2], seed)
      draw = tf.cast(tf.floor(u * tf.cast(span + 1, tf.float32)), tf.int32)
      offset = (margin - span) // 2 + tf.minimum(draw, span)
    else:
      offset = tf.broadcast_to(margin // 2, [num_patches, 2])
    grid = tf.range(num_patches)
    cell_pos = tf.stack([grid // splits, grid % splits], axis=1)  # row-major
    corner = cell_pos * cell + offset  # [num_patches, 2] top-left of each patch
    steps = tf.range(patch_size)
    rows = corner[:, 0:1] + steps  # [num_patches, patch_size]
    cols = corner[:, 1:2] + steps
    patches = tf.gather(image, rows, axis=0)  # [P, ps, W, C]
    patches = tf.gather(patches, cols, axis=2, batch_dims=1)  # [P, ps, ps, C]
    patches.set_shape([num_patches, patch_size, patch_size, image.shape[-1]])
    return _with_image(features, patches)

  return _apply


@ppr.register("standardize")
def get_standardize(*, training: bool) -> ppr.PreprocessFn:
  """Zero mean, unit variance per image, or per element of a stack.

  Same as tf.image.per_image_standardization: statistics over H, W and C of
  each image, the std floored at 1 / sqrt(H * W * C) for constant images.
  """
  del training

  def _apply(features):
    image = _float_image(features, "standardize")
    return _with_image(features, tf.image.per_image_standardization(image))

  return ppr.batchable(_apply)


@ppr.register("keep")
def get_keep(*keys: str, training: bool) -> ppr.PreprocessFn:
  """Keeps only the named features, dropping every other one.

  '_rng' is dropped too unless named, so random ops placed after `keep`
  fall back to unseeded randomness: put `keep` last.
  """
  del training
  if not keys or not all(isinstance(k, str) for k in keys):
    raise ValueError(f"keep: name the features to keep as strings, e.g. "
                     f"keep('image', 'label'); got {keys!r}.")

  def _apply(features):
    missing = [k for k in keys if k not in features]
    if missing:
      raise ValueError(f"keep: features {missing} are not in the example; it has "
                       f"{sorted(features)}.")
    return {k: features[k] for k in keys}

  return ppr.batchable(_apply)
