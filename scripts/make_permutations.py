r"""Writes the jigsaw task's permutation set into self_supervision/data/.

  python scripts/make_permutations.py [--num=100] [--seed=0]

The stored file is what training uses; tests/self_supervision/
test_permutations.py regenerates it with the default arguments and checks that
nothing changed.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from self_supervision import permutations  # noqa: E402  pylint: disable=g-import-not-at-top


def main():
  parser = argparse.ArgumentParser(description="Writes a jigsaw permutation set.")
  parser.add_argument("--num", type=int,
                      default=permutations.DEFAULT_NUM_PERMUTATIONS)
  parser.add_argument("--seed", type=int, default=permutations.DEFAULT_SEED)
  args = parser.parse_args()
  perms = permutations.generate_permutations(args.num, seed=args.seed)
  os.makedirs(permutations.DATA_DIR, exist_ok=True)
  filename = permutations.path(args.num)
  permutations.save(perms, filename, args.seed)
  minimum, mean = permutations.distance_stats(perms)
  print(f"Wrote {filename}: {len(perms)} permutations, Hamming distance "
        f"min {minimum}, mean {mean:.3f}.")


if __name__ == "__main__":
  main()
