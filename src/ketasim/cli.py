"""The ``ketasim`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .modelfile import DEFAULT_MODEL

DEMO_HELP = """\
The main job. (1) A 70 kg adult on the bundled default racemic model receives six
0.5 mg/kg (ketamine HCl) 40-minute infusions on days 0, 3, 7, 10, 14 and 17;
per-infusion Cmax, Tmax and AUC are printed. (2) The same course in 1 000 virtual
adults is compared with twice-weekly esketamine nasal spray (56 mg, then 84 mg) when
the esketamine model is bundled: a summary table is printed (each scenario's own
drug), and three files written: the per-session metrics of every patient
(ketasim-demo-metrics.nc), the curves of the first 100 patients (ketasim-demo.nc;
NetCDF-4, compressed, read with ks.open_results) and a figure (ketasim-demo.png).

example:
  ketasim demo --out-dir results/ --n 1000 --seed 1
"""


def _demo(args) -> int:
    import ketasim as ks

    model = ks.load_model(args.model)
    course = ks.six_infusion_course(salt=args.salt)
    days = [round(t / 24) for t in course.times]
    times = ks.grid("21 d", "1 min")
    ds = ks.simulate(
        model,
        course,
        times=times,
        subjects=ks.Subjects(covariates={"weight": args.weight}),
    )
    analyte = model.analyte_names[0]
    m = ks.metrics(ds, per="dose").sel(analyte=analyte).isel(subject=0)
    print(f"ketasim {ks.__version__} demo — model {model.id!r}: {model.name}")
    print(
        f"sampling: {model.sampling}; six infusions of 0.5 mg/kg {args.salt} over "
        f"40 min on days {', '.join(map(str, days))}; weight {args.weight:g} kg\n"
    )
    print(
        f"{'infusion':>8} {'day':>4} {'Cmax (ng/mL)':>13} {'Tmax (min)':>11} "
        f"{'AUC to next infusion (ng·h/mL)':>31}"
    )
    for i in range(len(days)):
        print(
            f"{i + 1:>8} {days[i]:>4} {float(m.cmax[i]):>13.1f} "
            f"{float(m.tmax[i]) * 60:>11.0f} {float(m.auc[i]):>31.1f}"
        )

    from ._subjects import has_iiv

    # a model without IIV gives typical patients, and says so below
    pop = ks.Population(args.n, seed=args.seed, iiv=has_iiv(model))
    t = ks.grid("21 d", "5 min")
    scenarios = [
        ks.Scenario("ketamine 6 x 0.5 mg/kg IV", model, course, population=pop, times=t)
    ]
    if "perez_ruixo_2021" in ks.list_models():
        spray = ks.esketamine_induction("84 mg", weeks=3, continuation_weeks=0)
        scenarios.append(
            ks.Scenario(
                "esketamine spray 56/84 mg",
                "perez_ruixo_2021",
                spray,
                population=ks.Population(args.n, seed=args.seed),
                times=t,
            )
        )
    typical = "" if pop.iiv else f"; {model.id} has no IIV: typical patients"
    print(f"\n{args.n} virtual adults (seed {args.seed}{typical}), days 0-21:")
    res = ks.run_scenarios(scenarios)
    print()
    print(ks.compare(res, per="session"))
    _demo_files(res, Path(args.out_dir), args.n)
    return 0


#: patients whose curves the demo writes (all patients' metrics are written)
DEMO_CURVES = 100


def _demo_files(res, out: Path, n: int) -> None:
    """The demo's files: per-session metrics of every patient, the curves of the
    first ``DEMO_CURVES`` (the 1 000 patients' curves are ~94 MB even compressed),
    and the figure; says what each holds and how big it is."""
    import ketasim as ks

    out.mkdir(parents=True, exist_ok=True)
    k = min(n, DEMO_CURVES)
    metrics = ks.save(ks.metrics(res, "session"), out / "ketasim-demo-metrics.nc")
    curves = ks.save(
        res.map(lambda ds: ds.isel(subject=slice(0, k))), out / "ketasim-demo.nc"
    )
    png = out / "ketasim-demo.png"
    import matplotlib

    matplotlib.use("Agg")
    from .plotting import plot_scenarios

    plot_scenarios(res).savefig(png, dpi=110)
    print("\nwrote (open the .nc files with ks.open_results(path)):")
    for path, what in (
        (metrics, f"per-session Cmax, Tmax, AUC and trough of all {n} patients"),
        (
            curves,
            f"concentration curves of {k} of the {n} patients (a subsample: "
            f"the first {k}), every 5 min",
        ),
        (png, "the figure"),
    ):
        print(f"  {path} ({_size(path)}): {what}")


def _size(path: Path) -> str:
    """A file's size, in kB or MB."""
    b = path.stat().st_size
    return f"{b / 1e6:.1f} MB" if b >= 1e6 else f"{b / 1e3:.0f} kB"


RUN_HELP = """\
Run the scenarios of a scenario file (TOML; see examples/*.toml), print the
comparison table (median [P5, P95] over patients per scenario and metric) and
optionally write the results and a figure.

examples:
  ketasim run examples/six_infusions_boosters.toml
  ketasim run examples/route_comparison.toml --out results.nc --plot fig.png
"""

SIMULATE_HELP = """\
One-off population simulation from flags: a single dose (or an every/count series)
of one route, summary of Cmax, Tmax and AUC per dose over patients.

examples:
  ketasim simulate --route iv --dose "0.5 mg/kg" --duration "40 min" \\
      --n 1000 --seed 1
  ketasim simulate --model domino --route intranasal --dose "56 mg" --every "3.5 d" \\
      --count 4 --n 500 --seed 2 --no-iiv --out nasal.nc
  ketasim simulate --model herd_2007 --dose "1 mg/kg" --duration "1 min" \\
      --age 6 --weight 20 --n 200

Patients are adults (18-65 y; height, BMI and weight drawn for adults) unless
--weight and --age fix them. A model estimated on children (herd_2007,
flint_2017, ...) needs --age and --weight: ketasim has no child size distribution.
A model without inter-individual variability (domino, ...: see ketasim models)
needs --no-iiv: its patients are typical ones, differing by covariates only.
"""


def _run(args) -> int:
    import ketasim as ks
    from ketasim.scenariofile import load_scenarios

    sf = load_scenarios(args.scenario_file)
    print(
        f"{sf.title}: {len(sf.scenarios)} scenario(s), {sf.times.size} output times "
        f"to {sf.times[-1] / 24:g} d"
    )
    ds = ks.run_scenarios(sf.scenarios)
    print()
    print(
        ks.compare(ds, per=sf.per, window=sf.window, above=sf.above, analyte=sf.analyte)
    )
    _write(ds, args)
    return 0


def _write(ds, args) -> None:
    if args.out:
        from .results import save

        path = save(ds, args.out)
        print(
            f"\nwrote {path} ({_size(path)}, compressed without loss; open it with "
            f"ks.open_results({str(path)!r}))"
        )
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        from .plotting import plot_bands, plot_scenarios
        from .results import ScenarioResults

        fig = plot_scenarios(ds) if isinstance(ds, ScenarioResults) else plot_bands(ds)
        fig.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")


def _simulate(args) -> int:
    import ketasim as ks
    from ketasim.units import to_hours

    model = ks.load_model(args.model)
    for flag in ("duration", "every", "horizon", "step"):
        _time_has_unit(getattr(args, flag), f"--{flag}")
    if args.duration and args.device is not None:
        raise _UsageError(
            "--device applies to nasal-spray devices, not to an infusion (--duration)"
        )
    if args.duration:
        dose = ks.Dose.infusion(
            args.dose, duration=args.duration, route=args.route, salt=args.salt
        )
    else:
        dose = ks.Dose.bolus(
            args.dose, route=args.route, salt=args.salt, device=args.device
        )
    if (args.every is None) != (args.count is None):
        raise _UsageError(
            "--every and --count go together: --every '3.5 d' --count "
            "4 gives four doses 3.5 days apart"
        )
    if args.count is not None and args.count < 1:
        raise _UsageError(
            f"--count must be a whole number >= 1 (the number of "
            f"doses); got {args.count}"
        )
    reg = (
        ks.Regimen.every(dose, interval=args.every, n=args.count)
        if args.every
        else ks.Regimen([dose])
    )
    horizon = to_hours(args.horizon, what="--horizon")
    if not horizon > 0:
        raise ValueError(
            f"--horizon must be a positive time such as '24 h'; got {args.horizon!r}"
        )
    last = reg.doses[-1].time + (dose.duration or 0.0)
    times = ks.grid(last + horizon, args.step)
    pop = _cli_population(model, args)
    ds = ks.simulate(model, reg, population=pop, times=times)
    typical = ", typical: no IIV" if args.no_iiv else ""
    print(
        f"model {model.id!r}, {len(reg)} dose(s) of {dose}, {args.n} patients "
        f"(seed {args.seed}{typical})\n"
    )
    if len(reg) > 1:
        print(ks.compare(ds, per="dose", window=0))
        print()
        print(ks.compare(ds, per="dose", window=-1))
    else:
        print(ks.compare(ds, per="course"))
    _write(ds, args)
    return 0


def _time_has_unit(value: str | None, flag: str) -> None:
    """A time flag with a unit: a bare number would be read as hours, which
    '--duration 40' (meant as minutes) silently gets wrong."""
    try:
        float(value)
    except (TypeError, ValueError):
        return  # None (not given) or text with a unit, read by to_hours
    raise _UsageError(
        f"{flag} {value!r} has no unit; write it with one, e.g. {flag} "
        f"'{value} min' or {flag} '{value} h'"
    )


def _cli_population(model, args):
    """The patients of ``ketasim simulate``: ``--weight`` and ``--age`` fix the
    weight (kg) and age (years) of every patient; what they leave out is drawn
    from the adult distribution of :class:`~ketasim.Population` (ages 18-65 y).
    A model estimated on children (its validity range for age ends at or below
    18 y) needs both: adults would be simulated, or children at adult weights."""
    import numpy as np

    import ketasim as ks

    from ._validate import ADULT_AGE, covariate_values

    table = {}
    for name, flag in (("weight", "--weight"), ("age", "--age")):
        value = getattr(args, name)
        if value is None:
            continue
        try:
            covariate_values(name, value)
        except ValueError as exc:
            raise ValueError(f"{flag} {value:g}: {exc}") from None
        table[name] = np.full(args.n, float(value))
    lo, hi = model.validity.get("age", (ADULT_AGE, np.inf))
    if hi <= ADULT_AGE and set(table) != {"weight", "age"}:
        rng = ", ".join(
            f"{k} {a:g}-{b:g} {'kg' if k == 'weight' else 'y'}"
            for k, (a, b) in model.validity.items()
            if k in ("age", "weight")
        )
        missing = " and ".join(
            f
            for n, f in (("age", "--age (years)"), ("weight", "--weight (kg)"))
            if n not in table
        )
        raise _UsageError(
            f"model {model.id!r} was estimated on children ({rng}), and without "
            f"--age and --weight ketasim simulate draws adults (or, with --age "
            f"alone, children at adult weights): pass {missing}, the same for "
            f"every patient, e.g. --age 6 --weight 20"
        )
    if "age" in table and "weight" not in table and args.age < ADULT_AGE:
        raise _UsageError(
            f"--age {args.age:g} is under {ADULT_AGE:g} y, and without --weight the "
            f"patients would get adult weights (drawn for adults): pass --weight "
            f"(kg) too"
        )
    from ._subjects import has_iiv

    if not args.no_iiv and not has_iiv(model):
        raise ValueError(
            f"model {model.id!r} has no inter-individual variability (its file "
            f"gives no omegas), so --n {args.n} would give {args.n} identical "
            f"patients apart from their covariates. Pass --no-iiv for typical "
            f"patients that differ by covariates only, or choose a model with "
            f"variability (ketasim models lists them)"
        )
    return ks.Population(
        args.n, seed=args.seed, covariates=table or None, iiv=not args.no_iiv
    )


class _UsageError(Exception):
    """A command line argparse refuses (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is raised (and reported by :func:`main` on one
    line) instead of printing the usage block and calling ``sys.exit``: ``main``
    then returns 2 to its caller, a test or the console script."""

    def error(self, message):
        raise _UsageError(f"{message} (see '{self.prog} --help')")


# What main() reports on one line, ``ketasim: error: <message>``, exit status 1:
# ketasim's own errors (DoseError, ModelFileError, ScenarioFileError and UnitError
# are ValueErrors; SolveError), the ValueError/TypeError of its input validation,
# and OSError (a missing model or scenario file, an output path that cannot be
# written). Any other exception (KeyError, IndexError, AttributeError, ...) is a
# bug in ketasim: it propagates with its full traceback. --traceback shows the
# traceback of the errors above too.
_REPORTED = (ValueError, TypeError, OSError)

EPILOG = """\
errors: a refused input or a failed simulation prints one line
'ketasim: error: <message>' on stderr and exits with status 1 (2 for a wrong
command line); --traceback shows the full traceback instead. Any other exception
is a bug in ketasim and is shown with its traceback.

example:
  ketasim demo
  ketasim models"""


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (a message over several lines, such as
    a table of values, is joined with spaces)."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {exc.filename}"
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def _add_demo(sub) -> None:
    demo = sub.add_parser(
        "demo",
        help="run the six-infusion demonstration course",
        description=DEMO_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--out-dir",
        default=".",
        help="where to write the PNG and NetCDF files (default: current directory)",
    )
    demo.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"bundled model name or model-file path (default: {DEFAULT_MODEL})",
    )
    demo.add_argument("--weight", type=float, default=70.0, help="body weight, kg")
    demo.add_argument(
        "--salt",
        choices=("base", "hcl"),
        default="hcl",
        help="whether 0.5 mg/kg is ketamine HCl (default, as dispensed "
        "in depression trials) or base",
    )
    demo.add_argument(
        "--n", type=int, default=1000, help="virtual patients (default 1000)"
    )
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")


