"""discover_inputs: folders, globs, WFDB records listed once by their header, symbolic-link loops that must end."""
import os

import numpy as np
import pytest

from ecgfm.io.discover import Skipped, discover_inputs


@pytest.fixture
def folder(tmp_path, synthetic_ecg, write_wfdb):
    """rec_a (top level), sub/rec_b, sub/deeper/rec_c, an .npy, a .txt and an empty sub-folder."""
    ecg = synthetic_ecg(fs=250, seconds=2)
    write_wfdb(tmp_path, "rec_a", ecg)
    write_wfdb(tmp_path / "sub", "rec_b", ecg)
    write_wfdb(tmp_path / "sub" / "deeper", "rec_c", ecg)
    np.save(tmp_path / "sub" / "x.npy", ecg.signal)
    (tmp_path / "notes.txt").write_text("not an ECG")
    (tmp_path / "empty").mkdir()
    return tmp_path


def names(files):
    return [p.name for p in files]


def test_folder_walk_lists_each_record_once_by_header(folder):
    files, skipped = discover_inputs([folder])
    assert names(files) == ["rec_a.hea", "rec_c.hea", "rec_b.hea", "x.npy"]  # sorted paths; .dat/.txt skipped
    assert skipped == []


def test_files_signal_files_and_record_names(folder):
    files, skipped = discover_inputs([folder / "rec_a.dat", folder / "sub" / "rec_b", folder / "rec_a.hea",
                                      folder / "nope.hea", folder / "empty"])
    assert names(files) == ["rec_a.hea", "rec_b.hea"]  # a .dat means its record; rec_a listed once
    assert skipped[0] == Skipped(str(folder / "nope.hea"), "file not found")
    assert skipped[1].source == str(folder / "empty") and "no files with a supported extension" in skipped[1].reason
    source, reason = skipped[0]  # a plain (source, reason) pair
    assert reason == "file not found"


def test_globs_record_names_and_recursive(folder):
    files, _ = discover_inputs([str(folder / "sub" / "*.dat")])
    assert names(files) == ["rec_b.hea"]
    files, _ = discover_inputs([str(folder / "**" / "rec_?")])  # WFDB record names, as wfdb users write them
    assert names(files) == ["rec_a.hea", "rec_c.hea", "rec_b.hea"]
    files, skipped = discover_inputs([str(folder / "**" / "*.hea"), str(folder / "*.xyz")])
    assert names(files) == ["rec_a.hea", "rec_c.hea", "rec_b.hea"]
    assert skipped == [Skipped(str(folder / "*.xyz"), "no files match this pattern")]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links on this platform")
def test_each_file_listed_once_through_links(folder):
    """A link to a file lists the file once; a link to itself is skipped. Loops: tests/test_io_hostile.py."""
    (folder / "alias.hea").symlink_to(folder / "rec_a.hea")
    (folder / "self.hea").symlink_to(folder / "self.hea")  # ELOOP
    walked, _ = discover_inputs([folder, folder / "rec_a.hea", str(folder / "*.hea")])
    real = {folder / "rec_a.hea", folder / "sub" / "rec_b.hea", folder / "sub" / "deeper" / "rec_c.hea"}
    assert len(walked) == 4 and {p.resolve() for p in walked} == real | {folder / "sub" / "x.npy"}
