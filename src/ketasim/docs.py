"""Generated documentation: one page per bundled model (with a plot of the typical
profile for each route), the models table of the README and of the site's model
index, and the API reference page (mkdocstrings directives: the site renders every
name of ``ketasim.__all__`` from its docstring).

``ketasim docs --out docs`` writes all of them (the model pages simulate every route,
so it compiles the kernels of every model); ``python -m ketasim.docs`` rewrites only
the tables and the API page, in a second, from the model files and
``ketasim.__all__``. ``tests/test_docs.py`` fails when a committed copy is stale.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

__all__ = [
    "api_reference",
    "models_table",
    "update_readme",
    "validation_summary",
    "variability_summary",
    "write_api_reference",
    "write_model_pages",
]

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
        f"- validation (`ketasim validate {model.id}`): {validation_summary(model.id)}",
        "",
    ]
    if model.description:
        lines += [model.description.strip(), ""]
    lines += _validation_section(model.id)
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
    lines += validation_section(model, outdir)
    page = outdir / f"{model.id}.md"
    page.write_text("\n".join(lines) + "\n")
    return page


def write_model_pages(outdir: str | Path) -> list[Path]:
    """One page per bundled model, plus ``index.md``."""
    from .modelfile import list_models, load_model

    outdir = Path(outdir)
    pages = [model_page(load_model(name), outdir) for name in list_models()]
    write_models_index(outdir)
    return pages


def validation_summary(model_id: str) -> str:
    """What ``models/observations/<id>.toml`` holds, counted without simulating: the
    number of published observations by role (independent: a study the model was
    not fitted to; self: the model's own paper; calibration: used to choose a
    parameter) and the known limitations. ``tests/test_validate.py`` checks that
    every other observation passes ``ketasim validate``; a model without an
    observation file says so."""
    from .validation import ObservationError, load_observations

    try:
        _, obs = load_observations(model_id)
    except ObservationError:
        return "no observation file"
    if not obs:
        return "no published observation read (the observation file says why)"
    counts = ", ".join(
        f"{k} {r}"
        for r in ("independent", "self", "calibration")
        if (k := sum(o.role == r for o in obs))
    )
    known = sum(bool(o.known_limitation) for o in obs)
    plural = "s" if len(obs) > 1 else ""
    text = f"{len(obs)} published observation{plural} ({counts}): "
    text += f"{len(obs) - known} reproduced"
    if known:
        text += f", {known} known limitation{'s' if known > 1 else ''}"
    return text


def _validation_section(model_id: str) -> list[str]:
    """The model page's validation paragraphs: what the observation file says the
    model reproduces and cannot reproduce."""
    from .validation import ObservationError, load_observations

    try:
        header, _ = load_observations(model_id)
    except ObservationError:
        return []
    lines = ["## Validation", ""]
    for key, title in (("reproduces", "Reproduces"), ("cannot", "Cannot reproduce")):
        if header.get(key, "").strip():
            lines += [f"**{title}.** " + " ".join(header[key].split()), ""]
    lines += [
        f"`ketasim validate {model_id}` simulates every observation and prints "
        "the table.",
        "",
    ]
    return lines


def _short_population(text: str) -> str:
    """The first clause of a model file's ``population`` (up to " (", ", " or
    "; "): the table's column; the model page prints all of it."""
    cut = min(
        (i for i in (text.find(" ("), text.find(", "), text.find("; ")) if i > 0),
        default=len(text),
    )
    return text[:cut]


