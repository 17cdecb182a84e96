"""Every GPU measurement of the benchmark suite in one run of a few minutes.

    python benchmarks/gpu_check.py [--smoke]

1. Solves (GM and CW, VP-dilated, N = 100 Euler steps, float32) at d × n = 10^5 × 4096 and
   10^6 × 512: fused, diffrax and naive per-step loop, against the two-pass floor at the
   measured copy bandwidth (benchmarks/perf.py).
2. One gradient step of schedule learning against N, with and without checkpointing.
3. float32 against float64 at d = 10^6 (benchmarks/precision.py).
4. A streamed summary of a batch larger than the device's memory (automatic chunks).
5. Row blocks and the Pallas kernel (benchmarks/row_blocks.py) at d × n = 10^4 × 16384 and
   10^5 × 1024, N = 100: the kernel against the per-step floor (the goal: ≤ 0.3×).
6. A sweep as one compiled call against a loop of single runs (benchmarks/sweep_vmap.py): 64
   GM configurations at d = 10^3, n = 256, N = 100 (the goal: ≥ 8× on the solves), and at
   d = 10^4.

Writes ``benchmarks/results/gpu_check_<device>.json`` (and a copy under ``$OUT`` when that is
set) and prints the tables. ``--smoke`` runs the same code at CPU sizes in a few seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import perf  # noqa: E402
import precision  # noqa: E402
import row_blocks  # noqa: E402
import sweep_vmap  # noqa: E402

from noisesched import streaming  # noqa: E402
from noisesched.experiments.io import environment, write_json  # noqa: E402

SIZES = {"full": {"solves": [(100_000, 4_096), (1_000_000, 512)], "steps": 100, "repeats": 5,
                  "naive_max": 10**9,
                  "grad": {"d": 100_000, "n": 1_024, "steps": [50, 100, 200, 400]},
                  "precision": {"d": 1_000_000, "n": 1_024, "chunk": 512},
                  "streamed": {"d": 1_000_000, "n": 16_384},
                  "row_blocks": [(10_000, 16_384), (100_000, 1_024)],
                  "sweep": [{"configs": 64, "d": 1_000, "n": 256, "steps": 100},
                            {"configs": 64, "d": 10_000, "n": 256, "steps": 100}]},
         "smoke": {"solves": [(2_000, 64)], "steps": 10, "repeats": 2, "naive_max": 10**6,
                   "grad": {"d": 1_000, "n": 32, "steps": [10, 20]},
                   "precision": {"d": 2_000, "n": 64, "chunk": 32},
                   "streamed": {"d": 2_000, "n": 256},
                   "row_blocks": [(1_000, 64)],
                   "sweep": [{"configs": 4, "d": 200, "n": 16, "steps": 5}]}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU sizes, a few seconds")
    args = parser.parse_args(argv)
    size = SIZES["smoke" if args.smoke else "full"]
    start = time.perf_counter()
    perf.PRESETS["gpu_check"] = {"sizes": size["solves"], "steps": size["steps"],
                                 "repeats": size["repeats"], "naive_max": size["naive_max"],
                                 "grad": size["grad"]}
    result = perf.run_suite("gpu_check", jnp.dtype("float32"))
    p = size["precision"]
    result["precision"] = [
        precision.compare(m, kind, sched, p["d"], p["n"], 100, p["chunk"])
        for m, kind, sched in precision.CASES if not args.smoke or m == "gm"]
    print(precision.markdown(result["precision"]))
    s = size["streamed"]
    model, interp, sched = perf.setup("gm", s["d"])
    t0 = time.perf_counter()
    streamed = streaming.sample_summary(model, interp, sched, jax.random.PRNGKey(0), s["n"],
                                        steps=size["steps"], method="scan", dtype=jnp.float32)
    result["streamed"] = {"d": s["d"], "n": s["n"], "chunk_size": streamed.chunk_size,
                          "metrics": streamed.metrics, "seconds": time.perf_counter() - t0,
                          "state_bytes": s["d"] * s["n"] * 4}
    print(f"streamed {s['n']} x {s['d']}: chunks of {streamed.chunk_size} rows, "
          f"{result['streamed']['seconds']:.1f} s, {streamed.metrics}")
    try:  # a kernel that fails to lower must not cost the rest of the run
        result["row_blocks"] = row_blocks.run(size["row_blocks"], size["steps"],
                                              size["repeats"])
        print(row_blocks.markdown(result["row_blocks"]))
    except Exception as error:  # noqa: BLE001 - recorded in the results
        result["row_blocks"] = {"error": f"{type(error).__name__}: {error}"}
        print(f"row blocks failed: {result['row_blocks']['error']}", file=sys.stderr)
    result["sweep"] = []
    for sizes in size["sweep"]:
        measured = sweep_vmap.measure(**sizes, repeats=size["repeats"])
        result["sweep"].append(measured)
        print(sweep_vmap.markdown(measured))
    result["total_seconds"] = time.perf_counter() - start
    result["environment"] = environment()
    print(perf.markdown(result))
    kind = re.sub(r"[^A-Za-z0-9]+", "_", perf.machine()["device_kind"]).strip("_").lower()
    name = f"gpu_check_{'smoke_' if args.smoke else ''}{kind}.json"
    paths = [HERE / "results" / name]
    if os.environ.get("OUT"):
        paths.append(Path(os.environ["OUT"]) / name)
    for path in paths:
        write_json(path, result)
        print(f"wrote {path}", file=sys.stderr)
    print(f"total {result['total_seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
