"""`python -m study.report`: the report's command line (see study/report/__init__.py)."""
import argparse
import sys
from typing import Optional, Sequence

from study import report as report_package
from study.report import markdown
from study.report import runs


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m study.report", description=report_package.__doc__.split("\n")[0])
  parser.add_argument("root", help="the sweep root (run directories at any depth)")
  parser.add_argument("--out", help="where report.md and figures/ go (default: root)")
  parser.add_argument("--title", default="Sweep report")
  parser.add_argument("--no-gallery", action="store_true",
                      help="skip the nearest-neighbour gallery (no TensorFlow)")
  parser.add_argument("--copy-runs", action="store_true",
                      help="copy each run's results.json, run.json and "
                           "operative_config.gin to <out>/runs/ and link them, "
                           "their absolute paths replaced (<checkout>, <root>)")
  args = parser.parse_args(argv)
  try:
    summary = markdown.build_report(args.root, args.out, args.title,
                                    not args.no_gallery, args.copy_runs)
  except runs.NoRuns as e:
    print(f"study.report: {e}", file=sys.stderr)
    return 2
  print(f"study.report: read {summary['runs']} runs; wrote {summary['tables']} tables "
        f"and {len(summary['figures'])} figures; report: {summary['report']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
