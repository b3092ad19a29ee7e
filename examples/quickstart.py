"""Quick start: one course, 1 000 virtual adults, exposure per session.

Run: python examples/quickstart.py
"""

import ketasim as ks


def main(n: int = 1000) -> None:
    course = ks.six_infusion_course()  # 0.5 mg/kg HCl over 40 min, days 0,3,7,10,14,17
    pop = ks.Population(n, seed=1)  # adults: sex, height, BMI -> weight, age
    times = ks.grid("21 d", "5 min")
    ds = ks.simulate(ks.DEFAULT_MODEL, course, population=pop, times=times)
    print(ds.concentration.attrs["units"], ds.concentration.shape)
    m = ds.pk.metrics("session", above=100.0)
    print(ks.summary(m.cmax.sel(analyte="ketamine")).round(1).to_pandas())
    print(
        "P(time above 100 ng/mL >= 0.5 h in session 1):",
        float(ks.pta(m.time_above.isel(session=0), 0.5).item()),
    )
    print(ks.compare(ds, per="session", above=100.0))


if __name__ == "__main__":
    main()
