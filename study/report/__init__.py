r"""A sweep's report: the paper's tables and figures, rebuilt from its runs.

  python -m study.report ROOT [--out DIR] [--title T] [--no-gallery] [--copy-runs]

Reads, for every run directory under the root (any depth; one that holds
results.json), only results.json, run.json and operative_config.gin, plus the
run's feature cache for the nearest-neighbour gallery, and writes
<out>/report.md (out defaults to the root) with PNG figures in <out>/figures/;
--copy-runs also copies those three files of every run to <out>/runs/<run>/.
Its first lines give the controls (pixels, each architecture's random trunk,
the supervised ceiling, ± one standard error), how many trained cells beat
both and each cell's margin, and flag a run made on uncommitted code; a
"Claims" section then judges the paper's four claims from the runs present.
Neither report.md nor the copies name a path of the machine (paths.py).
Every number in a table links to its run's appendix entry, which lists the
workdir, command and evaluation entries that reproduce it. A missing cell
prints "–": nothing is filled in or interpolated. Run ids follow the runs'
paths relative to the root, so they are the same on every rebuild; the
report names paths relative to itself or the checkout, never the machine's.

  runs.py      reading the runs, picking the entries a table or figure shows
  tables.py    the Table 1 layout, Table 2, label-free model selection
  figures.py   Figures 2 to 8 (Fig. 6 and the MLP curves in claims.py)
  baselines.py the controls of any trained entry a table or figure shows
  headline.py  the first lines: controls, the count, margins, uncommitted code
  paper_claims.py  the four claims, judged or said to be undecidable and why
  claims.py    Fig. 6 on both axes, the MLP fits' curves and convergence
  paths.py     the machine's paths replaced by <checkout>, <root>, <path>/name
  gallery.py   nearest neighbours of each task's best run (TensorFlow)
  markdown.py  report.md: the sections, the appendix, build_report

A task the grid has never heard of gets a column (Table 1) or row (Table 2)
of its own after the known ones, under its own name. TensorFlow is imported
only by the gallery (to read images and search neighbours).
"""
