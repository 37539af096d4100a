"""Explicit resume: a results folder with a checkpoint is continued only when asked, and only by the same run."""

import dataclasses

import pytest

from fedxalign.server.federation_loop import CHECKPOINT, FederationError, RunLog, run_federation, start_state
from fedxalign.server.strategy import ServerState
from tests.server.test_strategy import settings as base_settings


def settings(tmp_path, **fed):
    s = base_settings(**fed)
    return dataclasses.replace(s, federation=dataclasses.replace(s.federation, results_dir=str(tmp_path), **fed))


class NoGrid:
    def __getattr__(self, name):
        raise AssertionError(f"the grid was used ({name})")


def test_a_fresh_folder_starts_at_round_one_with_the_runs_fingerprint(tmp_path):
    s = settings(tmp_path)
    state = start_state(tmp_path / CHECKPOINT, s)
    assert state.round == 0 and state.fingerprint == s.fingerprint()


def test_a_stopped_run_is_not_continued_or_overwritten_unless_asked(tmp_path):
    s = settings(tmp_path)
    ServerState(round=2, fingerprint=s.fingerprint()).save(tmp_path / CHECKPOINT)
    with pytest.raises(FederationError, match=f"stopped after round 2 of {s.federation.rounds}: continue it with federation.resume=true"):
        start_state(tmp_path / CHECKPOINT, s)
    resumed = start_state(tmp_path / CHECKPOINT, settings(tmp_path, resume=True))
    assert resumed.round == 2


def test_a_checkpoint_of_other_settings_is_refused(tmp_path):
    s = settings(tmp_path)
    ServerState(round=1, fingerprint=s.fingerprint()).save(tmp_path / CHECKPOINT)
    other = settings(tmp_path, resume=True)
    other = dataclasses.replace(other, privacy=dataclasses.replace(other.privacy, epsilon=3.0))
    with pytest.raises(FederationError, match="other settings"):
        start_state(tmp_path / CHECKPOINT, other)
    # where files go or how long to wait may change between the two starts
    moved = dataclasses.replace(settings(tmp_path, resume=True, round_timeout_s=5.0, join_wait_s=1.0))
    assert start_state(tmp_path / CHECKPOINT, moved).round == 1


def test_a_finished_run_resumed_does_nothing(tmp_path):
    s = settings(tmp_path, resume=True)
    ServerState(round=s.federation.rounds, fingerprint=s.fingerprint()).save(tmp_path / CHECKPOINT)
    assert run_federation(NoGrid(), s).round == s.federation.rounds


def test_rows_of_a_round_after_the_checkpoint_are_dropped_on_resume(tmp_path):
    RunLog(rounds=[{"round": 1}, {"round": 2}], sites=[{"round": 1, "site": "a"}, {"round": 2, "site": "a"}],
           evals=[{"round": "2", "site": "a"}]).write(tmp_path)
    kept = RunLog.load(tmp_path).up_to(1)
    assert [r["round"] for r in kept.rounds] == [1] and len(kept.sites) == 1 and kept.evals == []


class RecordingGrid:
    """Answers every message empty and remembers whom it was sent to."""

    def __init__(self):
        self.sent = []

    def send_and_receive(self, msgs, timeout=None):
        self.sent += [m.metadata.dst_node_id for m in msgs]
        return []


def test_evaluate_messages_go_only_to_sites_that_share_scores(tmp_path, monkeypatch):
    from flwr.supercore.task_identity import TaskIdentity

    from fedxalign.server.federation_loop import evaluate_sites

    for attr in ("_task_id", "_run_id", "_node_id"):  # Flower builds messages only inside a run
        monkeypatch.setattr(TaskIdentity, attr, 1)

    s = settings(tmp_path)
    sites = {1: {"site": "a", "modality": "eeg", "evaluates": "no"}, 2: {"site": "b", "modality": "ecg", "evaluates": "yes"}}
    grid = RecordingGrid()
    evaluate_sites(grid, ServerState(), sites, [1, 2], 1, s)
    assert grid.sent == [2]
    evaluate_sites(NoGrid(), ServerState(), {1: sites[1]}, [1], 1, s)  # nobody to ask: the grid is not used


class RestartingGrid:
    """The SuperLink still lists three dead nodes (they fail the query); three restarted ones register a moment later."""

    def __init__(self):
        self.calls = 0

    def get_node_ids(self):
        self.calls += 1
        return [1, 2, 3] if self.calls < 3 else [1, 2, 3, 11, 12, 13]

    def send_and_receive(self, msgs, timeout=None):
        from flwr.app import ConfigRecord, Error, Message, RecordDict

        for m in msgs:
            n = m.metadata.dst_node_id
            if n < 10:
                yield Message(Error(5, "Node Unavailable"), reply_to=m)
            else:
                yield Message(RecordDict({"info": ConfigRecord({"site": f"s{n}", "modality": "eeg", "evaluates": "no"})}),
                              reply_to=m)


def test_a_run_waits_for_restarted_sites_instead_of_failing_on_dead_listed_ones(tmp_path, monkeypatch):
    from flwr.supercore.task_identity import TaskIdentity

    from fedxalign.server.federation_loop import gather_sites

    for attr in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1)
    monkeypatch.setattr("time.sleep", lambda s: None)
    fed = settings(tmp_path, min_sites=3, expected_sites=3, round_timeout_s=30.0).federation
    sites = {}
    assert gather_sites(RestartingGrid(), sites, fed, first=True) == [11, 12, 13]
    assert set(sites) == {11, 12, 13}