def _add_run(sub) -> None:
    run = sub.add_parser(
        "run",
        help="run a scenario file and compare scenarios",
        description=RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("scenario_file", help="scenario file (TOML)")
    run.add_argument("--out", help="write the results to this NetCDF file")
    run.add_argument("--plot", help="write a figure (PNG) to this file")


def _add_simulate(sub) -> None:
    simp = sub.add_parser(
        "simulate",
        help="one-off population run from flags",
        description=SIMULATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simp.add_argument("--model", default=DEFAULT_MODEL, help="bundled model or path")
    simp.add_argument("--route", default="iv", help="a route the model defines")
    simp.add_argument(
        "--dose", required=True, help="amount with unit: '35 mg', '0.5 mg/kg'"
    )
    simp.add_argument("--duration", help="infusion duration, e.g. '40 min' (IV only)")
    simp.add_argument("--salt", choices=("base", "hcl"), default="base")
    simp.add_argument(
        "--device",
        type=int,
        help="routes that absorb per device "
        "(perez_ruixo_2021 intranasal): the dose is this device of its "
        "session (1 = first); --dose is then one device's amount",
    )
    simp.add_argument("--every", help="repeat the dose at this interval, e.g. '3.5 d'")
    simp.add_argument("--count", type=int, help="number of doses, with --every")
    simp.add_argument(
        "--weight",
        type=float,
        help="body weight in kg, the same for "
        "every patient (default: drawn from the adult distribution); "
        "required, with --age, for a model estimated on children",
    )
    simp.add_argument(
        "--age",
        type=float,
        help="age in years, the same for every "
        "patient (default: uniform 18-65 y); under 18 needs --weight",
    )
    simp.add_argument("--n", type=int, default=1000, help="patients (default 1000)")
    simp.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    simp.add_argument(
        "--no-iiv",
        action="store_true",
        help="typical patients that differ by covariates only, without "
        "inter-individual variability; required for a model that has none "
        "(ketasim models lists them)",
    )
    simp.add_argument(
        "--horizon",
        default="24 h",
        help="simulate this long after the last dose (default 24 h)",
    )
    simp.add_argument("--step", default="5 min", help="output step (default 5 min)")
    simp.add_argument("--out", help="write the results to this NetCDF file")
    simp.add_argument("--plot", help="write a figure (PNG) to this file")


def _parser() -> _Parser:
    """The ``ketasim`` command line: its options and subcommands (in the order
    ``--help`` lists them)."""
    parser = _Parser(
        prog="ketasim",
        description="Pharmacokinetic simulation of ketamine and esketamine.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="on an error show the full Python traceback instead of one line",
    )
    sub = parser.add_subparsers(dest="command", metavar="command")
    _add_demo(sub)
    sub.add_parser(
        "models",
        help="list the bundled models",
        description="List the bundled models: drug, enantiomer, evidence "
        "grade, variability (IIV and IOV: the number of parameters with "
        "inter-individual and inter-occasion variability, or none; residual: "
        "the residual error model, or none), routes, analytes, population."
        "\n\nexample:\n  ketasim models",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run(sub)
    _add_simulate(sub)
    docs = sub.add_parser(
        "docs",
        help="write the model pages and API reference",
        description="example:\n  ketasim docs --out docs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    docs.add_argument("--out", default="docs", help="output directory")
    cite = sub.add_parser(
        "cite",
        help="print BibTeX for a model's references",
        description="example:\n  ketasim cite domino",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cite.add_argument("model", help="bundled model name or model-file path")
    _add_validate(sub)
    return parser


def _add_validate(sub) -> None:
    val = sub.add_parser(
        "validate",
        help="check models against published observations",
        description="Simulate the published observations listed for a bundled "
        "model (models/observations/<model>.toml; every model when none is "
        "named) and print observed vs predicted, the accepted range and pass or "
        "fail, then per model what it reproduces, what it cannot and the reason "
        "of each known limitation. Exit status 1 when an observation fails (known "
        "limitations, listed as known-fail, do not count)."
        "\n\nexample:\n  ketasim validate clements_nimmo_1981",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    val.add_argument(
        "model", nargs="?", help="bundled model name or model-file path (default: all)"
    )
    val.add_argument(
        "--observations",
        metavar="FILE",
        help="observation file (default: the bundled one of the model)",
    )
    val.add_argument(
        "-n",
        type=int,
        default=200,
        help="virtual patients per observation for models with IIV (default 200)",
    )
    val.add_argument("--seed", type=int, default=2026, help="random seed")


def _validate(args) -> int:
    from .validation import format_summary, format_table, validate

    res = validate(args.model, observations=args.observations, n=args.n, seed=args.seed)
    print(format_table(res))
    print()
    print(format_summary(res, args.observations))
    return 1 if bool((res.status == "fail").any()) else 0


def _docs(args) -> int:
    from .docs import write_api_reference, write_model_pages

    pages = write_model_pages(Path(args.out) / "models")
    api = write_api_reference(Path(args.out) / "api.md")
    print(f"wrote {len(pages)} model pages and {api}")
    return 0


def _cite(args) -> int:
    import ketasim as ks

    print(ks.cite(args.model))
    return 0


def _models(args) -> int:
    import ketasim as ks

    from .docs import variability_summary

    for name in ks.list_models():
        m = ks.load_model(name)
        v = variability_summary(m, short=True)
        print(
            f"{name:<24} {m.drug:<11} {m.enantiomer:<8} grade {m.grade:<6} "
            f"IIV {v['IIV']:<5} IOV {v['IOV']:<5} residual {v['residual']:<8} "
            f"routes: {', '.join(_route_grade(r) for r in m.routes.values())}; "
            f"analytes: "
            f"{', '.join(_analyte_grade(a) for a in m.analytes)}; {m.population}"
        )
    return 0


def _route_grade(route) -> str:
    """``oral (P)``, ``intranasal (choice, benchmark only)``: a route and its
    evidence grade, as ``ketasim models`` lists them."""
    tags = [route.grade or "grade not stated"]
    if route.benchmark_only:
        tags.append("benchmark only")
    return f"{route.name} ({', '.join(tags)})"


def _analyte_grade(analyte) -> str:
    """``s_norketamine (T, limited)``: an analyte, its evidence grade, and whether
    the model file lists doses after which it cannot be predicted."""
    tags = [analyte.grade or "grade not stated"]
    if analyte.limits:
        tags.append("limited: " + "/".join(lim.action for lim in analyte.limits))
    return f"{analyte.name} ({', '.join(tags)})"


#: subcommand -> what runs it (returns the exit status)
_COMMANDS = {
    "demo": _demo,
    "run": _run,
    "simulate": _simulate,
    "docs": _docs,
    "cite": _cite,
    "models": _models,
    "validate": _validate,
}


def main(argv: list[str] | None = None) -> int:
    """Run the ``ketasim`` command with ``argv`` (default ``sys.argv[1:]``).

    Returns the exit status: 0 on success, 1 when ketasim refuses an input or a
    simulation fails (one line ``ketasim: error: <message>`` on stderr), 2 for a
    command line argparse refuses. Exceptions of any other type are bugs and
    propagate with their traceback; ``--traceback`` re-raises the reported ones
    too."""
    from . import SolveError

    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"ketasim: error: {exc}", file=sys.stderr)
        return 2
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _COMMANDS[args.command](args)
    except _UsageError as exc:
        print(f"ketasim: error: {exc}", file=sys.stderr)
        return 2
    except (*_REPORTED, SolveError) as exc:
        if args.traceback:
            raise
        print(f"ketasim: error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
