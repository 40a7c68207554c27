"""Related lists stored with a build: the same lists as ranking, read by the ranker, the API's
fast route and the CLI; rebuilt by update and fit-weights; refused when they do not fit the build."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from similarity import IndexConfig, IndexMismatch, InvalidParameter, Ranker, TrialIndex
from similarity.ranking import Diversity, Filters
from similarity.cli import main
from similarity.index._files import NpyRows
from similarity.index.stored_lists import StoredLists
from similarity.ranking.precompute import ranker_settings, store_related_lists

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------ the file format
def test_items_round_trip_with_short_lists(tmp_path):
    lists = StoredLists.from_items([[b'{"a":1}', b'{"b":2}'], [], [b'{"c":"\xc3\xa9"}']], 3, {"x": 1})
    assert lists.k == 3 and len(lists) == 3 and [lists.count(r) for r in range(3)] == [2, 0, 1]
    assert lists.items_json(0, 1) == b'{"a":1}' and lists.items_json(0, 3) == b'{"a":1},{"b":2}'
    assert lists.items(1, 3) == [] and lists.items(2, 2) == [{"c": "é"}]
    with pytest.raises(InvalidParameter, match="hold 3 items, 4 asked"):
        lists.items_json(0, 4)
    with pytest.raises(InvalidParameter, match="more than k=1"):
        StoredLists.from_items([[b"{}", b"{}"]], 1, {})
    (tmp_path / "b").mkdir()
    lists.save(tmp_path / "b")
    for mmap in (True, False):
        loaded = StoredLists.load(tmp_path / "b", mmap=mmap, count=3)
        assert [loaded.items(r, 3) for r in range(3)] == [lists.items(r, 3) for r in range(3)]
        assert loaded.settings == {"x": 1}
    assert StoredLists.load(tmp_path / "nothing") is None
    served = StoredLists.load(tmp_path / "b", count=3)
    assert served.data is None and served.row_bytes(0) == (b'{"a":1}{"b":2}', [7, 14])
    (tmp_path / "b" / "copy").mkdir()
    served.save(tmp_path / "b" / "copy")  # a file-backed list set saves by copying its file
    assert StoredLists.load(tmp_path / "b" / "copy", count=3).items(2, 1) == [{"c": "é"}]
    (tmp_path / "b" / "lists" / "items.bin").rename(tmp_path / "moved.bin")  # a pruned build: still readable
    assert served.items(0, 2) == [{"a": 1}, {"b": 2}]
    (tmp_path / "c").mkdir()
    served.save(tmp_path / "c")
    assert StoredLists.load(tmp_path / "c", count=3).items(0, 3) == lists.items(0, 3)
    (tmp_path / "moved.bin").rename(tmp_path / "b" / "lists" / "items.bin")
    with pytest.raises(IndexMismatch, match="disagree with the build"):
        StoredLists.load(tmp_path / "b", count=4)
    with open(tmp_path / "b" / "lists" / "items.bin", "ab") as fh:  # a damaged file
        fh.write(b"x")
    with pytest.raises(IndexMismatch, match="disagree with the build"):
        StoredLists.load(tmp_path / "b", count=3)


# ------------------------------------------------------------------ the ranker
@pytest.fixture(scope="module")
def stored_dir(index_dir, tmp_path_factory):
    """The session's index saved again with its related lists."""
    path = tmp_path_factory.mktemp("stored")
    shutil.copytree(index_dir, path, dirs_exist_ok=True)
    index = TrialIndex.load(path, mmap=False)
    index.related_lists = store_related_lists(Ranker(index))
    index.save(path)
    return path


def test_stored_lists_are_the_ranked_lists(stored_dir):
    index = TrialIndex.load(stored_dir)
    assert index.related_lists is not None and index.related_lists.k == 10
    stored, live = Ranker(index), Ranker(index).with_blend(stored=False)
    assert stored.stored_lists(10) is not None and live.stored_lists(10) is None
    for row in range(len(index)):
        nct_id = index.nct_id(row)
        for k in (1, 4, 10):
            got = [r.to_dict() for r in stored.related(nct_id, k)]
            want = json.loads(json.dumps([r.to_dict() for r in live.related(nct_id, k)]))
            assert got == want, (nct_id, k)


