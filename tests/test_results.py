"""Loading results: the published pickle (through the restricted unpickler), run folders, export."""

from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np
import pytest
import yaml

from analysis_fixtures import PUBLISHED, write_run, write_study
from dimattn.agents.attention import AGENTS
from dimattn.analysis import results
from dimattn.errors import DimattnError
from dimattn.games import SEED56


@pytest.fixture(scope="module")
def published():
    return results.load_published(PUBLISHED)


def test_published_pickle_has_56_games_5_agents_5_seeds_50_evaluations(published):
    assert list(published.columns) == list(results.COLUMNS)
    assert sorted(published["game"].unique()) == sorted(SEED56)
    assert tuple(published["agent"].unique()) == AGENTS
    runs = published.groupby(["game", "agent"])["seed"].nunique()
    assert len(runs) == 56 * 5 and (runs == 5).all()
    steps = published.groupby(["game", "agent", "seed"])["timestep"].apply(tuple)
    assert set(steps) == {tuple(range(200_000, 10_000_001, 200_000))}


def test_tidy_scores_are_the_published_mean_per_eval(published):
    raw = results.restricted_load(PUBLISHED)
    pong = published[(published["game"] == "Pong") & (published["agent"] == "CWCA")]
    wide = pong.pivot(index="timestep", columns="seed", values="score").to_numpy()  # (50, 5)
    np.testing.assert_array_equal(wide, raw["PongNoFrameskip-v4"]["CWCA"]["mean_per_eval"])


def test_export_reproduces_the_published_pickle_field_by_field(published, tmp_path):
    raw = results.restricted_load(PUBLISHED)
    out = tmp_path / "again.pkl"
    results.save_published(published, out)
    again = results.restricted_load(out)
    assert list(again) == list(raw)
    for env_id, per_agent in raw.items():
        assert list(again[env_id]) == list(per_agent)
        for agent, fields in per_agent.items():
            assert set(again[env_id][agent]) == set(fields)
            for key, value in fields.items():
                mine = again[env_id][agent][key]
                assert np.shape(mine) == np.shape(value) and np.asarray(mine).dtype == np.asarray(value).dtype, key
                np.testing.assert_allclose(mine, value, rtol=1e-12, atol=0, err_msg=f"{env_id}/{agent}/{key}")


