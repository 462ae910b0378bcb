"""The jigsaw task's fixed set of tile permutations (docs/protocol.md §2, Jigsaw).

As in Noroozi & Favaro (2016), the set is chosen greedily: start from one
permutation, then repeatedly add the permutation whose minimum Hamming distance
to those already chosen is largest. Ties (there are many) are broken at random,
and the first permutation is random too; both draws come from
`numpy.random.RandomState(seed)`, whose stream numpy keeps fixed across
versions, so a seed always gives the same set. The set the study uses is
stored beside this file (made by `scripts/make_permutations.py`) and is never
downloaded; a test regenerates it and checks it is unchanged.
"""
import os

import numpy as np

NUM_POSITIONS = 9  # a 3x3 grid of tiles
DEFAULT_NUM_PERMUTATIONS = 100
DEFAULT_SEED = 0
DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def all_permutations(n: int) -> np.ndarray:
  """Every permutation of range(n) in lexicographic order: int8 [n!, n].

  Row order equals `itertools.permutations(range(n))`, built blockwise in
  numpy because the Python iterator takes seconds for n = 9.
  """
  if not isinstance(n, int) or not 1 <= n <= 10:
    raise ValueError(f"n must be an int in 1..10 (n! rows are materialised); "
                     f"got {n!r}.")
  perms = np.zeros((1, 0), np.int8)
  for k in range(1, n + 1):
    blocks = []
    for first in range(k):
      rest = np.array([x for x in range(k) if x != first], np.int8)
      # Lexicographic order of the permutations starting with `first` is the
      # lexicographic order of range(k - 1), relabelled onto `rest`.
      blocks.append(np.concatenate(
          [np.full((len(perms), 1), first, np.int8), rest[perms]], axis=1))
    perms = np.concatenate(blocks)
  return perms


def generate_permutations(num: int = DEFAULT_NUM_PERMUTATIONS,
                          num_positions: int = NUM_POSITIONS,
                          seed: int = DEFAULT_SEED) -> np.ndarray:
  """Greedy maximal-minimum-Hamming-distance set: int [num, num_positions].

  Row i is a permutation of range(num_positions); rows are distinct and in
  the order they were chosen.
  """
  candidates = all_permutations(num_positions)
  if not isinstance(num, int) or not 1 <= num <= len(candidates):
    raise ValueError(f"num must be an int in 1..{len(candidates)} (the number "
                     f"of permutations of {num_positions}); got {num!r}.")
  rng = np.random.RandomState(seed)
  chosen = [rng.randint(len(candidates))]
  # Minimum Hamming distance of every candidate to the chosen set; chosen ones
  # sit at 0 and so are never picked again.
  min_distance = (candidates != candidates[chosen[0]]).sum(axis=1)
  for _ in range(num - 1):
    ties = np.flatnonzero(min_distance == min_distance.max())
    pick = ties[rng.randint(len(ties))]
    chosen.append(pick)
    min_distance = np.minimum(
        min_distance, (candidates != candidates[pick]).sum(axis=1))
  return candidates[chosen].astype(np.int32)


def hamming_distances(perms: np.ndarray) -> np.ndarray:
  """Pairwise Hamming distances of [N, P] permutations: int [N, N]."""
  perms = np.asarray(perms)
  return (perms[:, None, :] != perms[None, :, :]).sum(axis=-1)


def distance_stats(perms: np.ndarray):
  """(minimum, mean) Hamming distance over the distinct pairs of [N, P], N >= 2."""
  distances = hamming_distances(perms)
  pairs = distances[np.triu_indices(len(distances), k=1)]
  if not pairs.size:
    raise ValueError("distance_stats needs at least two permutations.")
  return int(pairs.min()), float(pairs.mean())


def path(num: int = DEFAULT_NUM_PERMUTATIONS) -> str:
  """Where the stored set of `num` permutations lives."""
  return os.path.join(DATA_DIR, f"permutations_{num}.txt")


def save(perms: np.ndarray, filename: str, seed: int) -> None:
  """Writes [N, P] permutations as text, one per line, with a provenance header."""
  header = (f"{len(perms)} permutations of {perms.shape[1]} tile positions, "
            f"greedy maximal minimum Hamming distance, seed {seed}.\n"
            f"Made by scripts/make_permutations.py; row i is jigsaw class i.")
  np.savetxt(filename, perms, fmt="%d", header=header)


def load(num: int = DEFAULT_NUM_PERMUTATIONS) -> np.ndarray:
  """The stored set of `num` permutations: int32 [num, 9].

  Raises:
    FileNotFoundError: no set of that size is stored (the message says how to
      make one).
    ValueError: the stored file is not a set of distinct permutations.
  """
  filename = path(num)
  if not os.path.isfile(filename):
    raise FileNotFoundError(
        f"No stored set of {num} jigsaw permutations at {filename}. Make it with "
        f"`python scripts/make_permutations.py --num={num}` (or use "
        f"{DEFAULT_NUM_PERMUTATIONS}).")
  perms = np.loadtxt(filename, dtype=np.int32, ndmin=2)
  identity = np.arange(perms.shape[1])
  if (perms.shape[0] != num
      or not (np.sort(perms, axis=1) == identity).all()
      or len(np.unique(perms, axis=0)) != num):
    raise ValueError(f"{filename} must hold {num} distinct permutations, one "
                     f"per line; regenerate it with scripts/make_permutations.py.")
  return perms
