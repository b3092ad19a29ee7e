"""The ``ketasim`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_MODEL = "domino"

DEMO_HELP = """\
Simulate a course of six 0.5 mg/kg 40-minute ketamine infusions (days 0, 3, 7, 10,
14, 17) for a 70 kg adult on the bundled default racemic model, print per-infusion
Cmax, Tmax and AUC, and write a PNG plot and a NetCDF file.

example:
  ketasim demo --out-dir results/
"""


def _demo(args) -> int:
    import numpy as np

    import ketasim as ks

    model = ks.load_model(args.model)
    dose = ks.Dose.infusion("0.5 mg/kg", duration="40 min", salt=args.salt)
    days = [0, 3, 7, 10, 14, 17]
    course = ks.Regimen.at(days, dose, unit="d")
    times = ks.grid("21 d", "1 min")
    ds = ks.simulate(model, course, times=times, covariates={"weight": args.weight},
                     auc=True)
    analyte = model.analyte_names[0]
    c = ds.concentration.sel(analyte=analyte).isel(subject=0).values
    cum = ds.auc.sel(analyte=analyte).isel(subject=0).values
    starts = np.array(course.times)
    edges = np.searchsorted(times, np.append(starts, times[-1] + 1.0))
    print(f"ketasim {ks.__version__} demo — model {model.id!r} ({model.name})")
    print(f"six infusions of 0.5 mg/kg {args.salt} over 40 min, days "
          f"{', '.join(map(str, days))}; weight {args.weight:g} kg; "
          f"{analyte} in plasma\n")
    print(f"{'infusion':>8} {'day':>4} {'Cmax (ng/mL)':>13} {'Tmax (min)':>11} "
          f"{'AUC to next (ng·h/mL)':>22}")
    for i in range(len(starts)):
        a, b = edges[i], min(edges[i + 1], times.size - 1)
        j = a + int(np.argmax(c[a:b]))  # first maximum on ties
        print(f"{i + 1:>8} {days[i]:>4} {c[j]:>13.1f} {(times[j] - starts[i]) * 60:>11.0f}"
              f" {cum[b] - cum[a]:>22.1f}")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nc = out / "ketasim-demo.nc"
    ds.to_netcdf(nc, engine="h5netcdf")
    png = out / "ketasim-demo.png"
    _demo_plot(ds, analyte, course, png)
    print(f"\nwrote {nc} and {png}")
    return 0


def _demo_plot(ds, analyte, course, png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = ds.concentration.sel(analyte=analyte).isel(subject=0)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), width_ratios=[2, 1])
    ax1.plot(ds.time / 24.0, c, lw=1)
    ax1.set_xlabel("time (days)")
    ax1.set_ylabel(f"{analyte} (ng/mL)")
    ax1.set_title("six-infusion course")
    first = ds.time <= 6.0
    ax2.plot(ds.time[first] * 60.0, c[first], lw=1.5)
    ax2.set_xlabel("time after first infusion start (min)")
    ax2.set_ylabel(f"{analyte} (ng/mL)")
    ax2.set_title("first infusion")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{ds.attrs['model_name']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ketasim",
        description="Pharmacokinetic simulation of ketamine and esketamine.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  ketasim demo\n  ketasim models")
    sub = parser.add_subparsers(dest="command", metavar="command")
    demo = sub.add_parser("demo", help="run the six-infusion demonstration course",
                          description=DEMO_HELP,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--out-dir", default=".", help="where to write the PNG and "
                      "NetCDF files (default: current directory)")
    demo.add_argument("--model", default=DEFAULT_MODEL,
                      help=f"bundled model name or model-file path (default: "
                      f"{DEFAULT_MODEL})")
    demo.add_argument("--weight", type=float, default=70.0, help="body weight, kg")
    demo.add_argument("--salt", choices=("base", "hcl"), default="hcl",
                      help="whether 0.5 mg/kg is ketamine HCl (default, as dispensed "
                      "in depression trials) or base")
    models = sub.add_parser("models", help="list the bundled models")
    models.set_defaults()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "models":
            import ketasim as ks

            for name in ks.list_models():
                m = ks.load_model(name)
                print(f"{name:<24} {m.drug:<11} {m.enantiomer:<8} grade {m.grade:<6} "
                      f"routes: {', '.join(m.routes)}; analytes: "
                      f"{', '.join(m.analyte_names)}; {m.population}")
            return 0
    except (ValueError, FileNotFoundError, TypeError) as exc:
        print(f"ketasim {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
