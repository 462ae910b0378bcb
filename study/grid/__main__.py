"""`python -m study.grid`: the grid's command line (see study/grid/__init__.py)."""
import argparse
import os
import sys
from typing import Optional, Sequence

from study import grid as grid_package
from study.grid import cells
from study.grid import configs
from study.grid import cost
from study.grid import grids
from study.grid import plan


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m study.grid", description=grid_package.__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  sub.add_parser("write", help="(re)write the Table 1 configs")
  sub.add_parser("check", help="exit 1 if a committed Table 1 config differs")
  sub.add_parser("grids", help="list the grid names")
  c = sub.add_parser("cost", help="compute of Table 1 and Table 2")
  c.add_argument("--tflops", type=float, default=100.0,
                 help="sustained TFLOP/s of the machine a run gets")
  p = sub.add_parser("plan", help="state, name, workdir, command per run")
  p.add_argument("grid", help="a name `grids` lists, or table1:<task> / "
                              "miniature:<task> of any task with a config")
  p.add_argument("--root", required=True)
  p.add_argument("--python", default="python")
  args = parser.parse_args(argv)
  if args.command == "write":
    for path in configs.write():
      print(f"wrote {path}")
  elif args.command == "check":
    problems = configs.check()
    for problem in problems:
      print(problem, file=sys.stderr)
    if problems:
      print("Run `python -m study.grid write`.", file=sys.stderr)
      return 1
    print(f"{len(cells.table1_cells())} Table 1 configs match the generator.")
  elif args.command == "grids":
    for name, grid_runs in grids.GRIDS.items():
      print(f"{name}\t{len(grid_runs)} runs")
  elif args.command == "cost":
    print(cost.cost_table(args.tflops))
  else:
    for row in plan.plan(args.grid, os.path.abspath(args.root), args.python):
      print("\t".join(row))
  return 0


if __name__ == "__main__":
  sys.exit(main())
