"""Model zoo: the trunks of the paper's Table 1 at any widening factor.

`get_model(name, width, ...)` is the single entry point; see models/registry.py.
"""
from models.registry import MODEL_NAMES
from models.registry import get_model
