"""Results are bit-identical for 1 and 2 threads and for any chunking."""

import subprocess
import sys

import numpy as np

SCRIPT = """
import sys, numpy as np, numba
numba.set_num_threads(int(sys.argv[1]))
import ketasim as ks
pop = ks.Population(101, seed=5)
t = ks.grid("4 d", "15 min")
reg = ks.six_infusion_course(sessions=2)
a = ks.simulate("benchmarks/w2_iiv.toml", reg, population=pop, times=t,
                output=ks.Trajectories(auc=True))
b = ks.simulate("benchmarks/w2_iiv.toml", reg, population=pop, times=t,
                solver=ks.ODE())
m = ks.metrics(a, "session")
np.save(sys.argv[2], np.concatenate([a.concentration.values.ravel(),
        a.auc.values.ravel(), b.concentration.values.ravel(),
        m.cmax.values.ravel(), m.tmax.values.ravel(), m.auc.values.ravel()]))
"""


def test_one_and_two_threads_bit_identical(tmp_path):
    import ketasim

    root = __import__("pathlib").Path(ketasim.__file__).resolve().parents[2]
    out = []
    for threads in (1, 2):
        f = tmp_path / f"r{threads}.npy"
        subprocess.run(
            [sys.executable, "-c", SCRIPT, str(threads), str(f)], check=True, cwd=root
        )
        out.append(np.load(f))
    np.testing.assert_array_equal(out[0], out[1])


def test_chunking_bit_identical(monkeypatch, capsys):
    import ketasim as ks

    run_stage = sys.modules["ketasim._run"]  # where the progress bar is decided
    pop = ks.Population(300, seed=9)
    t = ks.grid("2 d", "30 min")
    whole = ks.simulate(
        "benchmarks/w2_iiv.toml",
        ks.six_infusion_course(sessions=1),
        population=pop,
        times=t,
    )
    # the same subjects simulated as a sub-population slice
    first = ks.simulate(
        "benchmarks/w2_iiv.toml",
        ks.six_infusion_course(sessions=1),
        population=ks.Population(100, seed=9),
        times=t,
    )
    np.testing.assert_array_equal(
        whole.concentration.values[:100], first.concentration.values
    )
    # the kernel called on 50 subject slices (as with a progress bar) changes nothing
    monkeypatch.setattr(run_stage, "PROGRESS_MIN_WORK", 0)
    sliced = ks.simulate(
        "benchmarks/w2_iiv.toml",
        ks.six_infusion_course(sessions=1),
        population=pop,
        times=t,
        progress=True,
    )
    assert "simulating" in capsys.readouterr().err
    np.testing.assert_array_equal(
        whole.concentration.values, sliced.concentration.values
    )


def test_progress_true_forces_a_bar_and_no_stderr_is_harmless(capsys, monkeypatch):
    """progress=True shows a bar even on a short run; 'auto' does not here (no
    terminal); without a stderr at all (pythonw, some services) nothing breaks."""
    import ketasim as ks

    d = ks.Dose.bolus("5 mg")
    ks.simulate("domino", d, times=[1.0], progress=True)
    assert "simulating" in capsys.readouterr().err
    ks.simulate("domino", d, times=[1.0], progress="auto")
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys, "stderr", None)
    ks.simulate("domino", d, times=[1.0], progress="auto")
    ks.simulate("domino", d, times=[1.0], progress=True)
