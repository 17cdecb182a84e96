"""Cold and warm start of ``noisesched run`` with JAX's persistent compilation cache.

    python benchmarks/compile_cache.py [--config configs/gm_vp_dilated.toml] \
        [--set sample.n=1024 ...]

Runs the same command three times in fresh processes: with an empty cache folder (cold), again
with the folder it filled (warm), and with ``--no-compile-cache``. Prints the wall time of each
process and the solve time it reports (which includes compilation), and writes a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from noisesched.experiments.io import environment, write_json

HERE = Path(__file__).resolve().parent


def run_once(config: str, overrides: list[str], cache: str, out: str, extra=()) -> dict:
    cmd = [sys.executable, "-m", "noisesched.cli", "run", config, "--out", out, *extra]
    for item in overrides:
        cmd += ["--set", item]
    env = dict(os.environ, NOISESCHED_CACHE_DIR=cache)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    wall = time.perf_counter() - start
    timings = json.loads((Path(out) / "results.json").read_text())["timings"]
    return {"wall_seconds": wall, "solve_seconds_with_compile": timings[
        "solve_seconds_with_compile"], "total_seconds": timings["total_seconds"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/gm_vp_dilated.toml")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--out", default=str(HERE / "results" / "compile_cache.json"))
    args = parser.parse_args(argv)
    overrides = args.overrides or ["sample.n=1024", "output.figures=false"]
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache")
        rows = {
            "cold": run_once(args.config, overrides, cache, os.path.join(tmp, "a")),
            "warm": run_once(args.config, overrides, cache, os.path.join(tmp, "b")),
            "no cache": run_once(args.config, overrides, cache, os.path.join(tmp, "c"),
                                 ["--no-compile-cache"]),
        }
        files = sum(len(f) for _, _, f in os.walk(cache))
    write_json(args.out, {"config": args.config, "overrides": overrides, "runs": rows,
                          "cache_files": files, "environment": environment()})
    print(f"`noisesched run {args.config} " + " ".join(f"--set {o}" for o in overrides) + "`")
    print()
    print("| start | process wall time (s) | solve incl. compile (s) |")
    print("|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['wall_seconds']:.2f} | {r['solve_seconds_with_compile']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
