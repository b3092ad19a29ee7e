"""Generated documentation: one page per bundled model (with a plot of the typical
profile for each route) and an API reference from the docstrings.

``ketasim docs --out docs`` writes them; the pages in the repository were made so.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

__all__ = ["variability_summary", "write_api_reference", "write_model_pages"]

#: residual-error terms of a model file, as ``ketasim models`` abbreviates them
_RESIDUAL_SHORT = {
    "proportional": "prop",
    "additive_ng_per_ml": "add",
    "exponential": "exp",
}


def variability_summary(model, *, short: bool = False) -> dict[str, str]:
    """What random variation ``model`` gives, ``{"IIV", "IOV", "residual"}`` ->
    text, "none" where the model file gives none. ``short`` (``ketasim models``):
    the number of parameters with IIV and IOV and the residual terms (prop, add,
    exp); else (the model pages) the parameters and the residual error per
    analyte."""
    out = {}
    for key, attr in (("IIV", "omega"), ("IOV", "iov_omega")):
        names = [v.parameter for v in model.variability if getattr(v, attr) > 0]
        if not names:
            out[key] = "none"
        elif short:
            out[key] = str(len(names))
        else:
            out[key] = f"{', '.join(names)} ({len(names)} parameters)"
    res = {a: r for a, r in model.residual.items() if r}
    if not res:
        out["residual"] = "none"
    elif short:
        kinds = {k for r in res.values() for k in r}
        out["residual"] = "+".join(
            _RESIDUAL_SHORT.get(k, k)
            for k in sorted(kinds, key=list(_RESIDUAL_SHORT).index)
        )
    else:
        out["residual"] = "; ".join(
            f"{a}: "
            + ", ".join(
                f"{k.removesuffix('_ng_per_ml')} {v:.4g}"
                + (" ng/mL" if k.endswith("_ng_per_ml") else "")
                for k, v in r.items()
            )
            for a, r in res.items()
        )
    return out


def _route_regimen(model, route):
    from .dosing import Dose, Regimen

    r = model.routes[route]
    if r.intravenous:
        return Regimen(
            [Dose.infusion("0.5 mg/kg", duration="40 min", route=route)]
        ), "0.5 mg/kg over 40 min"
    if r.device_mg is not None:
        dev = f"{r.device_mg:g} mg"
        return Regimen(
            [
                Dose.bolus(dev, route=route, device=1),
                Dose.bolus(dev, route=route, time="5 min", device=2),
            ]
        ), f"{2 * r.device_mg:g} mg as two {r.device_mg:g}-mg devices 5 min apart"
    return Regimen([Dose.bolus("0.5 mg/kg", route=route)]), "0.5 mg/kg"


#: The patient of the profiles of a model whose default covariates simulate
#: refuses (a paediatric model: its reference weight, 70 kg, is an adult's). Inside
#: the validity ranges of every bundled paediatric model; roughly a median
#: 6-year-old, an illustration, not a study statistic.
ILLUSTRATIVE_CHILD = {"weight": 20.0, "age": 6.0}


def _patient(model) -> dict | None:
    """None when the model's reference covariates make a patient simulate accepts,
    else :data:`ILLUSTRATIVE_CHILD` (simulate then checks it against the model's
    validity ranges: a ValidityWarning, an error under the test settings)."""
    from ._validate import defaulted_covariate_problem

    cov = {k: np.array([v]) for k, v in model.covariates.items()}
    return (
        None
        if defaulted_covariate_problem(model, set(), cov) is None
        else dict(ILLUSTRATIVE_CHILD)
    )


def model_page(model, outdir: Path) -> Path:
    """Write ``<id>.md`` and one PNG per route into ``outdir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .options import Subjects
    from .simulate import grid, simulate

    outdir.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# {model.id}: {model.name}",
        "",
        f"- drug: {model.drug} ({model.enantiomer})",
        f"- population: {model.population}",
        f"- sampling: {model.sampling}",
        f"- evidence grade: {model.grade}",
        f"- routes: {', '.join(model.routes)}",
        f"- analytes: {', '.join(model.analyte_names)}",
    ]
    var = variability_summary(model)
    iiv = var["IIV"]
    if iiv == "none":
        iiv = (
            "none (the model file gives no omegas: a Population needs iiv=False, "
            "typical patients differing by covariates only)"
        )
    lines += [
        f"- inter-individual variability (IIV): {iiv}",
        f"- inter-occasion variability (IOV): {var['IOV']}",
        f"- residual error (SD): {var['residual']}",
        "",
    ]
    if model.description:
        lines += [model.description.strip(), ""]
    lines += ["## References", ""]
    for r in model.references:
        lines.append(f"- `{r.key}`: {r.citation}" + (f" doi:{r.doi}" if r.doi else ""))
    # value and unit as ketasim reads them (Subjects(parameters=...) takes a bare
    # number in this unit where it is unambiguous), then as the model file states them
    lines += [
        "",
        "## Parameters",
        "",
        "| name | value | unit | in the model file | description | source | grade |",
        "|---|---|---|---|---|---|---|",
    ]
    from .units import parse_unit

    for p in model.parameters.values():
        shown = p.value / parse_unit(p.unit).factor
        lines.append(
            f"| {p.name} | {p.value:.4g} | {p.canonical_unit} | {shown:.4g} "
            f"{p.unit} | {p.description} | {p.source} | {p.grade} |"
        )
    if model.variability:
        lines += [
            "",
            "## Variability",
            "",
            "| parameter | distribution | IIV ω | IOV ω |",
            "|---|---|---|---|",
        ]
        for v in model.variability:
            lines.append(
                f"| {v.parameter} | {v.distribution} | {v.omega:.4g} | "
                f"{v.iov_omega:.4g} |"
            )
    if model.covariate_effects:
        lines += [
            "",
            "## Covariate effects",
            "",
            "| parameter | covariate | model | reference | coefficient |",
            "|---|---|---|---|---|",
        ]
        for e in model.covariate_effects:
            lines.append(
                f"| {e.parameter} | {e.covariate} | {e.kind} | "
                f"{e.reference:g} | {e.coefficient:g} |"
            )
    if model.validity:
        lines += [
            "",
            "Validity: "
            + ", ".join(f"{k} {lo:g}-{hi:g}" for k, (lo, hi) in model.validity.items()),
        ]
    patient = _patient(model)
    shown = {**model.covariates, **(patient or {})}
    who = ", ".join(f"{k} {v:g}" for k, v in shown.items()) or "reference"
    lines += ["", "## Typical profiles", ""]
    if patient is None:
        lines += [f"Typical subject ({who}), no random effects:", ""]
    else:
        lines += [
            f"An illustrative child ({who}; not a statistic of the study: the "
            f"model's reference weight, {model.covariates['weight']:g} kg, is "
            f"an adult's and simulate refuses it here), no random effects:",
            "",
        ]
    for route in model.routes:
        reg, what = _route_regimen(model, route)
        t = grid("24 h", "2 min")
        ds = simulate(
            model, reg, times=t, subjects=Subjects(covariates=patient), progress=False
        )
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for a in model.analyte_names:
            c = ds.concentration.sel(analyte=a).isel(subject=0)
            ax.plot(t, c, label=a)
        ax.set_xlabel("time (h)")
        ax.set_ylabel("concentration (ng/mL)")
        ax.set_title(f"{model.id}, {route}: {what}", fontsize=9)
        ax.set_yscale("log")
        top = float(np.nanmax(ds.concentration.values))
        ax.set_ylim(top * 1e-3, top * 2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        png = outdir / f"{model.id}-{route}.png"
        fig.savefig(png, dpi=90)
        plt.close(fig)
        cmax = ds.concentration.max("time").isel(subject=0).values
        lines += [
            f"### {route}: {what}",
            "",
            f"![{route}]({png.name})",
            "",
            "Cmax: "
            + ", ".join(
                f"{a} {c:.3g} ng/mL"
                for a, c in zip(model.analyte_names, cmax, strict=True)
            ),
            "",
        ]
    page = outdir / f"{model.id}.md"
    page.write_text("\n".join(lines) + "\n")
    return page


def write_model_pages(outdir: str | Path) -> list[Path]:
    """One page per bundled model, plus ``index.md``."""
    from .modelfile import list_models, load_model

    outdir = Path(outdir)
    pages = [model_page(load_model(name), outdir) for name in list_models()]
    index = [
        "# Bundled models",
        "",
        "| model | drug | population | routes | grade |",
        "|---|---|---|---|---|",
    ]
    for name in list_models():
        m = load_model(name)
        index.append(
            f"| [{m.id}]({m.id}.md) | {m.drug} ({m.enantiomer}) | "
            f"{m.population} | {', '.join(m.routes)} | {m.grade} |"
        )
    (outdir / "index.md").write_text("\n".join(index) + "\n")
    return pages


#: parameters left out of the printed signatures: simulate's ``**moved`` only
#: catches the keywords of the old surface (``rtol=``, ``covariates=``, ...) to say
#: which configuration object took each; it is not a way to call it
_HIDDEN = {"moved"}


class _Annotation(str):
    """A type hint printed as written: the modules use postponed annotations
    (strings), which ``inspect`` would print quoted (``amount: 'AmountLike'``)."""

    def __repr__(self) -> str:
        return str(self)


def _plain(annotation):
    return _Annotation(annotation) if isinstance(annotation, str) else annotation


def _signature(obj) -> str:
    """``obj``'s signature as the reference prints it (without :data:`_HIDDEN`;
    type hints unquoted; a class without its ``-> None``)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    returns = sig.return_annotation
    if inspect.isclass(obj) or returns in ("None", None):
        returns = inspect.Signature.empty
    return str(
        sig.replace(
            parameters=[
                p.replace(annotation=_plain(p.annotation))
                for p in sig.parameters.values()
                if not (p.kind is p.VAR_KEYWORD and p.name in _HIDDEN)
            ],
            return_annotation=_plain(returns),
        )
    )


def write_api_reference(path: str | Path) -> Path:
    """The public API (``ketasim.__all__``) with signatures and docstrings: the
    functions and classes, among them the configuration objects of
    :func:`~ketasim.simulate` (``Exact``, ``ODE``, ``Trajectories``, ``Metrics``,
    ``Subjects``)."""
    import ketasim

    out = [
        "# ketasim API reference",
        "",
        "Generated from the docstrings (`ketasim docs`). Units: h, mg, L, ng/mL.",
        "",
    ]
    for name in ketasim.__all__:
        obj = getattr(ketasim, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        out += [
            f"## `ketasim.{name}{_signature(obj)}`",
            "",
            inspect.getdoc(obj) or "",
            "",
        ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out))
    return path
