"""SNOMED-CT <-> SCP-ECG map: shipped data file, directional lookups, Challenge scoring equivalences, PTB-XL codes."""
from importlib import resources

import pytest

from ecgfm.labels.ptbxl import read_statements
from ecgfm.labels.snomed import (RELATIONS, challenge_classes, map_snomed_labels, mapping_table, scored_classes,
                                  scp_to_snomed, snomed_term, snomed_to_scp, unmapped_scored_classes)


def test_data_file_ships_with_the_package_and_states_its_source():
    text = resources.files("ecgfm.labels").joinpath("data/snomed_scp.csv").read_text()
    assert "dx_mapping_scored.csv" in text and "dx_mapping_unscored.csv" in text and "scp_statements.csv" in text
    header = next(line for line in text.splitlines() if not line.startswith("#"))
    assert header == "snomed_code,snomed_term,scp_code,relation,note"


def test_table_is_well_formed():
    table = mapping_table()
    assert len(table) >= 60
    assert table["snomed_code"].str.fullmatch(r"\d{6,18}").all()
    assert set(table["relation"]) <= set(RELATIONS)
    assert ((table["scp_code"] == "") == (table["relation"] == "none")).all()  # "none" rows, and only they, lack SCP
    assert not table.duplicated(["snomed_code", "scp_code"]).any()
    assert (table.groupby("snomed_code")["snomed_term"].nunique() == 1).all()  # one term per code


@pytest.mark.parametrize("snomed, scp", [
    ("164889003", "AFIB"), ("426783006", "SR"), ("59118001", "CRBBB"), ("270492004", "1AVB"), ("164890007", "AFLT"),
    ("426177001", "SBRAD"), ("427084000", "STACH"), ("713426002", "IRBBB"), ("445118002", "LAFB"),
    ("164909002", "CLBBB"), ("111975006", "LNGQT"), ("164873001", "LVH"), ("10370003", "PACE"), ("74390002", "WPW"),
])
def test_well_known_equivalents_in_both_directions(snomed, scp):
    assert scp in snomed_to_scp(snomed)
    assert snomed in scp_to_snomed(scp)


@pytest.mark.parametrize("codes", [("713427006", "59118001"), ("284470004", "63593006"), ("427172004", "17338001"),
                                   ("733534002", "164909002")])
def test_challenge_scoring_equivalences_map_to_the_same_statement(codes):
    first, second = codes
    assert snomed_to_scp(first) == snomed_to_scp(second) != []


def test_relations_are_followed_only_in_their_true_direction():
    # A site-specific infarction implies "myocardial infarction", not the other way round.
    assert scp_to_snomed("IMI") == ["164865005"]
    assert snomed_to_scp("164865005") == []
    # Ventricular bigeminy implies PTB-XL's bigeminy of unknown origin, not the other way round.
    assert snomed_to_scp("11157007") == ["BIGU"]
    assert scp_to_snomed("BIGU") == []


def test_every_equivalent_row_round_trips():
    for row in mapping_table().itertuples():
        if row.relation == "equivalent":
            assert row.scp_code in snomed_to_scp(row.snomed_code)
            assert row.snomed_code in scp_to_snomed(row.scp_code)


def test_equivalent_codes_come_first():
    assert scp_to_snomed("TAB_") == ["164934002"]
    assert scp_to_snomed("PVC")[:2] == ["427172004", "17338001"]


def test_lookup_input_forms_and_unknown_codes():
    assert snomed_to_scp(164889003) == snomed_to_scp("164889003.0") == snomed_to_scp(" 164889003 ") == ["AFIB"]
    assert snomed_to_scp("123") == [] and scp_to_snomed("NOPE") == []
    assert snomed_term(164889003) == "atrial fibrillation" and snomed_term("1") is None
    assert snomed_to_scp("426627000") == []  # "bradycardia" (any origin): PTB-XL only has sinus bradycardia