def models_table(link: str | None = None) -> str:
    """The bundled models as a Markdown table: drug, population (first clause),
    routes (``per device`` where the model absorbs each nasal device apart), the
    number of parameters with IIV and IOV, the residual error model, the evidence
    grade and :func:`validation_summary`.

    ``link``: the model names link to ``<link><id>.md`` (``"docs/models/"`` from
    the README, ``""`` from the site's model index); ``None``: no links. The
    default model is marked **default**.
    """
    from .modelfile import DEFAULT_MODEL, list_models, load_model

    rows = [
        "| model | drug | population | routes | IIV | IOV | residual error "
        "| grade | validation |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in list_models():
        m = load_model(name)
        var = variability_summary(m, short=True)
        shown = f"`{m.id}`" if link is None else f"[`{m.id}`]({link}{m.id}.md)"
        if m.id == DEFAULT_MODEL:
            shown += " (**default**)"
        routes = ", ".join(
            r + (" (per device)" if m.routes[r].device_mg is not None else "")
            for r in m.routes
        )
        drug = m.drug if m.enantiomer != "racemic" else f"{m.drug} (racemic)"
        cells = [
            shown,
            drug,
            _short_population(m.population),
            routes,
            var["IIV"],
            var["IOV"],
            var["residual"],
            m.grade,
            validation_summary(m.id),
        ]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


def write_models_index(outdir: str | Path) -> Path:
    """``<outdir>/index.md``, the site's model index (the models table, linked), and
    ``<outdir>/.nav.yml``, the site's navigation of the model pages (titled by
    model id; mkdocs-awesome-nav reads it)."""
    from .modelfile import list_models

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / ".nav.yml").write_text(
        "# generated by `python -m ketasim.docs`\nnav:\n  - Overview: index.md\n"
        + "".join(f"  - {name}: {name}.md\n" for name in list_models())
    )
    path = outdir / "index.md"
    path.write_text(
        "# Bundled models\n\n"
        "One TOML file per published model in `models/` (schema: `models/README.md` "
        "in the repository); a page per model with its parameters, sources and the "
        "typical profile of each route. IIV and IOV: the number of parameters with "
        "inter-individual and inter-occasion variability. Evidence grades: P "
        "primary text, T line-by-line transcription, C third-party code only, "
        "`choice` a modelling choice the paper does not make. Validation: the "
        "published observations of `models/observations/<id>.toml` by role "
        "(independent, self, calibration) and how many `ketasim validate` "
        "reproduces.\n\n" + models_table("")
    )
    return path


#: the markers around the generated models table in README.md
README_TABLE_START = "<!-- models table: generated by `python -m ketasim.docs` -->"
README_TABLE_END = "<!-- end of the generated models table -->"


def update_readme(path: str | Path) -> bool:
    """Rewrite the models table between :data:`README_TABLE_START` and
    :data:`README_TABLE_END` in ``path``; True when the file changed."""
    path = Path(path)
    text = path.read_text()
    start, end = text.find(README_TABLE_START), text.find(README_TABLE_END)
    if start < 0 or end < start:
        raise ValueError(
            f"{path} has no generated models table: expected the lines "
            f"{README_TABLE_START!r} and {README_TABLE_END!r} around it"
        )
    new = (
        text[: start + len(README_TABLE_START)]
        + "\n\n"
        + models_table("docs/models/")
        + "\n"
        + text[end:]
    )
    if new != text:
        path.write_text(new)
    return new != text


def _shadowed_by_a_module(name: str) -> bool:
    """True when ``ketasim.<name>`` is also a submodule (``simulate``, ``metrics``):
    mkdocstrings then resolves the name to the module, so the page names the
    function by its full path."""
    import importlib.util

    return importlib.util.find_spec(f"ketasim.{name}") is not None


def api_reference() -> str:
    """The API reference page. ``::: ketasim`` renders every public name of
    ``ketasim.__all__`` in its order when the site is built, so a new public name
    needs no edit here; the names that are also submodules (``simulate``,
    ``metrics``) are listed first by their full path."""
    import ketasim

    out = [
        "# API reference",
        "",
        "Every public function and class of `ketasim` (the names in "
        "`ketasim.__all__`, in its order), rendered from its docstring when the "
        "site is built. Units: time in h, amounts in mg, volumes in L, "
        "concentrations in ng/mL, unless a parameter says otherwise.",
        "",
    ]
    for name in ketasim.__all__:
        obj = getattr(ketasim, name)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and (
            _shadowed_by_a_module(name)
        ):
            out += [
                f"::: ketasim.{name}.{name}",
                "    options:",
                f"      heading: ketasim.{name}",
                "",
            ]
    out += [
        "::: ketasim",
        "    options:",
        "      show_root_heading: false",
        "      show_root_toc_entry: false",
        "      members_order: [__all__, source]",
        "      filters: public",
        "",
    ]
    return "\n".join(out)


