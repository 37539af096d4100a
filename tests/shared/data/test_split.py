from fedxalign.shared.data.split import split_subjects


def test_every_split_gets_a_subject_and_assignment_is_seeded():
    subjects = [f"s{i}" for i in range(10)]
    a = split_subjects(subjects, 0.15, 0.2, seed=1)
    assert set(a.values()) == {"train", "val", "test"}
    assert a == split_subjects(list(reversed(subjects)), 0.15, 0.2, seed=1)
    assert a != split_subjects(subjects, 0.15, 0.2, seed=2)


def test_small_sites():
    assert set(split_subjects(["a"]).values()) == {"train"}
    assert sorted(split_subjects(["a", "b"]).values()) == ["test", "train"]
    three = split_subjects(["a", "b", "c"])
    assert sorted(three.values()) == ["test", "train", "val"]