class _RunsShell:
    """Pickles as a call to os.system: what a hostile results file would contain."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    hostile = tmp_path / "results.pkl"
    hostile.write_bytes(pickle.dumps({"PongNoFrameskip-v4": {"NA": _RunsShell(f"touch {marker}")}}))
    with pytest.raises(DimattnError, match=r"refus.*system"):
        results.load_results(hostile)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    pickle.dumps(np.array([1, "a"], dtype=object)),          # object arrays can hold anything
    pickle.dumps({"x": eval}),                                # any other global
    pickle.dumps({"a": np.arange(3.0)})[:-7],                 # truncated
    b"not a pickle at all",
])
def test_restricted_unpickler_refuses_objects_globals_and_corrupt_bytes(payload):
    with pytest.raises(DimattnError, match="refused or corrupt"):
        results.restricted_loads(payload)


def test_restricted_unpickler_reads_arrays_scalars_and_containers():
    data = {"a": [np.arange(4, dtype=np.int64), (np.float32(2.5), "s", None)], "b": np.eye(2)}
    back = results.restricted_loads(pickle.dumps(data))
    np.testing.assert_array_equal(back["a"][0], data["a"][0])
    assert back["a"][1] == (np.float32(2.5), "s", None) and back["a"][1][0].dtype == np.float32
    np.testing.assert_array_equal(back["b"], np.eye(2))


def test_a_pickle_of_the_wrong_shape_is_a_one_line_error(tmp_path):
    path = tmp_path / "r.pkl"
    path.write_bytes(pickle.dumps({"PongNoFrameskip-v4": {"NA": {"timesteps": np.arange(3)}}}))
    with pytest.raises(DimattnError, match="mean_per_eval"):
        results.load_results(path)
    path.write_bytes(pickle.dumps({"NoSuchGameNoFrameskip-v4": {"NA": {}}}))
    with pytest.raises(DimattnError, match="unknown Atari game"):
        results.load_results(path)


def test_study_directory_and_rl_zoo_folder_load_the_same_numbers(tmp_path):
    study = write_study(tmp_path / "study", games=("Pong",), agents=("NA", "CWCA"), seeds=(0, 1))
    df = results.load_results(study)
    assert len(df) == 2 * 2 * 4
    with np.load(study / "runs" / "Pong" / "CWCA" / "seed1" / "evaluations.npz") as z:
        expected = z["results"].mean(axis=1)
    got = df[(df["agent"] == "CWCA") & (df["seed"] == 1)].sort_values("timestep")["score"].to_numpy()
    np.testing.assert_allclose(got, expected)

    # The same runs in RL Zoo's layout: <log-folder>/ppo/<EnvId>_<n>_<uuid>/
    zoo = tmp_path / "logs" / "ppo"
    for i, run in enumerate(sorted((study / "runs").rglob("evaluations.npz")), start=1):
        dest = zoo / f"PongNoFrameskip-v4_{i}_0f3c9a"
        dest.mkdir(parents=True)
        for f in ("evaluations.npz", "config.yml"):
            (dest / f).write_bytes((run.parent / f).read_bytes())
    assert results.load_results(tmp_path / "logs").equals(df)


def test_evaluations_without_config_are_skipped_with_a_note(tmp_path):
    write_run(tmp_path / "a", "Pong", "NA", 0, [100, 200], [[1.0], [2.0]])
    write_run(tmp_path / "b", "Pong", "NA", 1, [100, 200], [[3.0], [4.0]])
    (tmp_path / "b" / "config.yml").unlink()
    with pytest.warns(results.DataWarning, match="no config.yml"):
        df = results.load_results(tmp_path)
    assert set(df["seed"]) == {0}


def test_seeds_with_different_steps_are_aligned_on_common_steps_with_a_warning(tmp_path):
    write_run(tmp_path / "s0", "Pong", "NA", 0, [100, 200, 300], [[1.0], [2.0], [3.0]])
    write_run(tmp_path / "s1", "Pong", "NA", 1, [100, 200], [[5.0], [6.0]])  # still training
    df = results.load_results(tmp_path)
    with pytest.warns(results.DataWarning, match="different steps"):
        aligned = results.align_steps(df)
    assert sorted(aligned["timestep"].unique()) == [100, 200]
    assert len(aligned) == 4


def _config(**over):
    cfg = {"game": "Pong", "agent": "NA", "seed": 0}
    cfg.update(over)
    return {k: v for k, v in cfg.items() if v is not None}


@pytest.mark.parametrize("config, message", [
    (_config(seed=None), "lacks seed"),
    (_config(agent="XYZ"), "unknown agent"),
    (_config(game="NotAGame"), "unknown Atari game"),
    (_config(seed="zero"), "invalid literal"),
    ("just a string", "not a YAML mapping"),
])
def test_bad_configs_are_one_line_errors(tmp_path, config, message):
    write_run(tmp_path / "r", "Pong", "NA", 0, [100], [[1.0]])
    (tmp_path / "r" / "config.yml").write_text(yaml.safe_dump(config))
    with pytest.raises(DimattnError, match=message) as err:
        results.load_results(tmp_path)
    assert "\n" not in str(err.value)


def test_corrupt_evaluations_and_duplicate_runs_and_empty_folders_are_errors(tmp_path):
    write_run(tmp_path / "r", "Pong", "NA", 0, [100], [[1.0]])
    (tmp_path / "r" / "evaluations.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DimattnError, match="cannot read .*evaluations.npz"):
        results.load_results(tmp_path)

    write_run(tmp_path / "r", "Pong", "NA", 0, [100], [[1.0]])
    write_run(tmp_path / "copy", "Pong", "NA", 0, [100], [[1.0]])
    with pytest.raises(DimattnError, match="two runs of Pong/NA seed 0"):
        results.load_results(tmp_path)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DimattnError, match="no runs with evaluations"):
        results.load_results(empty)
    with pytest.raises(DimattnError, match="does not exist"):
        results.load_results(tmp_path / "nowhere")


def test_npz_with_a_pickled_object_is_refused(tmp_path):
    run = write_run(tmp_path / "r", "Pong", "NA", 0, [100], [[1.0]])
    np.savez(run / "evaluations.npz", timesteps=np.array([100]), results=np.array([[{"x": 1}]], dtype=object))
    with pytest.raises(DimattnError, match="cannot read"):
        results.load_results(tmp_path)
    assert zipfile.is_zipfile(run / "evaluations.npz")
