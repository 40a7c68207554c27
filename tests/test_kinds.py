"""The kind of an intervention: the head noun of its name (similarity.features.kinds)."""

from __future__ import annotations

import pytest

from similarity.features import STRUCTURED_COLUMNS
from similarity.features.fields import attribute_sets
from similarity.features.kinds import intervention_kinds


@pytest.mark.parametrize("names, kinds", [
    # real names from the corpus and the seed page
    (["INJECTION OF ALLOGENEIC MESENCHYMAL STEM CELLS"], {"injection", "cell"}),
    (["RAPA-501 Autologous T cells"], {"cell"}),
    (["autologous mesenchymal stem cells"], {"cell"}),
    (["Autologous dendritic cells transfected with amplified tumor RNA"], {"cell", "rna"}),
    (["Pneumococcal conjugate vaccine GSK1024850A", "Prevenar"], {"vaccine", "prevenar"}),
    (["monoclonal antibody A27.15", "monoclonal antibody E2.3"], {"antibody"}),
    (["laparoscopic surgery", "Exercise"], {"surgery", "exercise"}),
    (["Cyclophosphamide 50 mg/kg daily"], {"cyclophosphamide"}),
    (["therapies"], {"therapy"}),
    (["RAPA-501", "200 mg", "", None], set()),
    (None, set()),
])
def test_the_kind_is_the_head_noun_of_each_phrase(names, kinds):
    assert intervention_kinds(names) == kinds


def test_kinds_are_a_structured_attribute_of_a_trial(sample_trials):
    assert "intervention_kinds" in STRUCTURED_COLUMNS
    with_interventions = [t for t in sample_trials if t.intervention_names]
    assert with_interventions
    for trial in with_interventions:
        assert attribute_sets(trial)["intervention_kinds"] == intervention_kinds(trial.intervention_names)
