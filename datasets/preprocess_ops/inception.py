"""Inception-style ops: inception_crop, inception_preprocess, inception_patches.

The crop, flip and colour distortion of slim's inception_preprocessing (as
used by the reference code), and its evaluation-time central crop.
"""

from typing import Optional

import tensorflow as tf

from datasets import preprocess_registry as ppr
from datasets.preprocess_ops import color
from datasets.preprocess_ops import common
from datasets.preprocess_ops import geometry

# Evaluation-time crop of inception-style preprocessing (as in the reference
# code and slim's inception_preprocessing).
INCEPTION_EVAL_CENTRAL_FRACTION = 0.875


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
  return geometry.resize(crop, h, w)


def _central_fraction_resize(image: tf.Tensor, h: int, w: int) -> tf.Tensor:
  crop = tf.image.central_crop(image, INCEPTION_EVAL_CENTRAL_FRACTION)
  return geometry.resize(crop, h, w)


def _inception_preprocess(image: tf.Tensor, seed: Optional[tf.Tensor], h: int,
                          w: int, training: bool, area_min: float,
                          area_max: float,
                          gray: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Inception-style augmentation of [H, W, 3] in [0, 1]; output in [-1, 1].

  gray: as in color.distort, for `image` (its crops are gray alike).
  """
  if training:
    crop_seed, flip_seed, color_seed = tf.unstack(ppr.split_seed(seed, 3))
    image = _inception_crop(image, crop_seed, h, w, area_min, area_max)
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    image = color.distort(image, color_seed, 32.0 / 255.0, 0.5, 1.5, gray=gray)
  else:
    image = _central_fraction_resize(image, h, w)
  return image * 2.0 - 1.0


def _check_area(op: str, area_min: float, area_max: float) -> None:
  if not 0 < area_min <= area_max <= 100:
    raise ValueError(f"{op}: need 0 < area_min <= area_max <= 100 (percent of the "
                     f"image area); got area_min={area_min}, area_max={area_max}.")


@ppr.register("inception_crop")
def get_inception_crop(size: common.Size, area_min: float = 5, area_max: float = 100,
                       *, training: bool) -> ppr.PreprocessFn:
  """Inception-style random crop, resized (bilinear) to size (int or (h, w)).

  Training: a box covering area_min..area_max percent of the image with aspect
  ratio 3/4..4/3 (independently per element of a stack). Evaluation: the
  central 87.5% of the image (as the reference's eval preprocessing), resized.
  """
  h, w = common.height_width(size, "inception_crop")
  _check_area("inception_crop", area_min, area_max)

  def _apply(features):
    image = common.float_image(features, "inception_crop")
    if not training:
      return common.with_image(features, _central_fraction_resize(image, h, w))
    seed, features = ppr.next_seed(features)
    crop_fn = lambda x, s: _inception_crop(x, s, h, w, area_min, area_max)
    return common.with_image(features, common.per_element(crop_fn, image, seed, (h, w)))

  # Deterministic in evaluation only.
  return _apply if training else ppr.batchable(_apply)


@ppr.register("inception_preprocess")
def get_inception_preprocess(size: common.Size, area_min: float = 5,
                             area_max: float = 100, *,
                             training: bool) -> ppr.PreprocessFn:
  """Inception-style preprocessing of [H, W, 3] in [0, 1]; output in [-1, 1].

  Training: inception_crop(size) + random flip + colour distortion.
  Evaluation: central crop of 87.5% + bilinear resize to size.
  """
  h, w = common.height_width(size, "inception_preprocess")
  _check_area("inception_preprocess", area_min, area_max)

  def _apply(features):
    image = common.float_image(features, "inception_preprocess")
    if not training:
      # Deterministic and shape-agnostic: works on a whole stack at once.
      return common.with_image(
          features, _inception_preprocess(image, None, h, w, False, area_min, area_max))
    seed, features = ppr.next_seed(features)
    fn = lambda x, s: _inception_preprocess(x, s, h, w, True, area_min, area_max)
    return common.with_image(features, common.per_element(fn, image, seed, (h, w)))

  # Deterministic in evaluation only.
  return _apply if training else ppr.batchable(_apply)


@ppr.register("inception_patches")
def get_inception_patches(n: int, size: common.Size, area_min: float = 5,
                          area_max: float = 100, *,
                          training: bool) -> ppr.PreprocessFn:
  """n independent inception_preprocess(size) copies of [H, W, C] in [0, 1].

  Output [n, h, w, C] in [-1, 1]. In evaluation the n copies are identical
  central crops.
  """
  h, w = common.height_width(size, "inception_patches")
  _check_area("inception_patches", area_min, area_max)
  if not isinstance(n, int) or n <= 0:
    raise ValueError(f"inception_patches: n must be a positive int; got {n!r}.")

  def _apply(features):
    image = common.float_image(features, "inception_patches", ranks=(3,))
    if not training:
      copy = _inception_preprocess(image, None, h, w, False, area_min, area_max)
      return common.with_image(features, tf.repeat(copy[None], n, axis=0))
    seed, features = ppr.next_seed(features)
    seeds = tf.unstack(ppr.split_seed(seed, n))

    # Whether the image is gray (exemplar's to_gray(2/3) runs before this op),
    # asked once rather than of each crop: cropping, bilinear resizing and
    # flipping compute every channel alike, so the crops of a gray image are
    # gray bit for bit (exemplar's batches on bench/input_pipeline.py's
    # stand-in ImageNet came out identical to saturating every crop).
    gray = color.channels_equal(image) if image.shape[-1] == 3 else None
    copies = [_inception_preprocess(image, s, h, w, True, area_min, area_max,
                                    gray=gray) for s in seeds]
    return common.with_image(features, tf.stack(copies))

  return _apply
