"""The text model through ONNX Runtime: exported from the installed weights, cached, close to PyTorch."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from similarity import IndexConfig, TextFeaturizer
from similarity.exceptions import InvalidParameter
from similarity.features import Runtime, load_sentence_model
from similarity.features import onnx_runtime

TEXTS = [
    "Melanoma",
    "autologous mesenchymal stem cells",
    "A Phase II Study of Ipilimumab in Patients With Metastatic Melanoma",
    "RATIONALE: Drugs used in chemotherapy, such as fenretinide, work in different ways to stop the growth "
    "of tumor cells, either by killing the cells or by stopping them from dividing. PURPOSE: Randomized "
    "phase III trial to determine whether fenretinide prevents the recurrence of superficial bladder cancer. " * 3,
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A private model cache: every export in this module is made here, from nothing."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def encoded(model_dir):
    mp = pytest.MonkeyPatch()
    mp.setenv("RELATED_TRIALS_MODEL_DIR", str(model_dir))
    try:
        out = {}
        for runtime in Runtime:
            model = load_sentence_model("all-MiniLM-L6-v2", runtime=runtime)
            out[runtime] = model.encode(TEXTS, batch_size=2, normalize_embeddings=True)
        return out
    finally:
        mp.undo()


@pytest.mark.slow
def test_onnx_float_gives_the_vectors_of_pytorch(encoded):
    cosines = (encoded[Runtime.ONNX] * encoded[Runtime.TORCH]).sum(axis=1)
    assert cosines.min() > 0.99999


@pytest.mark.slow
def test_onnx_int8_stays_close_to_pytorch_and_keeps_the_order(encoded):
    cosines = (encoded[Runtime.ONNX_INT8] * encoded[Runtime.TORCH]).sum(axis=1)
    assert cosines.min() > 0.97 and cosines.mean() > 0.985
    assert not np.allclose(encoded[Runtime.ONNX_INT8], encoded[Runtime.TORCH], atol=1e-3)  # really quantised
    # the nearest text of each text is the same under both
    for runtime in (Runtime.TORCH, Runtime.ONNX_INT8):
        sims = encoded[runtime] @ encoded[runtime].T
        np.fill_diagonal(sims, -1)
        encoded.setdefault("nearest", []).append(sims.argmax(axis=1).tolist())
    assert encoded["nearest"][0] == encoded["nearest"][1]


@pytest.mark.slow
def test_the_export_is_cached_whole_and_reused(encoded, model_dir, monkeypatch):
    files = sorted(p.name for p in model_dir.rglob("*") if p.is_file())
    assert files == ["onnx-int8.onnx", "onnx.onnx"]  # no temporary file left behind
    int8 = next(model_dir.rglob("onnx-int8.onnx"))
    # int8 MatMul weights; the word embeddings (47 MB of the 90) stay float
    assert int8.stat().st_size < 0.7 * next(model_dir.rglob("onnx.onnx")).stat().st_size
    monkeypatch.setenv("RELATED_TRIALS_MODEL_DIR", str(model_dir))
    monkeypatch.setattr(onnx_runtime, "_export", lambda *a, **k: pytest.fail("exported again"))
    again = load_sentence_model("all-MiniLM-L6-v2", runtime="onnx-int8").encode(TEXTS[:2], normalize_embeddings=True)
    np.testing.assert_allclose(again, encoded[Runtime.ONNX_INT8][:2], atol=1e-5)


@pytest.mark.slow
def test_int8_vectors_are_cached_apart_from_the_float_ones(tmp_path, model_dir, monkeypatch):
    monkeypatch.setenv("RELATED_TRIALS_MODEL_DIR", str(model_dir))
    X = np.array([[TEXTS[2]]], dtype=object)
    torch_f = TextFeaturizer(runtime="torch", cache_dir=str(tmp_path)).fit(X)
    int8_f = TextFeaturizer(runtime="onnx-int8", cache_dir=str(tmp_path)).fit(X)
    assert torch_f.model_id_ != int8_f.model_id_ and int8_f.model_id_.endswith("+onnx-int8")
    a, b = torch_f.transform(X), int8_f.transform(X)
    assert 0.97 < (a @ b.T).item() < 0.99999  # the second did not read the first's cached vector


def test_unknown_runtime_is_refused_in_one_line():
    with pytest.raises(InvalidParameter, match="unknown runtime 'tensorrt'; allowed: torch, onnx, onnx-int8"):
        IndexConfig(runtime="tensorrt")
    with pytest.raises(InvalidParameter, match="unknown runtime"):
        load_sentence_model("all-MiniLM-L6-v2", runtime="tensorrt")


def test_onnx_needs_a_local_model_on_the_cpu():
    with pytest.raises(InvalidParameter, match="runs on the CPU"):
        load_sentence_model("all-MiniLM-L6-v2", device="cuda", runtime="onnx-int8")


def test_indexes_saved_before_runtimes_load_as_pytorch():
    saved = IndexConfig(runtime="onnx-int8").layout()
    assert saved["runtime"] == "onnx-int8"
    assert IndexConfig.from_saved(saved).runtime == "onnx-int8"
    del saved["runtime"]
    assert IndexConfig.from_saved(saved).runtime == "torch"


def test_an_old_pickled_featurizer_runs_pytorch():
    featurizer = TextFeaturizer()
    state = featurizer.__getstate__()
    del state["runtime"]
    restored = TextFeaturizer.__new__(TextFeaturizer)
    restored.__setstate__(state)
    assert restored.get_params()["runtime"] == "torch"


@pytest.mark.slow
def test_build_records_its_runtime_and_queries_embed_with_it(tmp_path, data_dir):
    index = tmp_path / "index"
    run = subprocess.run(
        [sys.executable, "-m", "similarity.cli", "build", str(data_dir / "flat-sample.jsonl"), "--index", str(index),
         "--runtime", "onnx-int8", "--quiet"],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    current = (index / "CURRENT").read_text().strip()
    manifest = json.loads((index / "builds" / current / "manifest.json").read_text())
    assert manifest["config"]["runtime"] == "onnx-int8"

    from similarity import Ranker, TrialIndex

    loaded = TrialIndex.load(index)
    featurizer = loaded.text_featurizer()
    assert loaded.config.runtime == "onnx-int8" and featurizer.runtime == "onnx-int8"
    assert featurizer.model_id_.endswith("+onnx-int8")
    # a copy of an indexed trial under a new NCT ID, embedded at query time with the index's runtime,
    # finds that trial first
    trial = loaded.trials[0]
    copy = dataclasses.replace(trial, nct_id="NCT99999999")
    assert Ranker(loaded).related_to_trial(copy, k=1)[0].nct_id == trial.nct_id
