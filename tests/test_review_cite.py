"""Review checks of ``ketasim cite``: every entry is valid BibTeX that LaTeX can
typeset (balanced braces; %, &, _, #, $ in free text escaped)."""

from __future__ import annotations

import re

import pytest

import ketasim as ks


def _p(value, unit):
    return {"value": value, "unit": unit, "description": "d", "source": "s",
            "grade": "choice"}  # fmt: skip


def _unescaped(text: str, ch: str) -> int:
    return len(re.findall(r"(?<!\\)" + re.escape(ch), text))


def _check_entry(entry: str) -> None:
    body = entry.split("\n", 1)[1]
    depth = 0
    for m in re.finditer(r"(?<!\\)[{}]", entry):
        depth += 1 if m.group() == "{" else -1
        assert depth >= 1 or m.end() == len(entry), entry  # closes only at the end
    assert depth == 0, entry
    for ch in "%&_#$":
        # outside the doi (a verbatim field), specials are escaped
        text = re.sub(r"\n  doi = \{[^}]*\}", "", body)
        assert _unescaped(text, ch) == 0, (ch, entry)


@pytest.mark.parametrize("name", ks.list_models())
def test_bundled_entries_are_valid_bibtex(name):
    for entry in ks.cite(name).split("\n\n"):
        _check_entry(entry)


def test_special_characters_of_a_users_reference_are_escaped():
    d = {
        "schema_version": 1,
        "id": "cite_me",
        "name": "cite_me",
        "drug": "ketamine",
        "enantiomer": "racemic",
        "population": "test",
        "sampling": "venous",
        "grade": "choice",
        "references": [
            {
                "key": "x",
                "citation": "Smith & Jones {2020}: F 40 % in Otto_2021 #3 ($5)",
                "note": "100% of 50_mg",
            }
        ],
        "parameters": {"V": _p(10.0, "L"), "k": _p(0.5, "1/h")},
        "compartments": {
            "central": {"role": "central", "volume": "V", "analyte": "ketamine"}
        },
        "flows": [{"from": "central", "k": "k"}],
        "routes": {"iv": {"kind": "intravenous", "target": "central"}},
        "analytes": {"ketamine": {"compartment": "central", "mw": 237.73}},
    }
    entry = ks.cite(ks.model_from_dict(d))
    _check_entry(entry)
    assert r"Smith \& Jones \{2020\}: F 40 \% in Otto\_2021 \#3 (\$5)" in entry
    assert r"annote = {100\% of 50\_mg}" in entry
