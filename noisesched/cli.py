"""Command line: parse, validate, call the library, print.

Exit status: 0 success; 2 bad input (one line naming the parameter); 1 a run that failed (nan or
inf, an adaptive solve out of steps, out of memory, a file that cannot be written); 130 Ctrl-C
and 143 SIGTERM, after which rerunning the same command resumes. ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import warnings

from ._interrupt import Terminated, handling_signals


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # `demo --d` is --d, not --debug or --distributed
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line, status 2, no usage dump
        self.exit(2, f"noisesched: error: {message}\n")


def _add_config(parser: argparse.ArgumentParser, help: str) -> None:
    """The config path, given as the positional argument or as ``--config``."""
    parser.add_argument("config", nargs="?", default=None, help=help)
    parser.add_argument("--config", dest="config_option", default=None, metavar="CONFIG",
                        help="the same, as an option")


def _add_resumable(parser: argparse.ArgumentParser, set_help: str, out_help: str, *,
                   restart: bool) -> None:
    """``--set``, ``--out``, ``--no-progress`` (and ``--restart``) of a command that resumes
    its work from its output folder."""
    parser.add_argument("--set", action="append", nargs="+", default=[],
                        metavar="SECTION.KEY=VALUE", help=set_help)
    parser.add_argument("--out", default=None,
                        help=f"output folder (default noisesched-out/<config name>); {out_help}")
    if restart:
        parser.add_argument("--restart", action="store_true",
                            help="ignore a checkpoint in the output folder and start afresh")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config_path(args) -> str:
    if (args.config is None) == (args.config_option is None):
        stray = [item for item in _overrides(args) if "=" not in item]
        hint = (f" ({stray[0]!r} follows --set, which reads every word after it as an "
                "override: put CONFIG before --set)" if stray and args.config is None else "")
        raise ValueError(f"{args.command} takes one config path (CONFIG or --config CONFIG); got "
                         + ("none" if args.config is None else "both") + hint)
    return args.config if args.config is not None else args.config_option


def _overrides(args) -> list[str]:
    """The ``--set`` items: several after one ``--set``, and ``--set`` repeated."""
    return [item for group in args.set for item in group]


def _build_parser() -> argparse.ArgumentParser:
    from .experiments.demo import DemoConfig

    parser = _Parser(prog="noisesched", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="do not keep compiled programs between runs (also "
                             "NOISESCHED_NO_COMPILE_CACHE=1; default: kept in "
                             "$NOISESCHED_CACHE_DIR or ~/.cache/noisesched/jax)")
    _add_distributed(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="GM two modes: VP/VE x constant/dilated, table and figure")
    defaults = DemoConfig()
    for name, kind in [("d", int), ("n", int), ("steps", int), ("p", float), ("m", float),
                       ("sigma", float), ("k", float), ("seed", int)]:
        demo.add_argument(f"--{name}", type=kind, default=getattr(defaults, name),
                          help=f"(default {getattr(defaults, name)})")
    demo.add_argument("--out", default="noisesched-out", help="output folder (default %(default)s)")

    run = sub.add_parser("run", help="run one experiment from a TOML config (or a results.json)")
    _add_config(run, "path to a .toml config, or a results.json to rerun")
    run.add_argument("--set", action="append", nargs="+", default=[],
                     metavar="SECTION.KEY=VALUE",
                     help="override config keys, e.g. --set model.d=1000 solver.steps=20 "
                          "(repeatable)")
    run.add_argument("--out", default=None,
                     help="output folder (default noisesched-out/<config name>)")

    fit = sub.add_parser("fit", help="learn a schedule (TOML config with a [fit] table), save it, "
                         "evaluate it on fresh keys")
    _add_config(fit, "path to a .toml fit config, or a fit's history.json")
    _add_resumable(fit, "override config keys (section.key=value) or fit keys (fit.key=value); "
                   "repeatable", "a checkpoint there is resumed", restart=True)

    train = sub.add_parser("train", help="train a network as a denoiser (TOML config with "
                           "[model], [network], [train]); use it as model.name = learned:OUT")
    _add_config(train, "path to a .toml train config, or a train.json")
    _add_resumable(train, "override config keys, e.g. --set train.steps=500 (repeatable)",
                   "a checkpoint there is resumed", restart=True)

    compare = sub.add_parser("compare", help="a table of models x schedules x step counts "
                             "(run config with a [compare] table)")
    _add_config(compare, "path to a .toml compare config")
    _add_resumable(compare, "override config keys, e.g. --set sample.n=2000 compare.steps=[10] "
                   "(repeatable)", "finished cells there are kept", restart=False)

    sweep = sub.add_parser("sweep", help="a grid of configurations (run config with a [sweep] "
                           "table), solved in one vmapped call per group of shapes, into a "
                           "Parquet table")
    _add_config(sweep, "path to a .toml run config with a [sweep] table")
    _add_resumable(sweep, "override config keys or sweep axes, e.g. --set model.d=2000 "
                   "sweep.model.p=[0.6,0.8] (repeatable)", "rows already there are kept",
                   restart=False)
    sweep.add_argument("--plot", action="store_true",
                       help="then draw the figures of the table into OUT/figures (on a "
                            "finished sweep: its rows are kept, nothing is solved)")
    sweep.add_argument("--shard", default=None, metavar="I/N",
                       help="solve only the I-th of N slices of the grid (0 <= I < N), the same "
                            "on every machine; join the folders with noisesched sweep merge")
    merge = sub.add_parser(_SWEEP_MERGE, help="join the tables of a sweep's shards (their --out "
                           "folders) into one, in grid order: noisesched sweep merge OUT1 OUT2 "
                           "... --out MERGED")
    merge.add_argument("folders", nargs="+", metavar="FOLDER", help="the shards' folders")
    merge.add_argument("--out", required=True, help="the merged folder")
    merge.add_argument("--allow-different-grids", action="store_true",
                       help="join folders of different grids (refused by default)")

    scaling = sub.add_parser("scaling", help="fewest steps N*(d) per schedule, with fitted slopes")
    _add_config(scaling, "path to a scaling .toml config")
    scaling.add_argument("--out", default=None,
                         help="output folder (default noisesched-out/<config name>)")

    export = sub.add_parser("export", help="a schedule card and the noise-level lists of "
                            "samplers (diffusers, k-diffusion, ComfyUI, CSV) from a run config")
    _add_config(export, "path to a .toml run config ([model], [interpolant], [schedule], "
                "[solver]); optional with --card")
    export.add_argument("--set", action="append", nargs="+", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="override config keys, e.g. --set schedule.name=karras (repeatable)")
    export.add_argument("--method", default=None,
                        help="a schedule method of noisesched.methods (edm, log_snr, arctan, "
                             "...) in place of the config's [schedule]")
    export.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of --method, e.g. --option sigma_max=80 (repeatable)")
    export.add_argument("--steps", type=int, default=None,
                        help="N, the number of steps (default: the config's solver.steps)")
    export.add_argument("--format", dest="formats", action="extend", nargs="+", default=None,
                        metavar="FORMAT", help="one or several of diffusers, diffusers_euler, "
                        "k_diffusion, comfyui, csv (default: all)")
    export.add_argument("--sigma-max", type=float, default=None,
                        help="a finite first level (> sigma_1) in place of sigma_0 = inf, which "
                             "samplers cannot start from; recorded in the card")
    export.add_argument("--card", default=None,
                        help="export a card.json again (with CONFIG: checked against its d)")
    export.add_argument("--out", default=None,
                        help="output folder (default noisesched-out/<config name>/export)")

    repro = sub.add_parser("reproduce", help="every experiment at CPU sizes, with a report")
    repro.add_argument("--configs", default="configs",
                       help="folder of configs (default %(default)s)")
    repro.add_argument("--out", default="noisesched-out/reproduce",
                       help="output folder (default %(default)s)")

    for p in sub.choices.values():
        # SUPPRESS: given before the command, the flag is not reset by the command's parser
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)
        p.add_argument("--no-compile-cache", action="store_true", default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)
        _add_distributed(p, shown=p is sweep)  # after the command too
    return parser


#: ``noisesched sweep merge ...``: a command of its own (``sweep`` takes a config path).
_SWEEP_MERGE = "sweep merge"
#: Options before the command that take a value.
_VALUED = ("--coordinator", "--num-processes", "--process-id")


def _add_distributed(parser: argparse.ArgumentParser, *, top: bool = False,
                     shown: bool = True) -> None:
    """``--distributed`` and the coordinator of a manual launch, before the command (``top``)
    or after it (``default=SUPPRESS``: not reset by the command's parser)."""
    default = None if top else argparse.SUPPRESS

    def help(text):
        return text if shown else argparse.SUPPRESS

    parser.add_argument("--distributed", action="store_true",
                        default=False if default is None else default,
                        help=help("call jax.distributed.initialize() first: one process per host "
                                  "(or per device), found from SLURM or Open MPI, or given by "
                                  "--coordinator, --num-processes and --process-id"))
    parser.add_argument("--coordinator", default=default, metavar="HOST:PORT",
                        help=help("the address of process 0 (implies --distributed; also "
                                  "JAX_COORDINATOR_ADDRESS)"))
    parser.add_argument("--num-processes", type=int, default=default, metavar="N",
                        help=help("the number of processes (implies --distributed)"))
    parser.add_argument("--process-id", type=int, default=default, metavar="I",
                        help=help("this process, 0 <= I < N (implies --distributed)"))


def _command_words(argv: list[str]) -> list[str]:
    """``argv`` with ``sweep merge`` (the first two words after the options before the
    command) as the one command ``_SWEEP_MERGE``."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in _VALUED else 1
    if argv[i:i + 2] == ["sweep", "merge"]:
        return [*argv[:i], _SWEEP_MERGE, *argv[i + 2:]]
    return argv


def _initialize_distributed(args) -> None:
    """``jax.distributed.initialize`` with the coordinator, number of processes and process id
    given; JAX finds those not given from SLURM, Open MPI or ``JAX_COORDINATOR_ADDRESS``."""
    import jax

    if args.coordinator is not None:
        host, _, port = args.coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--coordinator must be HOST:PORT with a port in [1, 65535]; got "
                             f"{args.coordinator!r}")
    if args.num_processes is not None and args.num_processes < 1:
        raise ValueError(f"--num-processes must be an integer >= 1; got {args.num_processes}")
    if args.process_id is not None and not (
            0 <= args.process_id < (args.num_processes or args.process_id + 1)):
        raise ValueError(f"--process-id must be in [0, --num-processes) = [0, "
                         f"{args.num_processes}); got {args.process_id}")
    try:
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    except ValueError as err:
        raise ValueError(f"--distributed: {err} (give --coordinator HOST:PORT, --num-processes N "
                         "and --process-id I, or run under SLURM or Open MPI)") from None


def compile_cache_dir() -> str:
    """Where the CLI keeps compiled programs: ``$NOISESCHED_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/noisesched/jax``, else ``~/.cache/noisesched/jax``."""
    if os.environ.get("NOISESCHED_CACHE_DIR"):
        return os.environ["NOISESCHED_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "noisesched", "jax")


def _enable_compile_cache() -> None:
    """JAX's persistent compilation cache: a second run of the same sizes skips compilation."""
    import jax

    jax.config.update("jax_compilation_cache_dir", compile_cache_dir())
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


@contextlib.contextmanager
def _working_in(out, command: str):
    """Hold the output folder ``out`` for this command (``noisesched._output.locked``); in a
    multi-process run only process 0, which writes, holds it."""
    import jax

    from ._output import locked

    if jax.process_index() != 0:
        yield
        return
    with locked(out, command):
        yield


def _default_out(name: str, suffix: str = "", where: str = "name") -> str:
    """``noisesched-out/NAME`` (a config's name is checked to be one plain folder name)."""
    from .experiments.config import check_name

    check_name(name, where)
    return f"noisesched-out/{name}{suffix}"


def _demo(args) -> None:
    from .experiments.demo import DemoConfig, run_demo

    config = DemoConfig(d=args.d, n=args.n, steps=args.steps, p=args.p, m=args.m,
                        sigma=args.sigma, k=args.k, seed=args.seed)
    config.validate()
    with _working_in(args.out, "demo"):
        run_demo(config, args.out)


def _run(args) -> None:
    from .experiments.config import load
    from .experiments.run import run_experiment

    config = load(_config_path(args), _overrides(args))
    out = args.out or _default_out(config.name)
    with _working_in(out, "run"):
        run_experiment(config, out)
    print(f"wrote {out}/results.json")


def _fit(args) -> None:
    from pathlib import Path

    from .experiments.fit import load_fit, run_fit

    config, settings = load_fit(_config_path(args), _overrides(args))
    out = Path(args.out or _default_out(config.name))
    with _working_in(out, "fit"):
        if args.restart:
            _remove_checkpoint(out)
        run_fit(config, settings, out, progress=not args.no_progress)
    print(f"wrote {out}/schedule.json, history.json and schedules.png; use it with "
          f"noisesched run CONFIG --set schedule.name=@{out}/schedule.json")


def _remove_checkpoint(out) -> None:
    """``--restart``: the checkpoint a command resumes from, its arrays and its history."""
    from .learning import checkpoint_files

    for path in checkpoint_files(out / "checkpoint.eqx"):
        path.unlink(missing_ok=True)


def _train(args) -> None:
    from pathlib import Path

    from .experiments.train import load_train, run_train

    config = load_train(_config_path(args), _overrides(args))
    out = Path(args.out or _default_out(config.name))
    with _working_in(out, "train"):
        if args.restart:
            _remove_checkpoint(out)
        run_train(config, out, progress=not args.no_progress)
    print(f"wrote {out}/denoiser.eqx, denoiser.json and train.json; sample it with "
          f"noisesched run CONFIG --set model.name=learned:{out}")


def _compare(args) -> None:
    from .experiments.compare import load_compare, run_compare

    name, settings, cells = load_compare(_config_path(args), _overrides(args))
    out = args.out or _default_out(name)
    with _working_in(out, "compare"):
        run_compare(name, settings, cells, out, progress=not args.no_progress)
    print(f"wrote {out}/compare.md, compare.json and compare.png")


def _sweep(args) -> None:
    from .experiments.sweep import check_sweep_folder, load_sweep
    from .sweeps import Shard, sweep

    shard = Shard.of(args.shard, "--shard") if args.shard is not None else None
    base, grid, settings = load_sweep(_config_path(args), _overrides(args))
    out = args.out or _default_out(base.name)
    with _working_in(out, "sweep"):
        check_sweep_folder(out)
        result = sweep(base, grid, out=out, shard=shard, progress=not args.no_progress,
                       **settings)
        print(result.summary())
        if args.plot and result.path is not None:
            from .sweeps import NothingToPlot, plot

            try:
                print(f"wrote {len(plot(out))} figure(s) into {out}/figures")
            except NothingToPlot as err:
                print(f"no figures: {err}")


def _sweep_merge(args) -> None:
    from .experiments.sweep import check_sweep_folder
    from .sweeps import merge

    with _working_in(args.out, "sweep merge"):
        check_sweep_folder(args.out)
        print(merge(args.folders, args.out,
                    allow_different_grids=args.allow_different_grids).summary())


def _scaling(args) -> None:
    from .experiments.scaling import load_scaling, run_scaling

    config = load_scaling(_config_path(args))
    out = args.out or _default_out(config.name)
    with _working_in(out, "scaling"):
        run_scaling(config, out)
    print(f"wrote {out}/scaling.json and {out}/scaling.png")


def _export_source(path: str, overrides: list[str], config) -> dict:
    """Where the config's schedule comes from: a built-in schedule or learnable family with
    its options, or a learned schedule file (``schedule.name = "@path"``)."""
    import hashlib
    from pathlib import Path

    from .experiments.config import merge, parse_overrides, read_file
    from .methods import METHODS

    raw = merge(read_file(path), parse_overrides(overrides)).get("schedule", {})
    name = raw.get("name") if isinstance(raw, dict) else None
    resolved = config.to_dict()["schedule"]
    options = {k: v for k, v in resolved.items() if k != "name"}
    if isinstance(name, str) and name.startswith("@"):
        file = Path(name[1:])
        return {"type": "schedule_file", "path": str(file), "family": resolved["name"],
                "sha256": hashlib.sha256(file.read_bytes()).hexdigest(), "options": options}
    if resolved["name"] in METHODS:
        return {"type": "method", "name": resolved["name"], "options": options,
                "model": config.to_dict()["model"]}
    return {"type": "schedule", "name": resolved["name"], "options": options}


def _export(args) -> None:
    from pathlib import Path

    import jax

    from ._output import check_output_folder, staged
    from .cards import export_card, load_card
    from .experiments.config import load

    given = args.config if args.config is not None else args.config_option
    if args.card is not None:
        if args.config is not None and args.config_option is not None:
            _config_path(args)  # refuses both
        extra = [flag for flag, value in (("--method", args.method), ("--option", args.option),
                                          ("--steps", args.steps), ("--set", args.set))
                 if value]
        if extra:
            raise ValueError(f"--card exports a card as it is and takes no {', '.join(extra)} "
                             "(make a new card from a config instead)")
        d = load(given).d if given is not None else None
        card = load_card(args.card, d=d)
        out = args.out or _default_out(Path(args.card).stem, "/export",
                                       "the card's file name (or give --out)")
    else:
        if given is None:
            raise ValueError("export takes a config path (CONFIG or --config CONFIG) or a card "
                             "(--card CARD); got neither")
        path = _config_path(args)
        if args.option and args.method is None:
            raise ValueError("--option sets an option of --method; give --method NAME")
        overrides = _overrides(args)
        if args.steps is not None:  # a method in [schedule] is made for these steps too
            overrides = [*overrides, f"solver.steps={args.steps}"]
        config = load(path, overrides)
        steps = config.solver.steps
        with jax.enable_x64(True):  # the levels in float64, whatever the sampling dtype
            card = _export_card(args, path, config, steps)
        out = args.out or _default_out(config.name, "/export")
    with _working_in(out, "export"):
        check_output_folder(out)
        with staged(out) as stage:  # the folder holds exactly this export's files
            paths = export_card(card, stage, args.formats, sigma_max=args.sigma_max)
    print(f"wrote {out}/: " + ", ".join(p.name for p in paths.values()))


def _export_card(args, path: str, config, steps: int):
    """The card of the config's schedule, or of ``--method`` with its ``--option``s."""
    from . import methods
    from .cards import make_card
    from .experiments.config import parse_value

    model, interp, schedule = config.build()
    if args.method is not None:
        options = {}
        for item in args.option:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--option takes KEY=VALUE; got {item!r}")
            options[key.strip()] = parse_value(raw)
        schedule = methods.make(args.method, model, interp, steps, **options)
        source = {"type": "method", "name": args.method, "options": options,
                  "model": config.to_dict()["model"]}
    else:
        source = _export_source(path, _overrides(args), config)
    return make_card(schedule, interp, steps, solver=config.solver.name, source=source)


def _reproduce(args) -> None:
    from .experiments.reproduce import run_reproduce

    with _working_in(args.out, "reproduce"):
        run_reproduce(args.configs, args.out)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"noisesched: warning: {message}", file=sys.stderr)


