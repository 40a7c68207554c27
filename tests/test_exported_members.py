import similarity


def test_all_names_exist_and_are_exported():
    exported = set(similarity.__all__)
    assert len(exported) == len(similarity.__all__), "duplicates in __all__"
    for name in exported:
        assert hasattr(similarity, name), name
    public = {n for n in dir(similarity) if not n.startswith("_") and n[0].isupper()}
    assert public <= exported, f"public classes missing from __all__: {public - exported}"
