"""The routes a ketamine clinic offers, for the same virtual adults.

Four sessions over two weeks (days 0, 3, 7, 10 at 09:00), one arm per route:

- racemic ketamine IV infusion, 0.5 mg/kg HCl over 40 min (``clements_nimmo_1981``);
- in-office esketamine nasal spray, 56 mg as two 28-mg devices 5 min apart
  (``perez_ruixo_2021``, the Spravato population model);
- racemic sublingual ketamine, 100 mg held under the tongue (``clements_nimmo_1981``,
  Rolan 2014 wafer F 29 %);
- racemic lozenge/troche, 100 mg: part absorbed through the mucosa, the rest
  swallowed through first pass (``clements_nimmo_1981`` route ``troche``; its split
  is a modelling choice, see ``models/README.md``);
- the IV course plus 100-mg troches at home on the evenings between sessions
  (``six_infusion_course(...) + home_course(...)``).

Adult intramuscular ketamine is not compared: no adult IM bioavailability could be
verified (``models/README.md``); add your own with ``Model.with_route``. Every route
used here states its evidence grade; none is a benchmark-only route. Doses are
illustrations, not recommendations. The racemic arms report total (R+S) ketamine,
the spray esketamine: compare exposure with that in mind.

Run: python examples/route_comparison.py  (writes route_comparison.png)
The same comparison as a scenario file: examples/route_comparison.toml
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import ketasim as ks

SESSIONS = 4


def scenarios(n: int, seed: int = 7) -> list[ks.Scenario]:
    """The arms, on one population (same seed: the same virtual adults)."""
    pop = ks.Population(n, seed=seed)
    times = ks.grid("14 d", "5 min")
    racemic = ks.DEFAULT_MODEL  # clements_nimmo_1981
    iv = ks.six_infusion_course(sessions=SESSIONS)
    home = ks.home_course(
        ks.Dose.bolus("100 mg", route="troche"),
        per_week=2,
        weeks=2,
        clock="20:00",
        first_day=1,  # the evening after each clinic day
    )
    arms = {
        "IV 0.5 mg/kg HCl / 40 min": (racemic, iv),
        "esketamine spray 56 mg": (
            "perez_ruixo_2021",
            ks.esketamine_induction("56 mg", weeks=2, continuation_weeks=0),
        ),
        "sublingual 100 mg": (
            racemic,
            ks.clinic_course(
                ks.Dose.bolus("100 mg", route="sublingual"), sessions=SESSIONS
            ),
        ),
        "troche 100 mg": (
            racemic,
            ks.clinic_course(
                ks.Dose.bolus("100 mg", route="troche"), sessions=SESSIONS
            ),
        ),
        "IV + home troche 100 mg": (racemic, iv + home),
    }
    return [
        ks.Scenario(name, model, reg, population=pop, times=times)
        for name, (model, reg) in arms.items()
    ]


def session_table(ds) -> pd.DataFrame:
    """Median Cmax (ng/mL) and AUC (ng·h/mL) of the parent drug per session and
    arm (a session is a clinic visit, a home dose, or the devices of one spray
    session)."""
    rows = []
    for name in ds.scenario.values:
        one = ds.sel(scenario=name)
        # the combined result pads each arm's doses and analytes to the longest
        # arm's (NaN): keep this arm's own
        one = one.isel(dose=np.flatnonzero(np.isfinite(one.dose_time.values)))
        one = one.assign(dose_session=one.dose_session.astype(np.int64))
        one = one.sel(analyte=one.concentration.notnull().any(["subject", "time"]))
        analyte = str(one.analyte.values[0])
        m = one.pk.metrics("session")
        for s in range(m.sizes["session"]):
            cmax = m.cmax.sel(analyte=analyte).isel(session=s)
            if not bool(cmax.notnull().any()):
                continue
            rows.append(
                {
                    "arm": str(name),
                    "analyte": analyte,
                    "session": s,
                    "start (h)": float(m.session_start.isel(session=s)),
                    "Cmax median (ng/mL)": float(cmax.median()),
                    "AUC median (ng·h/mL)": float(
                        m.auc.sel(analyte=analyte).isel(session=s).median()
                    ),
                }
            )
    return pd.DataFrame(rows)


def main(n: int = 200, out: str | Path = "route_comparison.png") -> pd.DataFrame:
    import matplotlib

    matplotlib.use("Agg")
    from ketasim.plotting import plot_scenarios

    ds = ks.run_scenarios(scenarios(n), progress=False)
    # the first session of each arm, each arm's parent drug (ketamine or esketamine)
    print(ks.compare(ds, per="session"))
    table = session_table(ds)
    with pd.option_context("display.width", 120, "display.max_rows", 100):
        print(table.round(1).to_string(index=False))
    fig = plot_scenarios(ds, sharey=False)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return table


if __name__ == "__main__":
    main()