def _failure(err: BaseException) -> tuple[int, str] | None:
    """(exit status, one line) for an error a user can act on; None for a bug (traceback)."""
    import jax

    from .sampling import MaxStepsReached

    if isinstance(err, KeyboardInterrupt):
        name = "terminated" if isinstance(err, Terminated) else "interrupted"
        return (143 if isinstance(err, Terminated) else 130,
                f"{name}: no partial result was written; rerun the same command to resume from "
                "the work already finished")
    if isinstance(err, ValueError):
        return 2, f"error: {err}"
    if isinstance(err, FloatingPointError | MaxStepsReached):
        return 1, f"error: {err}"
    if isinstance(err, MemoryError) or (isinstance(err, jax.errors.JaxRuntimeError) and (
            "RESOURCE_EXHAUSTED" in str(err) or "out of memory" in str(err).lower())):
        # XLA reports an allocation that failed as RESOURCE_EXHAUSTED, or as INTERNAL with
        # "out of memory" when it fails inside a runtime call
        return 1, ("error: out of memory; use fewer samples per solve (run: "
                   "--set sample.chunk_size=…, and a rerun resumes from the finished chunks; "
                   "demo: --n; fit and train: their batch) or a smaller d")
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return 1, ("error: no space left for the output (disk full or quota reached): free "
                   "some and rerun; finished chunks and checkpoints are kept")
    if isinstance(err, OSError) and err.filename is not None:
        return 1, f"error: cannot write or read {err.filename!r}: {err.strerror or err}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(_command_words(sys.argv[1:] if argv is None else argv))
    commands = {"demo": _demo, "run": _run, "fit": _fit, "train": _train, "compare": _compare,
                "sweep": _sweep, _SWEEP_MERGE: _sweep_merge, "scaling": _scaling,
                "export": _export, "reproduce": _reproduce}
    try:
        with handling_signals():
            _command(commands[args.command], args)
    except BaseException as err:
        failure = _failure(err)
        if failure is None or args.debug:
            raise
        status, line = failure
        print(f"noisesched: {line}", file=sys.stderr)
        return status
    return 0


def _command(command, args) -> None:
    """``command(args)`` in the process setup the options ask for (distributed runtime,
    compilation cache), with warnings printed as one line each."""
    if args.distributed or any(value is not None for value in (
            args.coordinator, args.num_processes, args.process_id)):
        _initialize_distributed(args)
    if not (args.no_compile_cache or os.environ.get("NOISESCHED_NO_COMPILE_CACHE")):
        _enable_compile_cache()
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        command(args)


def entry() -> None:
    """The ``noisesched`` program: ``main``, then exit with its status. After Ctrl-C or
    SIGTERM (every file already cleaned up by then) the process ends at once, without the
    interpreter's shutdown: the interrupted computation may still run in the runtime's threads,
    and tearing them down under it can crash or wait for it."""
    status = main()
    if status in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    entry()