@pytest.mark.ptbxl
def test_every_scp_code_is_a_ptbxl_statement(ptbxl_dir):
    statements = read_statements(ptbxl_dir / "scp_statements.csv")
    assert set(mapping_table()["scp_code"]) - {""} <= set(statements.index)
    # the map covers every rhythm statement and most of the 71 statements
    rhythm = set(statements.index[statements["rhythm"] == 1.0])
    mapped = set(mapping_table()["scp_code"]) - {""}
    assert rhythm - mapped <= {"SVARR"}  # "supraventricular arrhythmia" has no SNOMED code in the Challenge tables
    assert len(mapped) >= 50


# --- Challenge scored classes: coverage of the table ------------------------------------------------------------------
def test_challenge_class_list_ships_with_its_source():
    text = resources.files("ecgfm.labels").joinpath("data/challenge_dx.csv").read_text()
    assert "physionetchallenges/evaluation-2020" in text and "physionetchallenges/evaluation-2021" in text
    table = challenge_classes()
    assert table["snomed_code"].is_unique and table["snomed_code"].str.fullmatch(r"\d{6,18}").all()
    assert len(scored_classes(2020)) == 27 and len(scored_classes(2021)) == 30
    assert set(scored_classes(2020)) < set(scored_classes(2021))
    with pytest.raises(ValueError, match="2019"):
        scored_classes(2019)


@pytest.mark.parametrize("year", [2020, 2021])
def test_every_scored_class_maps_or_is_listed_as_unmapped(year):
    unmapped = unmapped_scored_classes(year)
    for code in scored_classes(year):
        assert bool(snomed_to_scp(code)) != (code in unmapped), code
    none_rows = set(mapping_table().query("relation == 'none'")["snomed_code"])
    assert set(unmapped) - none_rows <= {"6374002"}  # BBB: only the specific SCP statements imply it
    assert none_rows <= set(unmapped_scored_classes(2021))


def test_unmapped_scored_classes_2020():
    assert unmapped_scored_classes(2020) == {"426627000": "bradycardia", "39732003": "left axis deviation",
                                             "47665007": "right axis deviation"}
    assert set(unmapped_scored_classes(2021)) - set(unmapped_scored_classes(2020)) == {"6374002", "365413008"}


def test_map_snomed_labels_to_a_model_vocabulary():
    vocabulary = ["NORM", "SR", "AFIB", "CRBBB", "PVC", "STACH"]
    labels, unmapped = map_snomed_labels(["427172004", "164889003", "39732003", 164889003, "59118001",
                                          "713427006", "164867002", "39732003"], vocabulary)
    assert labels == ["AFIB", "CRBBB", "PVC"]  # vocabulary order, each once
    assert unmapped == ["39732003", "164867002"]  # input order, each once: axis deviation, old MI
    # a model trained on SNOMED codes keeps them as they are
    assert map_snomed_labels(["164889003.0", "39732003"], ["39732003", "164889003"]) == (["39732003", "164889003"], [])
    # a statement the vocabulary lacks leaves the code unmapped for that vocabulary
    assert map_snomed_labels(["426177001"], ["AFIB"]) == ([], ["426177001"])
    assert map_snomed_labels([], vocabulary) == ([], [])


def test_terms_for_unscored_challenge_codes():
    assert snomed_term("164867002") == "old myocardial infarction"  # unscored, not in the SCP table
    assert snomed_term("365413008") == "poor R wave Progression"


def test_info_shows_snomed_labels_with_terms_and_scp(tmp_path, synthetic_ecg, write_challenge):
    import json

    from typer.testing import CliRunner

    from ecgfm.cli.main import app

    header = write_challenge(tmp_path, "A0001", synthetic_ecg(fs=500, seconds=10),
                             dx=("59118001", "164867002", "39732003"))
    result = CliRunner().invoke(app, ["info", str(header), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["snomed_labels"] == [
        {"snomed": "59118001", "term": "right bundle branch block", "scp": ["CRBBB"]},
        {"snomed": "164867002", "term": "old myocardial infarction", "scp": []},
        {"snomed": "39732003", "term": "left axis deviation", "scp": []}]
    text = CliRunner().invoke(app, ["info", str(header)], terminal_width=160).output
    assert "right bundle branch block" in text and "CRBBB" in text and "no SCP-ECG equivalent" in text