def write_api_reference(path: str | Path) -> Path:
    """Write :func:`api_reference` to ``path`` (``docs/api.md``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(api_reference())
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m ketasim.docs [ROOT]``: rewrite the generated files that need no
    simulation under the repository ``ROOT`` (default: the current directory):
    README.md's models table, docs/models/index.md and docs/api.md. The model
    pages themselves: ``ketasim docs --out docs``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m ketasim.docs", description=main.__doc__
    )
    parser.add_argument("root", nargs="?", default=".", help="repository root")
    root = Path(parser.parse_args(argv).root)
    if not (root / "README.md").is_file():
        parser.error(f"no README.md in {root.resolve()}: give the repository root")
    changed = update_readme(root / "README.md")
    write_models_index(root / "docs" / "models")
    write_api_reference(root / "docs" / "api.md")
    print(
        f"README.md models table {'rewritten' if changed else 'up to date'}; "
        f"wrote {root / 'docs' / 'models' / 'index.md'} and {root / 'docs' / 'api.md'}"
    )
    return 0


#: virtual patients per observation on the model pages' validation plots
_PAGE_VALIDATION_N = 40


def validation_section(model, outdir: Path) -> list[str]:
    """Markdown lines (and ``<id>-validation.png`` in ``outdir``) for the model's
    published observations: a plot of predicted / observed with the accepted range
    and the population's 5-95 % range, and the table of :func:`ketasim.validate`
    (the text of the observation file is :func:`_validation_section`'s)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .validation import load_observations, validate

    outdir.mkdir(parents=True, exist_ok=True)
    _, obs = load_observations(model.id)
    lines = ["## Observed vs predicted", ""]
    if not obs:
        lines += ["No published observation of this model's population was read.", ""]
        return lines
    res = validate(model.id, n=_PAGE_VALIDATION_N)
    k = res.sizes["observation"]
    fig, ax = plt.subplots(figsize=(7, 0.45 * k + 1.4))
    colours = {"pass": "tab:green", "fail": "tab:red", "known-fail": "tab:orange"}
    for i in range(k):
        r = res.isel(observation=i)
        obs_v = float(r.observed)
        y = k - 1 - i
        ax.plot(
            [float(r.lower) / obs_v, float(r.upper) / obs_v],
            [y, y],
            "-",
            color="0.75",
            lw=6,
            solid_capstyle="butt",
        )
        if np.isfinite(float(r.p05)):
            ax.plot(
                [float(r.p05) / obs_v, float(r.p95) / obs_v],
                [y, y],
                "-",
                color="tab:blue",
                lw=1,
            )
        ax.plot(
            float(r.predicted) / obs_v,
            y,
            "o",
            color=colours.get(str(r.status.values), "tab:blue"),
        )
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ticks = [0.25, 0.5, 1, 2, 4]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_yticks(range(k))
    ax.set_yticklabels(list(res.observation.values)[::-1], fontsize=8)
    ax.set_xlabel("predicted / observed (grey: accepted; blue: population 5-95 %)")
    ax.set_title(f"{model.id}: published observations", fontsize=10)
    fig.tight_layout()
    png = outdir / f"{model.id}-validation.png"
    fig.savefig(png, dpi=80)
    plt.close(fig)
    lines += [
        f"![validation]({png.name})",
        "",
        f"Population: {_PAGE_VALIDATION_N} virtual patients per observation "
        f"(seed {res.attrs['seed']}); `ketasim validate {model.id}` uses 200.",
        "",
        "| observation | metric | observed | predicted | accepted | unit | role "
        "| status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i in range(k):
        r = res.isel(observation=i)
        lines.append(
            f"| {r.observation.values} | {r.metric.values} | "
            f"{float(r.observed):.4g} | {float(r.predicted):.4g} | "
            f"{float(r.lower):.3g}-{float(r.upper):.3g} | {r.unit.values} | "
            f"{r.role.values} | {r.status.values} |"
        )
    return [*lines, ""]


if __name__ == "__main__":
    raise SystemExit(main())
