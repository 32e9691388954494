"""Labelled ECG data: one type, :class:`LabelledSet`, from any source (:func:`load_labelled`).

Sources: PTB-XL (:mod:`ecgfm.datasets.ptbxl`), manifests naming ECG files (:mod:`ecgfm.datasets.manifest`), ingested
training stores for millions of records (:mod:`ecgfm.datasets.ingest`, :mod:`ecgfm.datasets.store`), and folders of
PhysioNet-Challenge-style records; :mod:`ecgfm.datasets.download` fetches PTB-XL.
"""
from ecgfm.datasets.labelled import SPLITS, LabelledSet, SignalDataset, from_arrays, parse_folds
from ecgfm.datasets.sources import detect_source, load_labelled

__all__ = ["LabelledSet", "SignalDataset", "load_labelled", "from_arrays", "parse_folds", "detect_source", "SPLITS"]
