"""A user-defined nonlinear model: saturable (Michaelis–Menten) elimination.

The structure (compartments, routes, analytes, parameters with units) comes from a
model dictionary, exactly as in a model file; the dynamics come from a plain Python
right-hand side that ketasim compiles with numba. Doses are added by ketasim.

Run: python examples/michaelis_menten.py
"""

import numpy as np

import ketasim as ks

MODEL = {
    "schema_version": 1,
    "id": "mm_example",
    "name": "one compartment with Michaelis-Menten elimination (illustration)",
    "drug": "ketamine",
    "enantiomer": "racemic",
    "population": "illustrative adult",
    "sampling": "venous",
    "grade": "choice",
    "references": [
        {
            "key": "example",
            "citation": "ketasim example; not a published ketamine model",
        }
    ],
    "covariates": {"weight": {"unit": "kg", "reference": 70.0}},
    "parameters": {
        "V": {
            "value": 3.0,
            "unit": "L/kg",
            "description": "volume",
            "source": "illustrative",
            "grade": "choice",
        },
        "Vmax": {
            "value": 40.0,
            "unit": "mg/h",
            "description": "maximal elimination rate",
            "source": "illustrative",
            "grade": "choice",
        },
        "Km": {
            "value": 0.15,
            "unit": "mg/L",
            "description": "concentration at half-maximal elimination",
            "source": "illustrative",
            "grade": "choice",
        },
    },
    "compartments": {
        "central": {"role": "central", "volume": "V", "analyte": "ketamine"}
    },
    "routes": {"iv": {"kind": "intravenous", "target": "central"}},
    "analytes": {"ketamine": {"compartment": "central", "mw": 237.73}},
}


def rhs(t, x, p, dxdt):
    # p holds the individual parameters in model order (V, Vmax, Km), canonical
    # units: L, mg/h, mg/L; x is the amount in mg
    v, vmax, km = p[0], p[1], p[2]
    c = x[0] / v
    dxdt[0] = -vmax * c / (km + c)


def main(n: int = 200) -> None:
    model = ks.model_from_dict(MODEL).with_rhs(rhs)
    dose = ks.Dose.infusion("0.5 mg/kg", duration="40 min", salt="hcl")
    times = ks.grid("12 h", "10 min")
    weights = np.linspace(50.0, 110.0, n)
    ds = ks.simulate(
        model,
        dose,
        times=times,
        subjects=ks.Subjects(covariates={"weight": weights}),
        solver=ks.ODE(rtol=1e-8, atol=1e-10),
    )
    c = ds.concentration.sel(analyte="ketamine")
    print(f"{n} subjects, solver: {ds.attrs['solver']}, rtol {ds.attrs['rtol']}")
    for w in (0, n // 2, n - 1):
        print(
            f"weight {weights[w]:5.1f} kg: Cmax {float(c[w].max()):6.1f} ng/mL, "
            f"C(12 h) {float(c[w, -1]):6.2f} ng/mL"
        )


if __name__ == "__main__":
    main()
