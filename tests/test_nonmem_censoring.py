"""NONMEM censoring columns (CENS, BLQ or BQL; the M3 convention: 1 marks an
observation below the lower limit of quantification, whose DV holds that limit):
read by read_nonmem, used by estimate, refused where they contradict lloq= or
make no sense. The oracle for estimation is the same data as a tidy table with
lloq= (tests/test_estimation.py checks that path against an objective written by
hand)."""

import re

import numpy as np
import pytest

import ketasim as ks
from ketasim.nonmem import read_nonmem, simulate_nonmem

from .test_estimation import COURSE, MODEL, _simulated

HEAD = "ID,TIME,EVID,AMT,RATE,CMT,MDV,DV,WT"


def _write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- reading ---------------------------------------------------------------------
@pytest.mark.parametrize("column", ["CENS", "BLQ", "bql"])
def test_read_nonmem_reads_the_censoring_column(tmp_path, column):
    text = (
        f"{HEAD},{column}\n"
        "1,0,1,35,52.5,1,1,.,70,.\n"
        "1,1,0,.,.,1,0,120,70,0\n"
        "1,8,0,.,.,1,0,5,70,1\n"
        "1,9,0,.,.,1,1,.,70,\n"  # MDV 1: not an observation
        "1,12,0,.,.,1,0,5,70,1\n"
        "2,0,1,20,0,1,1,.,55,0\n"
        "2,2,0,.,.,1,0,40,55,\n"
    )
    table = read_nonmem(_write(tmp_path, text), "domino")
    assert table.censoring == column.upper()
    np.testing.assert_array_equal(table.observations[1], [1.0, 8.0, 12.0])
    np.testing.assert_array_equal(table.censored[1], [False, True, True])
    np.testing.assert_array_equal(table.censored[2], [False])
    # simulated as any table: censoring concerns the measured DV only
    ds = simulate_nonmem("domino", table)
    assert ds.concentration.sizes["subject"] == 2


def test_a_table_without_a_censoring_column_censors_nothing(tmp_path):
    text = f"{HEAD}\n1,0,1,35,52.5,1,1,.,70\n1,1,0,.,.,1,0,120,70\n"
    table = read_nonmem(_write(tmp_path, text), "domino")
    assert table.censoring is None
    np.testing.assert_array_equal(table.censored[1], [False])


BAD = [
    (
        f"{HEAD},CENS,BLQ\n1,0,1,35,52.5,1,1,.,70,0,0\n",
        "line 1 (header): columns CENS and BLQ both mark observations below the "
        "limit of quantification; keep one",
    ),
    (
        f"{HEAD},CENS\n1,0,1,35,52.5,1,1,.,70,1\n",
        "line 2, ID 1, column CENS: CENS 1 on a record that is not an observation "
        "(EVID 1, MDV 1); only an observation record (EVID 0, MDV 0) can be below "
        "the limit of quantification: write 0 or leave it empty",
    ),
    (
        f"{HEAD},BLQ\n1,0,1,35,52.5,1,1,.,70,0\n1,1,0,.,.,1,1,.,70,1\n",
        "line 3, ID 1, column BLQ: BLQ 1 on a record that is not an observation "
        "(EVID 0, MDV 1)",
    ),
    (
        f"{HEAD},CENS\n1,0,1,35,52.5,1,1,.,70,0\n1,1,0,.,.,1,0,500,70,-1\n",
        "line 3, ID 1, column CENS: -1 marks a level above an upper limit of "
        "quantification, which ketasim does not model; write the measured level "
        "with CENS 0, or drop the record",
    ),
    (
        f"{HEAD},CENS\n1,0,1,35,52.5,1,1,.,70,0\n1,1,0,.,.,1,0,5,70,2\n",
        "line 3, ID 1, column CENS: must be 0 (measured) or 1 (below the limit of "
        "quantification, DV holding the limit); got '2'",
    ),
    (
        f"{HEAD},CENS\n1,0,1,35,52.5,1,1,.,70,0\n1,1,0,.,.,1,0,0.5,70,0.5\n",
        "line 3, ID 1, column CENS: must be a whole number; got '0.5'",
    ),
    (
        f"{HEAD},CENS\n1,0,1,35,52.5,1,1,.,70,0\n1,1,0,.,.,1,0,0,70,1\n",
        "line 3, ID 1, column DV: CENS 1 marks a level below the lower limit of "
        "quantification, and DV must then hold that limit (ng/mL, > 0; NONMEM's M3 "
        "convention); got '0'",
    ),
    (
        f"{HEAD},CENS\n1,0,1,35,52.5,1,1,.,70,0\n1,1,0,.,.,1,0,.,70,1\n",
        "line 3, ID 1, column DV: CENS 1 marks a level below the lower limit of "
        "quantification, and DV must then hold that limit (ng/mL, > 0; NONMEM's M3 "
        "convention); got '.'",
    ),
    (
        "ID,TIME,EVID,AMT,CENS\n1,0,1,35,0\n1,1,0,.,1\n",
        "line 3, ID 1, column DV: CENS 1 marks a level below the lower limit of "
        "quantification, and DV must then hold that limit (ng/mL, > 0; NONMEM's M3 "
        "convention); got 'no DV column'",
    ),
]


