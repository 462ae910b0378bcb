"""A process that has imported TensorFlow and the framework once and forks a
fresh child per command line (tests/cli.py's `run`).

Each child starts as `python train_and_eval.py ...` or `python -m evaluation
...` would, minus the ~5 CPU-seconds of imports: TensorFlow's runtime is not
initialised here (no eager context, no thread pools; only numpy's BLAS
thread, which is fork-safe), the entry points themselves (their absl flags)
are not imported, and a child's stdout and stderr are files the caller reads.

Protocol, one JSON line each way on stdin / stdout: {"args": [...], "stdout":
path, "stderr": path, "env": {...}} -> {"pid": child} then {"status": exit status, or
-signal}. EOF on stdin ends the zygote.
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _preload():
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # What the two entry points import, not the entry points (their flags).
  # pylint: disable=g-import-not-at-top,unused-import
  import tensorflow  # noqa: F401
  import run_lib  # noqa: F401
  from evaluation import campaign, hub_trunk, knn_monitor, protocols  # noqa: F401
  from evaluation import results, trunks  # noqa: F401
  from self_supervision import export, trainer  # noqa: F401
  from training import checkpoints, preemption, strategy  # noqa: F401


def _child(args, stdout, stderr, env):
  """Becomes `python <args>` in ROOT with environment `env`; never returns."""
  # pylint: disable=g-import-not-at-top
  import atexit
  import runpy
  import traceback
  status = 0
  try:
    os.environ.clear()
    os.environ.update(env)
    # sys.stdout / sys.stderr (and the handlers holding them) write to fds 1
    # and 2: pointing those at the files redirects every writer.
    os.dup2(os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
    os.dup2(os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
    if args[0] == "-m":
      sys.argv = [args[1]] + args[2:]  # run_module puts the file's path first
      runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
      sys.argv = list(args)
      runpy.run_path(args[0], run_name="__main__")
  except SystemExit as e:
    if e.code is None:
      status = 0
    elif isinstance(e.code, int):
      status = e.code
    else:
      print(e.code, file=sys.stderr)
      status = 1
  except BaseException:  # pylint: disable=broad-except
    traceback.print_exc()  # as the interpreter does for an uncaught exception
    status = 1
  try:
    atexit._run_exitfuncs()  # pylint: disable=protected-access
    sys.stdout.flush()
    sys.stderr.flush()
  finally:
    os._exit(status)  # pylint: disable=protected-access


def main():
  sys.path[0] = ROOT  # as `python train_and_eval.py` from ROOT has it
  os.chdir(ROOT)
  proto_in = os.fdopen(os.dup(0), "r")
  proto_out = os.fdopen(os.dup(1), "w", buffering=1)
  devnull = os.open(os.devnull, os.O_RDWR)
  os.dup2(devnull, 0)
  os.dup2(devnull, 1)  # stdout's buffer is flushed before each fork, to here
  _preload()
  proto_out.write(json.dumps({"ready": os.getpid()}) + "\n")
  for line in proto_in:
    request = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
      proto_in.close()
      proto_out.close()
      _child(request["args"], request["stdout"], request["stderr"], request["env"])
    proto_out.write(json.dumps({"pid": pid}) + "\n")
    _, wait_status = os.waitpid(pid, 0)
    status = os.waitstatus_to_exitcode(wait_status)
    proto_out.write(json.dumps({"status": status}) + "\n")


if __name__ == "__main__":
  main()
