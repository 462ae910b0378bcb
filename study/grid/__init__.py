r"""The study's grid: every run of the paper's tables and figures, as data.

  python -m study.grid write            # (re)writes the Table 1 configs
  python -m study.grid check            # exit 1 if a committed one differs
  python -m study.grid grids            # the grid names scripts/sweep.sh accepts
  python -m study.grid plan table1:rotation --root /runs
  python -m study.grid cost [--tflops 100]   # compute of Table 1, 2

  cells.py    the data: trunks, the paper's tasks and numbers, Table 2, the
              miniature's choices
  grids.py    a sweep run (`Run`) and every named grid of runs
  configs.py  the Table 1 config writer and its check
  plan.py     what each run of a grid still has to do (done, partial, new)
  cost.py     the compute of Table 1 and Table 2 from models/flops.py

Standard library only (cost.py reads models/flops.py when asked), so planning
a sweep needs no TensorFlow.
"""
