"""Built-in preprocessing ops (docs/protocol.md §3), registered in preprocess_registry.

One module per family of ops:

    values.py     decode (first op), value_range, standardize, keep (last ops)
    geometry.py   resize, resize_small, crop, central_crop, flip_lr
    color.py      color_distort, to_gray
    inception.py  inception_crop, inception_preprocess, inception_patches
    patches.py    crop_patches
    common.py     what the ops share: size arguments, the image feature, a
                  function applied to each element of a stack

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

preprocess_registry imports this package on its first lookup, and the package
imports every module in it, so a new family of ops is one new module here
(modules whose name starts with '_' are left out).
"""
import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
  if not _info.name.startswith("_"):
    importlib.import_module(f"{__name__}.{_info.name}")