@pytest.mark.parametrize("text, message", BAD)
def test_censoring_columns_are_checked(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=f"^{re.escape(f'{path}: {message}')}"):
        read_nonmem(path, "domino")


# ---- estimation --------------------------------------------------------------------
CMT = {"s_ketamine": 2, "s_norketamine": 3}
BY_CMT = {2: "s_ketamine", 3: "s_norketamine"}


@pytest.fixture(scope="module")
def data():
    """Four simulated patients (fanta_2015); LLOQs 1 ng/mL for S-ketamine and, for
    S-norketamine, 1.5 times subject 0's last level: a few observations of
    each are below them."""
    table, _ = _simulated(4, seed=11)
    last = np.flatnonzero(
        (table["subject"] == 0) & (table["analyte"] == "s_norketamine")
    )[-1]
    lloq = {"s_ketamine": 1.0, "s_norketamine": table["concentration"][last] * 1.5}
    return table, lloq


def _nonmem_file(path, table, lloq, column="CENS"):
    """The table as a NONMEM file: the course's two infusions, observations with
    DV = the level, or = the LLOQ and <column> 1 where the level is below it
    (``column`` None: no censoring column, the LLOQ written as the DV)."""
    lines = [HEAD if column is None else f"{HEAD},{column}"]
    for s in np.unique(table["subject"]):
        rows = table["subject"] == s
        wt = table["weight"][rows][0]
        end = "" if column is None else ",0"
        lines.append(f"{s},0,1,20,30,1,1,.,{wt:.17g}{end}")
        obs = sorted(
            zip(
                table["time"][rows],
                table["analyte"][rows],
                table["concentration"][rows],
                strict=True,
            ),
            key=lambda r: r[0],
        )
        dosed = False
        for t, a, c in obs:
            if t > 24 and not dosed:
                amt, rate = 0.3 * wt, 0.3 * wt * 1.5  # mg, mg/h over 40 min
                lines.append(f"{s},24,1,{amt:.17g},{rate:.17g},1,1,.,{wt:.17g}{end}")
                dosed = True
            below = c < lloq[a]
            dv = lloq[a] if below else c
            flag = "" if column is None else f",{int(below)}"
            lines.append(f"{s},{t:.17g},0,.,.,{CMT[a]},0,{dv:.17g},{wt:.17g}{flag}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_estimate_reads_the_censoring_column_as_lloq_would(data, tmp_path):
    table, lloq = data
    want = ks.estimate(MODEL, table, doses=COURSE, lloq=lloq)
    assert int(want.censored.sum()) >= 2
    path = _nonmem_file(tmp_path / "cens.csv", table, lloq)
    got = ks.estimate(MODEL, path, analyte_by_cmt=BY_CMT)
    np.testing.assert_array_equal(got.censored.values, want.censored.values)
    np.testing.assert_array_equal(got.dv.values, want.dv.values)  # the LLOQs
    # the file's RATE gives the 40-min duration to rounding (as in test_estimation)
    np.testing.assert_allclose(got.theta.values, want.theta.values, atol=1e-7)
    np.testing.assert_allclose(got.objective.values, want.objective.values, rtol=1e-10)
    n = int(want.censored.sum())
    assert got.attrs["censoring"] == (
        f"column CENS of {path}: {n} observation(s) below the LLOQ, DV holding the "
        f"LLOQ (NONMEM M3 convention)"
    )
    assert want.attrs["censoring"] == f"lloq=: {n} observation(s) below the LLOQ"
    # lloq= saying the same as the column: accepted, the same estimates
    agreed = ks.estimate(MODEL, path, analyte_by_cmt=BY_CMT, lloq=lloq)
    np.testing.assert_array_equal(agreed.objective.values, got.objective.values)
    assert agreed.attrs["censoring"].endswith("; lloq= agrees with it")
    # without the column (and no lloq=) the LLOQs are levels like any other,
    # and the result says so
    plain = _nonmem_file(tmp_path / "plain.csv", table, lloq, column=None)
    ignored = ks.estimate(MODEL, plain, analyte_by_cmt=BY_CMT)
    assert int(ignored.censored.sum()) == 0
    assert ignored.attrs["censoring"] == (
        f"none: {plain} has no CENS/BLQ/BQL column and no lloq= was given"
    )


SMALL = (
    f"{HEAD},CENS\n"
    "1,0,1,20,30,1,1,.,70,0\n"
    "1,1,0,.,.,2,0,50,70,0\n"
    "1,6,0,.,.,2,0,{dv},70,{cens}\n"
)


@pytest.mark.parametrize(
    "dv, cens, lloq, message",
    [
        (
            2,
            1,
            3.0,
            "line 4, ID 1: CENS 1 with DV 2 ng/mL, the record's LLOQ, but lloq= gives "
            "3 ng/mL for s_ketamine; the CENS column marks the censored records by "
            "itself: drop lloq=, or correct the file",
        ),
        (
            1.5,
            0,
            {"s_ketamine": "2 ng/mL"},
            "line 4, ID 1: DV 1.5 ng/mL is below lloq= 2 ng/mL for s_ketamine, but "
            "CENS is 0 (measured); the CENS column marks the censored records by "
            "itself: drop lloq=, or correct the file",
        ),
    ],
)
def test_estimate_refuses_lloq_that_contradicts_the_column(
    tmp_path, dv, cens, lloq, message
):
    path = _write(tmp_path, SMALL.format(dv=dv, cens=cens))
    with pytest.raises(ValueError, match=f"^{re.escape(f'{path}: {message}')}$"):
        ks.estimate(MODEL, path, analyte_by_cmt=BY_CMT, lloq=lloq)


def test_an_id_without_observations_warns_that_it_is_the_prior(tmp_path):
    """An ID with dose records only is estimated as the population prior (random
    effects 0); the result said nothing. It warns, naming the ID."""
    path = _write(
        tmp_path,
        f"{HEAD},CENS\n"
        "1,0,1,20,30,1,1,.,70,0\n"
        "1,1,0,.,.,2,0,50,70,0\n"
        "1,6,0,.,.,2,0,2,70,1\n"
        "2,0,1,20,30,1,1,.,70,0\n",
    )
    with pytest.warns(
        ks.ValidityWarning,
        match=f"^{re.escape(str(path))}: ID 2 has no observation \\(EVID 0, MDV 0\\): "
        r"its estimates are the population prior \(random effects 0\), not fitted "
        r"to levels$",
    ):
        est = ks.estimate(MODEL, path, analyte_by_cmt=BY_CMT)
    np.testing.assert_array_equal(est.eta.sel(subject=2).values, 0.0)