def test_other_settings_and_longer_lists_rank_live(stored_dir):
    index = TrialIndex.load(stored_dir)
    ranker = Ranker(index)
    nct_id = index.nct_id(0)
    assert ranker.related_json(nct_id, 10) is not None and ranker.related_json(nct_id, 11) is None
    assert Ranker(index, diversity=None).related_json(nct_id, 5) is None
    assert Ranker(index, diversity=Diversity(window=3)).related_json(nct_id, 5) is None
    assert Ranker(index, n_candidates=50).related_json(nct_id, 5) is None
    assert index.related_lists.settings == ranker_settings(ranker)
    assert len(ranker.related(nct_id, 11)) == 11  # ranked live
    with pytest.raises(InvalidParameter, match="k must be"):
        ranker.related(nct_id, 0)


def test_save_refuses_lists_of_another_size(stored_dir, tmp_path):
    index = TrialIndex.load(stored_dir, mmap=False)
    index.related_lists = StoredLists.from_items([[b"{}"]], 10, {})
    with pytest.raises(InvalidParameter, match="hold 1 rows"):
        index.save(tmp_path / "other")


# ------------------------------------------------------------------ the API
@pytest.fixture(scope="module")
def clients(stored_dir, index_dir):
    from fastapi.testclient import TestClient

    from similarity.service import create_app

    origin = "https://registry.example.org"
    with TestClient(create_app(stored_dir, cors_origins=[origin])) as fast, TestClient(create_app(index_dir)) as slow:
        yield fast, slow, origin


def test_fast_route_answers_as_the_ranked_route(clients, stored_dir):
    from similarity.service.app import etag_of

    fast, slow, origin = clients
    index = TrialIndex.load(stored_dir)
    for nct_id in [index.nct_id(r) for r in range(0, len(index), 7)]:
        for params in ({}, {"k": 1}, {"k": "10"}):
            a = fast.get(f"/trials/{nct_id}/related", params=params, headers={"Origin": origin})
            b = slow.get(f"/trials/{nct_id}/related", params=params)
            assert a.status_code == b.status_code == 200
            assert a.json() == b.json()
            assert a.headers["content-type"] == "application/json"
            assert a.headers["cache-control"] == b.headers["cache-control"]
            assert a.headers["access-control-allow-origin"] == origin
            query = [("k", str(params["k"]))] if params else []
            assert a.headers["etag"] == etag_of(index, f"/trials/{nct_id}/related", query)
            again = fast.get(f"/trials/{nct_id}/related", params=params, headers={"If-None-Match": a.headers["etag"]})
            assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("path, params, status", [
    ("/trials/{id}/related", {"k": 11}, 200),  # beyond the stored 10: ranked
    ("/trials/{id}/related", {"k": 5, "status": "COMPLETED"}, 200),  # filtered: ranked
    ("/trials/{id}/related", {"k": 0}, 422), ("/trials/{id}/related", {"k": "five"}, 422),
    ("/trials/{id}/related", {"k": 101}, 422), ("/trials/NCT99999999/related", {}, 404),
])
def test_other_requests_go_to_the_app(clients, stored_dir, path, params, status):
    fast, slow, _ = clients
    nct_id = TrialIndex.load(stored_dir).nct_id(2)
    a = fast.get(path.replace("{id}", nct_id), params=params)
    b = slow.get(path.replace("{id}", nct_id), params=params)
    assert a.status_code == b.status_code == status
    assert a.json() == b.json()


