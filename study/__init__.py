"""The study as programs: the grid of runs and the report built from them.

  grid/    the study as data (every Table 1 cell, Table 2, the figures' runs,
           the Fashion-MNIST miniature), the Table 1 config writer, the sweep
           planner scripts/sweep.sh drives, the compute estimate;
           `python -m study.grid ...`
  report/  the paper's tables and figures rebuilt from a sweep's runs;
           `python -m study.report ROOT ...`

Both run from the checkout root, like `python -m evaluation`. Neither imports
TensorFlow, except the report's nearest-neighbour gallery.
"""
