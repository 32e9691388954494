import ecgfm.datasets as ds
import test_training_cli as t

def test_fixed(fake_ptbxl, tmp_path, monkeypatch):
    real = ds.load_labelled
    monkeypatch.setattr(ds, "load_labelled", lambda **kw: real(**{**kw, "labels": ["IMI"]}))
    monkeypatch.setenv("ECGFM_CACHE_DIR", str(tmp_path / "cache"))
    t.test_embed_a_labelled_folder_writes_one_row_per_record.__wrapped__(fake_ptbxl, tmp_path, None) if hasattr(t.test_embed_a_labelled_folder_writes_one_row_per_record, "__wrapped__") else t.test_embed_a_labelled_folder_writes_one_row_per_record(fake_ptbxl, tmp_path, None)
