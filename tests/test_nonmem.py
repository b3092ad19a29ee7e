"""NONMEM-style event tables: reading, exact steady state, writing, errors."""

import re

import numpy as np
import pytest

import ketasim as ks
from ketasim.nonmem import read_nonmem, simulate_nonmem, write_nonmem

from .test_simulate import one_compartment

CSV = """ID,TIME,EVID,AMT,RATE,CMT,II,ADDL,SS,MDV,DV,WT,AGE
1,0,1,35,52.5,1,0,0,0,1,.,70,40
1,1,0,.,.,.,.,.,.,0,.,70,40
1,72,1,35,52.5,1,72,2,0,1,.,70,40
2,0,1,20,0,1,0,0,0,1,.,55,30
2,2,0,.,.,.,.,.,.,0,.,55,30
"""


def write(tmp_path, text, name="data.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_read_regimens_and_covariates(tmp_path):
    tab = read_nonmem(write(tmp_path, CSV), "domino")
    assert tab.ids == (1, 2)
    r1 = tab.regimens[1]
    assert r1.times == (0.0, 72.0, 144.0, 216.0)  # ADDL 2 every II 72 h
    assert r1.doses[0].duration == pytest.approx(35 / 52.5)
    assert tab.regimens[2].doses[0].duration is None
    np.testing.assert_array_equal(tab.covariates["weight"], [70, 55])
    np.testing.assert_array_equal(tab.observations[1], [1.0])


def test_simulate_matches_simulate(tmp_path):
    tab = read_nonmem(write(tmp_path, CSV), "domino")
    ds = simulate_nonmem("domino", tab, times=[1.0, 2.0])
    ref = ks.simulate(
        "domino",
        tab.regimens[2],
        times=[1.0, 2.0],
        subjects=ks.Subjects(covariates={"weight": 55, "age": 30}),
    )
    np.testing.assert_allclose(
        ds.concentration.values[1], ref.concentration.values[0], rtol=1e-12
    )


def test_steady_state_exact_one_compartment(tmp_path):
    """SS=1 bolus D every tau into CL 10 L/h, V 50 L: peak D/V / (1 - e^-k tau),
    trough the peak times e^-k tau; also equals 200 repeated doses."""
    m = one_compartment(tmp_path)
    text = (
        "ID,TIME,EVID,AMT,CMT,II,SS\n1,0,1,100,1,12,1\n1,6,0,.,.,.,.\n"
        "1,11.999,0,.,.,.,.\n"
    )
    tab = read_nonmem(write(tmp_path, text), m)
    ds = simulate_nonmem(m, tab, times=[0.0, 6.0, 12.0 - 1e-9])
    k = 10 / 50
    peak = 100 / 50 / (1 - np.exp(-k * 12)) * 1000
    ref = peak * np.exp(-k * np.array([0.0, 6.0, 12.0 - 1e-9]))
    np.testing.assert_allclose(ds.concentration.values[0, 0], ref, rtol=1e-10)
    many = ks.simulate(
        m,
        ks.Regimen.every(ks.Dose.bolus("100 mg"), interval=12, n=200),
        times=[199 * 12 + 6.0],
    )
    assert many.concentration.item() == pytest.approx(ref[1], rel=1e-10)


def test_steady_state_infusion_multicompartment(tmp_path):
    """SS=2 infusion on a 3-compartment model: equals a long run of the same
    infusion (200 intervals), to 1e-9."""
    text = "ID,TIME,EVID,AMT,RATE,CMT,II,SS,WT\n1,0,1,35,52.5,1,24,2,70\n"
    tab = read_nonmem(write(tmp_path, text), "domino")
    t = np.array([0.5, 3.0, 20.0])
    ds = simulate_nonmem("domino", tab, times=t)
    reg = ks.Regimen.every(
        ks.Dose.infusion("35 mg", duration=35 / 52.5), interval=24, n=300
    )
    long = ks.simulate("domino", reg, times=299 * 24 + t)
    np.testing.assert_allclose(
        ds.concentration.values[0, 0], long.concentration.values[0, 0], rtol=1e-9
    )


def test_round_trip(tmp_path):
    pop = ks.Population(3, seed=1, iiv=False)
    reg = ks.Regimen(
        [
            ks.Dose.infusion("35 mg", duration="40 min"),
            ks.Dose.bolus("10 mg", time="24 h"),
        ]
    )
    ds = ks.simulate("domino", reg, population=pop, times=ks.grid("30 h", "1 h"))
    p = write_nonmem(ds, tmp_path / "out.csv")
    tab = read_nonmem(p, "domino")
    assert tab.ids == (0, 1, 2)
    for sid in tab.ids:
        got = tab.regimens[sid]
        assert got.times == reg.times
        assert [d.duration for d in got] == pytest.approx([40 / 60, None])
        assert [d.amount for d in got] == pytest.approx([35.0, 10.0])
    np.testing.assert_array_equal(tab.covariates["weight"], ds.weight.values)
    text = p.read_text().splitlines()
    assert text[0].startswith("ID,TIME,EVID,AMT,RATE,CMT,MDV,DV")


BAD = [
    (
        "ID,TIME,EVID,AMT,FOO\n1,0,1,5,1\n",
        "line 1 (header), column 5: unknown column 'FOO'",
    ),
    ("ID,TIME,EVID,AMT\n1,0,1,abc\n", "line 2, ID 1, column AMT: not a number: 'abc'"),
    (
        "ID,TIME,EVID,AMT\n1,5,1,5\n1,2,0,.\n",
        "line 3, ID 1, column TIME: 2 h is before the previous record of ID 1 (5 h)",
    ),
    (
        "ID,TIME,EVID,AMT\n1,0,3,5\n",
        "line 2, ID 1, column EVID: EVID 3 is not supported (0 observation, 1 dose, "
        "2 other)",
    ),
    (
        "ID,TIME,EVID,AMT\n1,0,1,0\n",
        "line 2, ID 1, column AMT: a dose needs AMT > 0 mg; got '0'",
    ),
    (
        "ID,TIME,EVID,AMT,CMT\n1,0,1,5,7\n",
        "line 2, ID 1, column CMT: CMT 7 maps to no route; map it with route_by_cmt "
        "(now {1: 'iv'})",
    ),
    (
        "ID,TIME,EVID,AMT,ADDL\n1,0,1,5,3\n",
        "line 2, ID 1, column ADDL: ADDL 3 needs II > 0 h",
    ),
    (
        "ID,TIME,EVID,AMT\n1,-1,1,5\n",
        "line 2, ID 1, column TIME: must be >= 0 h; got -1",
    ),
    (
        "ID,TIME,EVID,AMT,RATE\n1,0,1,5,-2\n",
        "line 2, ID 1, column DUR: RATE = -2 needs DUR > 0 h",
    ),
    (
        "ID,TIME,EVID,AMT,SS,II\n1,0,1,5,0,0\n1,1,1,5,1,12\n",
        "line 3, ID 1, column SS: SS = 1 resets the subject",
    ),
    ("ID,TIME,AMT\n1,0,5\n", "line 1 (header) has no EVID column"),
    ("ID,TIME,EVID,AMT\n1,0,.,50\n", "line 2, ID 1, column EVID: empty; write 0"),
    (
        "ID,TIME,EVID,AMT\n1,0,0,50\n",
        "line 2, ID 1, column AMT: set on an EVID 0 record (not a dose)",
    ),
    (
        "ID,TIME,EVID,AMT,CMT\n1,0,1,5,1.7\n",
        "line 2, ID 1, column CMT: must be a whole number; got '1.7'",
    ),
    (
        "ID,TIME,EVID,AMT,ADDL,II\n1,0,1,5,1.5,12\n",
        "line 2, ID 1, column ADDL: must be a whole number; got '1.5'",
    ),
    (
        "ID,TIME,EVID,AMT,DUR\n1,0,1,5,2\n",
        "line 2, ID 1, column DUR: DUR is set but RATE is 0",
    ),
    (
        "ID,TIME,EVID,AMT,II\n1,0,1,5,-12\n",
        "line 2, ID 1, column II: must be >= 0 h; got -12",
    ),
    # MDV is 0 or 1: other values used to drop the observation silently
    (
        "ID,TIME,EVID,AMT,MDV\n1,0,1,5,1\n1,1,0,.,2\n",
        "line 3, ID 1, column MDV: must be 0 (observation) or 1 (no observation); "
        "got '2'",
    ),
    (
        "ID,TIME,EVID,AMT,MDV\n1,0,1,5,1\n1,1,0,.,-1\n",
        "line 3, ID 1, column MDV: must be 0 (observation) or 1 (no observation); "
        "got '-1'",
    ),
    (
        "ID,TIME,EVID,AMT,MDV\n1,0,1,5,1\n1,1,0,.,0.5\n",
        "line 3, ID 1, column MDV: must be a whole number; got '0.5'",
    ),
    (
        "ID,TIME,EVID,AMT,MDV\n1,0,1,5,0\n",
        "line 2, ID 1, column MDV: MDV 0 on an EVID 1 record; NONMEM (PREDPP) needs "
        "MDV 1",
    ),
    (
        "ID,TIME,EVID,AMT,MDV\n1,0,1,5,1\n1,1,2,.,0\n",
        "line 3, ID 1, column MDV: MDV 0 on an EVID 2 record",
    ),
    (
        "ID,TIME,EVID,AMT\n1,0,1,5\n1,1,-1,.\n",
        "line 3, ID 1, column EVID: EVID -1 is not supported",
    ),
    (
        "ID,TIME,EVID,AMT\n1,0,1,5\n1,1,0.5,.\n",
        "line 3, ID 1, column EVID: must be a whole number; got '0.5'",
    ),
    (
        "ID,TIME,EVID,AMT,CMT\n1,0,1,5,1\n1,1,2,.,2\n",
        "line 3, ID 1, column CMT: CMT on an EVID 2 record switches a compartment on "
        "or off in NONMEM",
    ),
    # duplicated columns, also under two names or in two cases
    (
        "ID,TIME,EVID,AMT,AMT\n1,0,1,5,6\n",
        "line 1 (header): column AMT is given twice (columns 4 and 5); keep one",
    ),
    (
        "ID,TIME,EVID,AMT,wt,WT\n1,0,1,5,70,80\n",
        "line 1 (header): column WT is given twice (columns 5 and 6)",
    ),
    (
        "ID,TIME,EVID,AMT,WT,WEIGHT\n1,0,1,5,70,70\n",
        "line 1 (header): columns WT and WEIGHT both give covariate weight",
    ),
    # an ID that comes back is refused (NONMEM: a new individual)
    (
        "ID,TIME,EVID,AMT\n1,0,1,5\n2,0,1,5\n\n1,1,0,.\n",
        "line 5, ID 1, column ID: ID 1 comes back after the records of ID 2 (its "
        "records began on line 2). NONMEM would start a new individual here",
    ),
    # ADDL expansion is bounded (per subject, over all its records)
    (
        "ID,TIME,EVID,AMT,II,ADDL\n1,0,1,5,1,2000000\n",
        "line 2, ID 1, column ADDL: ADDL 2000000 would give ID 1 2000001 doses; at "
        "most 100000 per subject",
    ),
    (
        "ID,TIME,EVID,AMT,II,ADDL\n7,0,1,5,1,60000\n7,1,1,5,1,60000\n",
        "line 3, ID 7, column ADDL: ADDL 60000 would give ID 7 120002 doses",
    ),
    (
        "ID,TIME,EVID,AMT,II,ADDL\n1,0,1,5,1,-1\n",
        "line 2, ID 1, column ADDL: ADDL -1 needs II > 0 h and ADDL >= 0",
    ),
    # numbers: finite, named by line and column
    (
        "ID,TIME,EVID,AMT\n1,0,1,inf\n",
        "line 2, ID 1, column AMT: must be finite; got 'inf'",
    ),
    (
        "ID,TIME,EVID,AMT\n1,nan,1,5\n",
        "line 2, ID 1, column TIME: must be finite; got 'nan'",
    ),
    (
        "ID,TIME,EVID,AMT,RATE\n1,0,1,5,1e999\n",
        "line 2, ID 1, column RATE: must be finite; got '1e999'",
    ),
    (
        "ID,TIME,EVID,AMT,DV\n1,0,1,5,.\n1,1,0,.,BLQ\n",
        "line 3, ID 1, column DV: not a number: 'BLQ'",
    ),
    ("ID,TIME,EVID,AMT\nA,0,1,5\n", "line 2, column ID: not a number: 'A'"),
    ("ID,TIME,EVID,AMT\n.,0,1,5\n", "line 2, column ID: empty"),
    ("ID,TIME,EVID,AMT\n3,.,1,5\n", "line 2, ID 3, column TIME: empty"),
    (
        "ID,TIME,EVID,AMT,RATE\n1,0,1,5,-1\n",
        "line 2, ID 1, column RATE: must be 0 (bolus), > 0 (mg/h) or -2 (duration "
        "from DUR); got -1",
    ),
    (
        "ID,TIME,EVID,AMT,SS,II\n1,0,1,5,3,12\n",
        "line 2, ID 1, column SS: must be 0, 1 or 2; got 3",
    ),
    (
        "ID,TIME,EVID,AMT,DEVICE\n1,0,1,5,-1\n",
        "line 2, ID 1, column DEVICE: must be 0 (not a device dose) or 1, 2, ...; "
        "got -1",
    ),
    ("ID,TIME,EVID,AMT\n1,0,1\n", "line 2: 3 fields, the header has 4"),
    # an observation between two doses given at one time
    (
        "ID,TIME,EVID,AMT\n1,2,1,5\n1,2,0,.\n1,2,0,.\n1,2,1,5\n",
        "line 5, ID 1, column TIME: this dose at 2 h follows an observation record "
        "(lines 3-4) that itself follows a dose at the same time",
    ),
    # covariates: one value per subject, on every record
    (
        "ID,TIME,EVID,AMT,WT\n1,0,1,5,70\n1,1,0,.,70\n1,2,0,.,72\n1,3,0,.,70\n",
        "ID 1, column WT: changes within the subject (70 on lines 2-3, 5; 72 on line "
        "4). ketasim gives each subject one weight",
    ),
    (
        "ID,TIME,EVID,AMT,AGE\n1,0,1,5,40\n2,0,1,5,30\n2,1,0,.,.\n",
        "ID 2, column AGE: changes within the subject (30 on line 3; empty on line 4)",
    ),
    (
        "ID,TIME,EVID,AMT,WT\n1,0,1,5,70\n2,0,1,5,.\n2,1,0,.,.\n",
        "ID 2, column WT: covariate weight is missing (empty on lines 3-4); give its "
        "value",
    ),
    (
        "ID,TIME,EVID,AMT,DEVICE\n1,0,1,5,1\n",
        "line 2, ID 1, column DEVICE: DEVICE 1 on route 'iv' (CMT 1) of model "
        "'domino', which does not absorb per device; write 0 or leave it empty",
    ),
    # covariates in the plausible range simulate accepts (flags 0 or 1)
    (
        "ID,TIME,EVID,AMT,WT\n1,0,1,5,-70\n1,1,0,.,-70\n",
        "lines 2-3, ID 1, column WT: covariate 'weight' must be in [0.3, 400] kg",
    ),
    (
        "ID,TIME,EVID,AMT,FEMALE\n1,0,1,5,2\n",
        "line 2, ID 1, column FEMALE: covariate 'female' is a 0/1 flag (1 = yes); "
        "got 2",
    ),
    (
        "ID,TIME,EVID,AMT,RATE\n1,0,1,1e307,100\n",
        "line 2, ID 1, column RATE: AMT 1e+307 mg at RATE 100 mg/h lasts 1e+305 h, "
        "beyond the 1e+06 h ketasim simulates; check AMT (mg) and RATE (mg/h)",
    ),
    ("", "empty file"),
    ("ID,TIME,EVID,AMT\n\n", "no records after the header (line 1)"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_malformed_rows(tmp_path, text, message):
    """Each error names the file, the line, the ID and the column."""
    p = write(tmp_path, text)
    with pytest.raises(ValueError, match=re.escape(f"{p}: {message}")):
        read_nonmem(p, "domino")


@pytest.mark.parametrize(
    "routes,error,message",
    [
        (
            {1: "nasal"},
            ValueError,
            "route_by_cmt[1] = 'nasal' is not a route of model "
            "'domino'; its routes: iv, intranasal",
        ),
        (
            {"1": "iv"},
            TypeError,
            "route_by_cmt keys are CMT numbers (int); got '1' (str)",
        ),
        ([(1, "iv")], TypeError, "route_by_cmt must be a dict {CMT: route}"),
    ],
)
def test_route_by_cmt_is_checked(tmp_path, routes, error, message):
    with pytest.raises(error, match=re.escape(message)):
        read_nonmem(write(tmp_path, CSV), "domino", route_by_cmt=routes)


def test_simulate_nonmem_needs_an_event_table():
    with pytest.raises(TypeError, match=r"table must be an EventTable .*; got dict"):
        simulate_nonmem("domino", {1: ks.Regimen([])})


def test_byte_order_mark_and_blank_lines(tmp_path):
    """A spreadsheet's UTF-8 byte-order mark is not part of the ID column's name;
    blank lines are skipped but still counted in line numbers."""
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbfID,TIME,EVID,AMT\r\n1,0,1,5\r\n\r\n1,1,0,.\r\n")
    tab = read_nonmem(p, "domino")
    assert tab.ids == (1,) and tab.records[1][0].line == 2
    np.testing.assert_array_equal(tab.observations[1], [1.0])
    p.write_bytes(b"\xef\xbb\xbfID,TIME,EVID,AMT\r\n1,0,1,5\r\n\r\n1,1,0,x\r\n")
    with pytest.raises(ValueError, match="line 4, ID 1, column AMT: not a number"):
        read_nonmem(p, "domino")


def test_mdv_one_and_evid_two_records_are_not_observations(tmp_path):
    text = (
        "ID,TIME,EVID,AMT,MDV,CMT\n1,0,1,5,1,1\n1,1,0,.,1,.\n1,2,2,.,1,0\n"
        "1,3,0,.,0,1\n1,4,0,.,.,.\n"
    )
    tab = read_nonmem(write(tmp_path, text), "domino")
    np.testing.assert_array_equal(tab.observations[1], [3.0, 4.0])


def test_addl_bound_is_inclusive(tmp_path):
    """MAX_DOSES_PER_SUBJECT doses (a record and its ADDL copies) are read."""
    from ketasim.nonmem import MAX_DOSES_PER_SUBJECT

    n = MAX_DOSES_PER_SUBJECT
    text = f"ID,TIME,EVID,AMT,II,ADDL\n1,0,1,5,1,{n - 2}\n1,{n},1,5,0,0\n"
    tab = read_nonmem(write(tmp_path, text), "domino")
    assert len(tab.regimens[1]) == n
    assert tab.regimens[1].times[-2:] == (n - 2.0, float(n))


def test_validity_warning_once_per_table(tmp_path):
    """A table with subjects outside the model's covariate ranges gets one
    ValidityWarning counting all of them, not one per subject."""
    import warnings

    text = "ID,TIME,EVID,AMT,CMT,AGE,WT\n" + "".join(
        f"{i},0,1,5,1,{age},30\n{i},1,0,.,.,{age},30\n"
        for i, age in ((1, 8), (2, 30), (3, 40), (4, 10))
    )
    tab = read_nonmem(write(tmp_path, text), "herd_2007")  # valid for age 1-14 y
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        simulate_nonmem("herd_2007", tab)
    msgs = [
        str(w.message) for w in caught if issubclass(w.category, ks.ValidityWarning)
    ]
    assert msgs == [
        "2 of 4 patients have age outside [1, 14] y, the range model "
        "'herd_2007' was estimated on (observed 8-40)"
    ]


def one_cpt_bolus(t, doses):
    """ng/mL of 1-compartment boluses (V 50 L, CL 10 L/h): (time, mg) pairs."""
    k = 10 / 50
    return sum(mg / 50 * 1000 * np.exp(-k * (t - td)) * (t >= td) for td, mg in doses)


def ss_history(t, t_ss, mg, ii):
    """The steady state an SS record adds: the same dose every ii before t_ss."""
    k = 10 / 50
    return (
        mg
        / 50
        * 1000
        * np.exp(-k * (t - t_ss))
        * np.exp(-k * ii)
        / (1 - np.exp(-k * ii))
        * (t >= t_ss)
    )


def test_steady_state_after_addl_doses_and_twice(tmp_path):
    """The SS record's own dose gets the steady state, also when ADDL copies of an
    earlier record sort before it, and every SS record of a subject counts."""
    m = one_compartment(tmp_path)
    text = (
        "ID,TIME,EVID,AMT,CMT,II,ADDL,SS\n"
        "1,0,1,50,1,12,3,0\n1,24,1,20,1,24,0,2\n"  # SS at 24 h after 0, 12 h
        "2,0,1,10,1,12,0,1\n2,24,1,20,1,24,0,2\n"
    )  # two SS records
    tab = read_nonmem(write(tmp_path, text), m)
    t = np.array([1.0, 25.0, 37.0, 50.0])
    ds = simulate_nonmem(m, tab, times=t)
    want1 = one_cpt_bolus(
        t, [(0, 50), (12, 50), (24, 50), (36, 50), (24, 20)]
    ) + ss_history(t, 24.0, 20, 24.0)
    want2 = (
        one_cpt_bolus(t, [(0, 10), (24, 20)])
        + ss_history(t, 0.0, 10, 12.0)
        + ss_history(t, 24.0, 20, 24.0)
    )
    np.testing.assert_allclose(
        ds.concentration.values[:, 0], [want1, want2], rtol=1e-10
    )


def test_steady_state_with_input_longer_than_the_interval_is_rejected(tmp_path):
    text = "ID,TIME,EVID,AMT,RATE,CMT,II,SS,WT\n1,0,1,50,2.5,1,12,1,70\n"  # 20 h
    p = write(tmp_path, text)
    tab = read_nonmem(p, "domino")
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"{p}: line 2, ID 1, column SS: steady state (SS) at 0 h: the dose's "
            f"input lasts 20 h (infusion, zero-order absorption or lag), longer than "
            f"II = 12 h"
        ),
    ):
        simulate_nonmem("domino", tab, times=[1.0])


def test_devices_are_read_and_written(tmp_path):
    """A route that absorbs per device needs DEVICE; with it, a table gives what
    simulate gives for the same regimen, and write_nonmem writes it back."""
    reg = ks.esketamine_induction("84 mg", weeks=1, continuation_weeks=0)
    t = ks.grid("4 d", "30 min")
    ds = ks.simulate(
        "perez_ruixo_2021",
        reg,
        times=t,
        subjects=ks.Subjects(covariates={"weight": 70}),
    )
    p = write_nonmem(ds, tmp_path / "spray.csv", analyte="s_ketamine")
    routes = {1: "intranasal"}
    tab = read_nonmem(p, "perez_ruixo_2021", route_by_cmt=routes)
    assert [d.device for d in tab.regimens[0]] == [d.device for d in reg]
    back = simulate_nonmem("perez_ruixo_2021", tab)
    np.testing.assert_allclose(
        back.concentration.values[0], ds.concentration.values[0], rtol=1e-12
    )
    assert back.observed_time.values.all()
    lines = [x.split(",") for x in p.read_text().splitlines()]
    assert lines[0][8] == "DEVICE"
    lines = [",".join(x[:8] + x[9:]) for x in lines]  # the table without DEVICE
    with pytest.raises(ValueError, match="add a DEVICE column"):
        read_nonmem(
            write(tmp_path, "\n".join(lines) + "\n", "nodev.csv"),
            "perez_ruixo_2021",
            route_by_cmt=routes,
        )
    with pytest.raises(ValueError, match=r"2 analytes \(s_ketamine, s_norketamine\)"):
        write_nonmem(ds, tmp_path / "x.csv")


def test_write_needs_one_scenario(tmp_path):
    t = ks.grid("1 d", "1 h")
    ds = ks.run_scenarios(
        [
            ks.Scenario("a", "domino", ks.Dose.bolus("5 mg"), times=t),
            ks.Scenario(
                "b",
                "domino",
                ks.Regimen.at([0, 12], ks.Dose.bolus("5 mg"), unit="h"),
                times=t,
                population=ks.Population(3, seed=1, iiv=False),
            ),
        ]
    )
    with pytest.raises(
        ValueError,
        match=r"select it first, e.g. "
        r"ds.sel\(scenario='a'\)",
    ):
        write_nonmem(ds, tmp_path / "x.csv")
    p = write_nonmem(ds.sel(scenario="a"), tmp_path / "a.csv")  # padding dropped:
    tab = read_nonmem(p, "domino")  # scenario a has one subject and one dose
    assert tab.ids == (0,) and tab.regimens[0].times == (0.0,)
    assert "nan" not in p.read_text()
    assert tuple(
        read_nonmem(
            write_nonmem(ds.sel(scenario="b"), tmp_path / "b.csv"), "domino"
        ).ids
    ) == (0, 1, 2)


def test_device_zero_is_no_device_and_numbers_read_back(tmp_path):
    """DEVICE 0 (as write_nonmem and dose_device write it) means 'not a device':
    an IV dose beside sprays; values are written in the shortest exact form."""
    text = (
        "ID,TIME,EVID,AMT,RATE,CMT,DEVICE,WT,AGE,ASIAN,JAPANESE\n"
        "1,0,1,28,56,1,0,70.1,40,0,0\n1,24,1,28,0,2,1,70.1,40,0,0\n"
        "1,24.083333333333332,1,28,0,2,2,70.1,40,0,0\n"
        "1,30,0,.,.,.,.,70.1,40,0,0\n"
    )
    routes = {1: "iv", 2: "intranasal"}
    tab = read_nonmem(write(tmp_path, text), "perez_ruixo_2021", route_by_cmt=routes)
    assert [d.device for d in tab.regimens[1]] == [None, 1, 2]
    empty = text.replace("1,24,1,28,0,2,1,", "1,24,1,28,0,2,.,")
    with pytest.raises(
        ValueError,
        match=r"line 3, ID 1, column DEVICE: .* give "
        r"this dose's DEVICE",
    ):
        read_nonmem(
            write(tmp_path, empty, "e.csv"), "perez_ruixo_2021", route_by_cmt=routes
        )
    ds = simulate_nonmem("perez_ruixo_2021", tab)
    assert ds.weight.values[0] == 70.1


def test_observed_time_marks_each_subjects_records(tmp_path):
    tab = read_nonmem(write(tmp_path, CSV), "domino")
    ds = simulate_nonmem("domino", tab)
    np.testing.assert_array_equal(ds.time.values, [1.0, 2.0])
    np.testing.assert_array_equal(
        ds.observed_time.values, [[True, False], [False, True]]
    )


def test_failed_subjects_are_written_with_missing_values(tmp_path):
    """errors='keep' leaves a failed subject's values NaN: it is still written
    (doses, and observations with MDV 1 and no DV), not dropped."""
    d = ks.Dose.infusion("0.5 mg/kg", duration="40 min")
    ds = ks.simulate(
        "domino",
        d,
        times=[1.0, 2.0],
        subjects=ks.Subjects(covariates={"weight": [60.0, 80.0]}),
        solver=ks.ODE(max_steps=1),
        errors="keep",
    )
    assert (ds.status.values != 0).all()
    p = write_nonmem(ds, tmp_path / "failed.csv")
    lines = p.read_text().splitlines()
    assert len(lines) == 1 + 2 * 3  # per subject: a dose and two observations
    obs = [x.split(",") for x in lines[1:] if x.split(",")[2] == "0"]
    assert all(r[6:8] == ["1", "."] for r in obs)  # MDV 1, DV missing
    tab = read_nonmem(p, "domino")
    assert tab.ids == (0, 1) and all(v.size == 0 for v in tab.observations.values())


# overflow: what ks.simulate refuses (check_magnitude) simulate_nonmem refuses too,
# by the table's file, line, ID and AMT column
OVERFLOW = [
    (
        "ID,TIME,EVID,AMT,CMT,WT\n1,0,1,5,1,20\n1,1,0,.,.,20\n2,0,1,1e307,1,20\n"
        "2,1,0,.,.,20\n",
        "line 4, ID 2, column AMT: the dose (1e+307 mg by route 'iv' at 0 h) gives "
        "1e+307 mg to ID 2 (1e+307 mg in all): concentrations could reach inf ng/mL",
    ),
    (
        "ID,TIME,EVID,AMT,CMT,II,SS,WT\n1,0,1,1e306,1,12,1,20\n1,1,0,.,.,.,.,20\n",
        "line 2, ID 1, column AMT: the dose (1e+306 mg by route 'iv' at 0 h) gives "
        "1e+306 mg to ID 1 (1e+306 mg in all): concentrations could reach 6.11e+307 "
        "ng/mL",
    ),
    (
        "ID,TIME,EVID,AMT,CMT,II,ADDL,WT\n1,0,1,5,1,0,0,20\n1,6,1,5e306,1,12,3,20\n"
        "1,50,0,.,.,.,.,20\n",
        "line 3, ID 1, column AMT: the dose (5e+306 mg by route 'iv' at 6 h) gives "
        "5e+306 mg to ID 1 (2e+307 mg in all)",
    ),
    # the regimen's doses are in time order (ADDL copies of line 2 around the
    # dose of line 3): the message still names line 3
    (
        "ID,TIME,EVID,AMT,CMT,II,ADDL,WT\n1,0,1,5,1,12,3,20\n1,6,1,1e307,1,0,0,20\n"
        "1,50,0,.,.,.,.,20\n",
        "line 3, ID 1, column AMT: the dose (1e+307 mg by route 'iv' at 6 h) gives "
        "1e+307 mg to ID 1",
    ),
    # each dose passes, the steady state (II 0.0001 h) accumulates 2.5e300 mg
    (
        "ID,TIME,EVID,AMT,CMT,II,SS,WT\n1,0,1,1e296,1,0.0001,1,20\n1,1,0,.,.,.,.,20\n",
        "line 2, ID 1, column AMT: the dose (1e+296 mg by route 'iv' at 0 h) at "
        "steady state (SS 1, II 0.0001 h) holds 2.525e+300 mg",
    ),
]


@pytest.mark.parametrize("text,message", OVERFLOW)
def test_overflowing_dose_names_the_line(tmp_path, text, message):
    p = write(tmp_path, text)
    tab = read_nonmem(p, "elkomy_2015")
    with pytest.raises(ks.DoseError, match=re.escape(f"{p}: {message}")):
        simulate_nonmem("elkomy_2015", tab)


def test_overflow_guard_is_simulates(tmp_path):
    """The same dose through ks.simulate is refused by the same guard."""
    with pytest.raises(
        ks.DoseError,
        match=re.escape(
            "doses[0] (1e+307 mg by route 'iv' at 0 h) gives 1e+307 mg to "
            "subject 0 (1e+307 mg in all)"
        ),
    ):
        ks.simulate(
            "elkomy_2015",
            ks.Dose.bolus("1e307 mg"),
            times=[1.0],
            subjects=ks.Subjects(covariates={"weight": 20}),
        )


MISSING = [
    (
        "elkomy_2015",
        "ID,TIME,EVID,AMT\n1,0,1,5\n1,1,0,.\n",
        "the table has no WT column, but model 'elkomy_2015' uses weight (power "
        "effects on CL, Q, V1, V2); without it every subject would get the model's "
        "reference (weight 70 kg). Add the column WT (kg), one value per subject on "
        "every record",
    ),
    (
        "domino",
        "ID,TIME,EVID,AMT,AGE\n1,0,1,5,30\n1,1,0,.,30\n",
        "the table has no WT column, but model 'domino' uses weight (per-kg parameter "
        "V1); without it every subject would get the model's reference (weight 70 "
        "kg). Add the column WT (kg)",
    ),
    (
        "perez_ruixo_2021",
        "ID,TIME,EVID,AMT,WT,AGE,JAPANESE\n1,0,1,5,70,40,0\n",
        "the table has no ASIAN column, but model 'perez_ruixo_2021' uses asian "
        "(categorical effects on kel, CLn); without it every subject would get the "
        "model's reference (asian 0). Add the column ASIAN (0 or 1)",
    ),
    (
        "perez_ruixo_2021",
        "ID,TIME,EVID,AMT,WT\n1,0,1,5,70\n",
        "the table has no ASIAN, JAPANESE or AGE column, but model 'perez_ruixo_2021' "
        "uses asian (categorical effects on kel, CLn); japanese (categorical effect "
        "on FRn); age (hinge effect on Qh); without it every subject would get the "
        "model's reference (asian 0, japanese 0, age 45 y). Add the columns ASIAN "
        "(0 or 1), JAPANESE (0 or 1), AGE (y)",
    ),
]


@pytest.mark.parametrize("model,text,message", MISSING)
def test_missing_covariate_column_is_refused(tmp_path, model, text, message):
    """A covariate the model uses is not silently taken at its reference (a
    child at 70 kg)."""
    p = write(tmp_path, text)
    tab = read_nonmem(p, model)
    with pytest.raises(ValueError, match=re.escape(f"{p}: {message}")):
        simulate_nonmem(model, tab)


def test_covariates_the_model_does_not_use_are_not_required(tmp_path):
    """elkomy_2015 states a reference age but has no age effect: no AGE column
    is needed, and the result is simulate's for the table's weight."""
    tab = read_nonmem(
        write(tmp_path, "ID,TIME,EVID,AMT,WT\n1,0,1,5,20\n1,1,0,.,20\n"), "elkomy_2015"
    )
    ds = simulate_nonmem("elkomy_2015", tab)
    ref = ks.simulate(
        "elkomy_2015",
        tab.regimens[1],
        times=[1.0],
        subjects=ks.Subjects(covariates={"weight": 20}),
    )
    assert ds.concentration.values[0, 0, 0] == ref.concentration.values[0, 0, 0]


def test_weight_from_height_and_bmi(tmp_path):
    """HT and BMI stand for WT, as in simulate: BMI x (HT / 100)^2 kg."""
    tab = read_nonmem(
        write(tmp_path, "ID,TIME,EVID,AMT,HT,BMI\n1,0,1,5,120,15\n1,1,0,.,120,15\n"),
        "elkomy_2015",
    )
    ds = simulate_nonmem("elkomy_2015", tab)
    ref = ks.simulate(
        "elkomy_2015",
        tab.regimens[1],
        times=[1.0],
        subjects=ks.Subjects(covariates={"weight": 15 * 1.2**2}),
    )
    np.testing.assert_allclose(
        ds.concentration.values[0, 0], ref.concentration.values[0, 0], rtol=1e-12
    )


@pytest.mark.parametrize(
    "convert,message",
    [
        (
            lambda ds: ds.assign(concentration=ds.pk.molar()),
            r"write_nonmem \(DV in ng/mL\) reads ds.concentration in ng/mL, as "
            r"ks.simulate returns it; its units attribute is 'nmol/L' \(DV is ng/mL: "
            r"write the ng/mL Dataset from ks.simulate; ds.pk.molar\(\) is for "
            r"plotting\)",
        ),
        (
            lambda ds: ds.assign(concentration=ds.concentration / 1000).pipe(
                lambda d: d.assign(
                    concentration=d.concentration.assign_attrs(units="mg/L")
                )
            ),
            r"its units attribute is 'mg/L'; convert the values to ng/mL and set "
            r"ds.concentration.attrs\['units'\] = 'ng/mL'",
        ),
        (
            lambda ds: ds.assign(concentration=ds.concentration.drop_attrs()),
            r"ds.concentration has no units attribute; write_nonmem \(DV in ng/mL\) "
            r"reads it in ng/mL",
        ),
    ],
)
def test_write_nonmem_refuses_dv_not_in_ng_per_ml(tmp_path, convert, message):
    """DV is ng/mL: molar (or otherwise labelled) concentrations would be written
    as ng/mL numbers that are not; nothing is written."""
    ds = ks.simulate("domino", ks.Dose.bolus("10 mg"), times=[0.5, 1.0])
    path = tmp_path / "w.csv"
    with pytest.raises(ks.UnitError, match=message):
        write_nonmem(convert(ds), path)
    assert not path.exists()