def test_cli_related_reads_the_stored_list(stored_dir, index_dir, capsys):
    nct_id = TrialIndex.load(stored_dir).nct_id(5)
    outputs = []
    for path in (stored_dir, index_dir):
        assert main(["related", nct_id, "--index", str(path), "-k", "3", "--json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0] == outputs[1]


# ------------------------------------------------------------------ build, update, fit-weights
def test_cli_build_stores_lists_and_update_equals_a_full_rebuild(data_dir, tmp_path, capsys):
    sources = [str(data_dir / "legacy-sample.zip")]
    extra = str(data_dir / "apiv2-page.json")
    cache = str(tmp_path / "cache")
    assert main(["build", *sources, "--index", str(tmp_path / "a"), "--cache-dir", cache, "--vectors", "float16", "-q"]) == 0
    assert main(["build", *sources, "--index", str(tmp_path / "none"), "--cache-dir", cache, "--lists", "0", "-q"]) == 0
    assert TrialIndex.load(tmp_path / "none").related_lists is None
    assert main(["build", *sources, "--index", str(tmp_path / "bad"), "--lists", "101", "-q"]) == 1
    removed = TrialIndex.load(tmp_path / "a").nct_id(3)
    assert main(["update", extra, "--index", str(tmp_path / "a"), "--remove", removed, "--cache-dir", cache, "-q"]) == 0
    updated = TrialIndex.load(tmp_path / "a")
    full_sources = [t for t in TrialIndex.load(tmp_path / "a").trials]
    from similarity import build_index

    full = build_index(full_sources, IndexConfig(vectors="float16"), cache_dir=cache)
    full.related_lists = store_related_lists(Ranker(full))
    assert updated.related_lists is not None and len(updated.related_lists) == len(full)
    for row in range(len(full)):
        nct_id = full.nct_id(row)
        got = updated.related_lists.items(updated.row(nct_id), 10)
        want = full.related_lists.items(row, 10)
        assert [g["nct_id"] for g in got] == [w["nct_id"] for w in want], nct_id
        np.testing.assert_allclose([g["score"] for g in got], [w["score"] for w in want], rtol=1e-4, atol=1e-6)
    capsys.readouterr()


def test_fit_weights_ranks_the_stored_lists_again(stored_dir, tmp_path, capsys):
    path = tmp_path / "fit"
    shutil.copytree(stored_dir, path)
    index = TrialIndex.load(path)
    ids = [index.nct_id(r) for r in range(12)]
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("query_id\tcandidate_id\tlabel\n" + "".join(
        f"{q}\t{c}\t{int(j % 2 == 0)}\n" for i, q in enumerate(ids[:6]) for j, c in enumerate(ids[6:])))
    assert main(["fit-weights", "--index", str(path), "--pairs", str(pairs), "--structure", "groups",
                 "--random-negatives", "0"]) == 0
    capsys.readouterr()
    refit = TrialIndex.load(path)
    ranker = Ranker(refit)
    assert refit.manifest.blend is not None and refit.related_lists.settings == ranker_settings(ranker)
    nct_id = refit.nct_id(1)
    live = ranker.with_blend(stored=False)
    assert [r.nct_id for r in ranker.related(nct_id, 10)] == [r.nct_id for r in live.related(nct_id, 10)]


def test_serving_lists_made_with_other_settings_says_so(stored_dir, tmp_path, caplog):
    from similarity.service.hotswap import ServedIndex

    path = tmp_path / "other"
    shutil.copytree(stored_dir, path)
    build = path / "builds" / (path / "CURRENT").read_text().strip() / "lists" / "meta.json"
    meta = json.loads(build.read_text())
    with caplog.at_level("WARNING", logger="similarity.service.hotswap"):
        ServedIndex(stored_dir, load_model=False).reload()
        assert "stored related lists were made with other settings" not in caplog.text
        meta["settings"]["n_candidates"] = 7
        build.write_text(json.dumps(meta))
        served = ServedIndex(path, load_model=False)
        served.reload()
    assert "stored related lists were made with other settings" in caplog.text
    assert served.ranker.stored_lists(10) is None


def test_served_index_reads_vectors_and_list_offsets_by_rows(stored_dir):
    served, in_memory = TrialIndex.load(stored_dir), TrialIndex.load(stored_dir, mmap=False)
    assert isinstance(getattr(served.field_vectors, "codes", served.field_vectors), NpyRows)
    rows = np.array([5, 1, 5, 2])
    assert np.array_equal(served.field_vectors[rows], in_memory.field_vectors[rows])
    assert isinstance(served.related_lists.offsets, NpyRows)
    assert served.related_lists.items(1, 5) == in_memory.related_lists.items(1, 5)
    nct = served.nct_id(0)
    status = Filters.parse(status=[next(t.overall_status for t in served.trials if t.overall_status).value])
    for filters in (None, status):
        assert [r.to_dict() for r in Ranker(served).related(nct, 5, filters=filters)] == [
            r.to_dict() for r in Ranker(in_memory).related(nct, 5, filters=filters)]


def test_index_served_from_disk_saves_the_same_build(stored_dir, tmp_path):
    """Saving an index whose arrays are read by rows copies their files; nothing is lost or changed."""
    served = TrialIndex.load(stored_dir)
    assert isinstance(served.lexical.data, NpyRows) and isinstance(served.related_lists.offsets, NpyRows)
    served.save(tmp_path / "copy")
    copy, original = TrialIndex.load(tmp_path / "copy", mmap=False), TrialIndex.load(stored_dir, mmap=False)
    assert np.array_equal(np.asarray(copy.field_vectors), np.asarray(original.field_vectors))
    for name in ("lexical", "structured"):
        assert (getattr(copy, name) != getattr(original, name)).nnz == 0
    assert np.array_equal(copy.related_lists.offsets, original.related_lists.offsets)
    assert copy.related_lists.items(3, 5) == original.related_lists.items(3, 5)
