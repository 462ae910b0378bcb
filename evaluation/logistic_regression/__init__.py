"""Multinomial logistic regression on frozen features, fitted by full-batch L-BFGS.

This is the Table-1 protocol of the paper (docs/protocol.md §5): representations of the
training images are computed once, a linear softmax classifier is fitted on
them, and the L2 strength is chosen on the held-out split.

  features.py     the training features behind one interface: in memory, or
                  `ChunkedFeatures` streamed from host memory or disk; their
                  standardisation, covariance and loss-and-gradient sums.
  solver.py       the objective, its preconditioned coordinates and `fit`,
                  `predict_logits`, `accuracy`.
  grid_search.py  `grid_search` over `DEFAULT_L2_GRID` with warm starts.
"""

from evaluation.logistic_regression.features import ChunkedFeatures
from evaluation.logistic_regression.features import default_block_rows
from evaluation.logistic_regression.features import Features
from evaluation.logistic_regression.grid_search import DEFAULT_L2_GRID
from evaluation.logistic_regression.grid_search import grid_search
from evaluation.logistic_regression.solver import accuracy
from evaluation.logistic_regression.solver import fit
from evaluation.logistic_regression.solver import LinearModel
from evaluation.logistic_regression.solver import PRECONDITIONER_CURVATURE
from evaluation.logistic_regression.solver import predict_logits

__all__ = [
    "ChunkedFeatures", "DEFAULT_L2_GRID", "Features", "LinearModel",
    "PRECONDITIONER_CURVATURE", "accuracy", "default_block_rows", "fit",
    "grid_search", "predict_logits",
]
