"""Prints trainable parameters and forward FLOPs of every trunk at several widths.

Usage: python bench/model_sizes.py [--widths 4 8 12 16] [--image_size 224]
       [--num_classes N] [--check_width 1]

Counts are analytic (models/flops.py): FLOPs are 2 x multiply-adds of convs
and dense layers for one image. The ratio column is relative to the k=4
model of the same trunk. With --check_width, the analytic parameter count is
compared against a real Keras model of that width, built in this process.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import models  # noqa: E402
from models import flops  # noqa: E402


def size_table(widths, image_size, num_classes):
  """Returns rows (name, k, params, flops, params_ratio, flops_ratio)."""
  rows = []
  for name in models.MODEL_NAMES:
    base_params = flops.count_params(name, 4, image_size=image_size, num_classes=num_classes)
    base_flops = flops.count_flops(name, 4, image_size=image_size, num_classes=num_classes)
    for k in widths:
      p = flops.count_params(name, k, image_size=image_size, num_classes=num_classes)
      f = flops.count_flops(name, k, image_size=image_size, num_classes=num_classes)
      rows.append((name, k, p, f, p / base_params, f / base_flops))
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--widths', type=int, nargs='+', default=[4, 8, 12, 16])
  parser.add_argument('--image_size', type=int, default=224)
  parser.add_argument('--num_classes', type=int, default=None)
  parser.add_argument('--check_width', type=int, default=None)
  args = parser.parse_args()

  print(f'Trunks at {args.image_size}x{args.image_size}, logits: {args.num_classes}; '
        'FLOPs = 2 x conv/dense multiply-adds per image.')
  print('| trunk | k | params | GFLOPs | params / k=4 | FLOPs / k=4 |')
  print('| --- | ---: | ---: | ---: | ---: | ---: |')
  for name, k, p, f, pr, fr in size_table(args.widths, args.image_size, args.num_classes):
    print(f'| {name} | {k} | {p / 1e6:.2f}M | {f / 1e9:.2f} | {pr:.2f} | {fr:.2f} |')

  if args.check_width:
    for name in models.MODEL_NAMES:
      model = models.get_model(name, width=args.check_width, num_classes=args.num_classes)
      model.build((None, args.image_size, args.image_size, 3))
      real = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
      analytic = flops.count_params(name, args.check_width, image_size=args.image_size,
                                    num_classes=args.num_classes)
      status = 'ok' if real == analytic else 'MISMATCH'
      print(f'{name} k={args.check_width}: keras {real} analytic {analytic} {status}')


if __name__ == '__main__':
  main()
