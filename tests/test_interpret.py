"""dimattn explain: maps, Grad-CAM, the orientation and complementarity measures, figures and the CLI."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dimattn import cli
from dimattn.agents.attention import AGENTS, build_attention
from dimattn.agents.networks import ActorCritic
from dimattn.errors import DimattnError
from dimattn.interpret.explain import load_observations
from dimattn.interpret.measures import (
    complementarity,
    explain,
    feature_maps,
    grad_cam,
    orientation,
    row_column_variation,
)
from dimattn.interpret.panels import mosaic
from shared_data import SHARED

PONG_OBS = SHARED / "data" / "pong-observations"
PONG_FILES = [PONG_OBS / f"pong_{i}.npy" for i in range(1, 11)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: on a busy 2-core machine, intra-op threads cost far more than they save."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pong_obs() -> np.ndarray:
    obs, names = load_observations(PONG_FILES)
    assert names == [f"pong_{i}" for i in range(1, 11)]
    return obs  # (10, 4, 84, 84) uint8


def random_agent(agent: str, seed: int, n_actions: int = 6) -> ActorCritic:
    torch.manual_seed(seed)
    return ActorCritic(n_actions, agent).eval()


def make_checkpoint(path: Path, env, game: str, agent: str, train_steps: int = 0) -> Path:
    """An SB3 PPO checkpoint of our network on a real ALE env, optionally trained a little."""
    from stable_baselines3 import PPO

    from dimattn.agents.checkpoints import save_sb3
    from dimattn.agents.networks import SelfAttnCNN

    model = PPO("CnnPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu",
                policy_kwargs=dict(features_extractor_class=SelfAttnCNN,
                                   features_extractor_kwargs=dict(self_attn=agent), net_arch=[]))
    if train_steps:
        model.learn(train_steps)
    save_sb3(model, path, meta={"agent": agent, "game": game, "ada_attn": None, "norm_softmax": True})
    return path


def as_published(ours: Path, dest: Path) -> Path:
    """Rewrite our checkpoint as the published code saved it: its key names, no dimattn.json."""
    renames = {"conv1.": "c1.", "conv2.": "c2.", "linear.": "l1.", "attention.query.": "self_attn_layer.w_qs.",
               "attention.key.": "self_attn_layer.w_ks.", "attention.value.": "self_attn_layer.w_vs."}
    with zipfile.ZipFile(ours) as src, zipfile.ZipFile(dest, "w") as dst:
        for item in src.namelist():
            if item == "dimattn.json":
                continue
            data = src.read(item)
            if item == "policy.pth":
                state = torch.load(io.BytesIO(data), weights_only=True)
                out = {}
                for k, v in state.items():
                    for old, new in renames.items():
                        k = k.replace("features_extractor." + old, "features_extractor." + new)
                    out[k] = v
                buf = io.BytesIO()
                torch.save(out, buf)
                data = buf.getvalue()
            dst.writestr(item, data)
    return dest


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Pong checkpoints of the five agents; CWCA trained for 128 steps, the others at initialisation."""
    from dimattn.envs.ale import make_env

    d = tmp_path_factory.mktemp("ckpt")
    env = make_env("Pong", 1, seed=0, training=False)
    try:
        return {a: make_checkpoint(d / f"pong_{a}.zip", env, "Pong", a, train_steps=128 if a == "CWCA" else 0)
                for a in AGENTS}
    finally:
        env.close()


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


# ----------------------------------------------------------------------------- maps and ranges
@pytest.mark.parametrize("agent", AGENTS)
def test_maps_have_the_documented_shapes_and_ranges(agent, pong_obs):
    e = explain(random_agent(agent, 0), pong_obs)
    n = len(pong_obs)
    assert e.h1.shape == e.attention.shape == e.block.shape == (n, 16, 20, 20)
    assert e.h1.min() >= 0 and e.h1.max() > 0  # rectified, and Pong lights some units
    np.testing.assert_allclose(e.block, e.h1 + e.attention, atol=1e-5)  # residual block
    assert e.logits.shape == (n, 6) and e.action.shape == (n,)
    np.testing.assert_array_equal(e.action, e.logits.argmax(1))
    assert e.gradcam.shape == (n, 84, 84)
    assert e.gradcam.min() >= 0 and e.gradcam.max() <= 1 + 1e-6
    peaks = e.gradcam.reshape(n, -1).max(1)
    assert np.all((np.abs(peaks - 1) < 1e-6) | (peaks == 0))  # each map normalised by its maximum
    if agent == "NA":
        assert not e.attention.any()
        assert np.isnan(e.orientation).all() and np.isnan(e.complementarity).all()
    else:
        assert np.abs(e.attention).max() > 0
        assert np.all(np.abs(e.orientation) <= 1) and np.all(np.abs(e.complementarity) <= 1)


def test_mosaic_tiles_each_map_scaled_to_unit_range():
    maps = np.stack([np.full((3, 3), 5.0), np.arange(9.0).reshape(3, 3) * 10 - 7])
    m = mosaic(maps, cols=2)
    assert m.shape == (3, 7)
    np.testing.assert_array_equal(m[:, :3], 0)  # a constant map is 0
    np.testing.assert_allclose(m[:, 4:], np.arange(9.0).reshape(3, 3) / 8)
    assert np.isnan(m[:, 3]).all()  # separator


# ----------------------------------------------------------------------------- Grad-CAM
def test_grad_cam_equals_a_direct_autograd_computation_of_spec_6(pong_obs):
    model = random_agent("CWCA", 0)
    obs = pong_obs[[0, 4]]
    actions = torch.tensor([2, 5])  # two actions whose maps are neither empty nor everywhere hot
    captured = {}
    hook = model.features_extractor.conv1.register_forward_hook(lambda m, i, o: captured.update(a=o))
    try:
        logits, _ = model(torch.as_tensor(obs))
        a = captured["a"]  # conv1 output (2, 16, 20, 20), before the ReLU
        grads, = torch.autograd.grad(logits[torch.arange(2), actions].sum(), a)
    finally:
        hook.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)  # (2, 16, 1, 1): channel importance
    cam = torch.relu((weights * a).sum(1, keepdim=True))  # (2, 1, 20, 20)
    cam = F.interpolate(cam, size=(84, 84), mode="bilinear")[:, 0]
    cam = cam / cam.flatten(1).amax(1)[:, None, None]
    ours = grad_cam(model, obs, actions)
    hot = (cam > 0.1).flatten(1).float().mean(1)
    assert torch.all((hot > 0.05) & (hot < 0.5)), hot  # a non-trivial case: partly hot, partly cold
    torch.testing.assert_close(ours, cam.detach(), atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- orientation
def test_orientation_sign_on_synthetic_horizontal_and_vertical_patterns():
    g = torch.Generator().manual_seed(0)
    h1 = torch.rand(3, 16, 20, 20, generator=g)  # isotropic noise
    horizontal = torch.rand(3, 16, 20, 1, generator=g).expand(-1, -1, -1, 20)  # constant along each row
    vertical = torch.rand(3, 16, 1, 20, generator=g).expand(-1, -1, 20, -1)  # constant along each column
    assert np.all(orientation(h1, horizontal) == 1.0)
    assert np.all(orientation(h1, vertical) == -1.0)
    noisy_h = horizontal + 0.3 * torch.rand(3, 16, 20, 20, generator=g)
    noisy_v = vertical + 0.3 * torch.rand(3, 16, 20, 20, generator=g)
    assert np.all(orientation(h1, noisy_h) > 0.5) and np.all(orientation(h1, noisy_v) < -0.5)
    # Relative to the input: unchanged anisotropy is 0, and rotating both maps flips the sign.
    np.testing.assert_allclose(orientation(noisy_h, noisy_h), 0, atol=1e-12)
    np.testing.assert_allclose(orientation(noisy_h, 3 * noisy_h + 1), 0, atol=1e-6)  # scale/offset-free
    np.testing.assert_allclose(orientation(h1.transpose(2, 3), noisy_h.transpose(2, 3)),
                               -orientation(h1, noisy_h), atol=1e-12)
    np.testing.assert_allclose(orientation(noisy_h, h1), -orientation(h1, noisy_h), atol=1e-12)
    # A map as horizontal as its input is neutral, even if it is strongly horizontal in absolute terms.
    assert abs(orientation(noisy_h, noisy_h.flip(2))).max() < 1e-9
    assert np.isnan(orientation(h1, torch.zeros_like(h1))).all()


def test_row_column_variation_of_stripes():
    stripes = torch.arange(20.0).view(1, 1, 20, 1).expand(1, 2, 20, 20)  # rows differ, columns equal
    rows, cols = row_column_variation(stripes)
    torch.testing.assert_close(rows, torch.tensor([2 * torch.arange(20.0).var(unbiased=False).item()],
                                                  dtype=torch.float64))
    assert cols.item() == 0


@pytest.mark.parametrize("agent,sign", [("CWCA", 1), ("CWRA", -1), ("SWA", -1)])
def test_blocks_on_random_feature_maps_have_their_axis(agent, sign):
    """The bare attention blocks, random weights, random H1: CWCA horizontal, CWRA and SWA vertical."""
    values = []
    for seed in range(6):
        torch.manual_seed(seed)
        block = build_attention(agent)
        h1 = torch.relu(torch.randn(4, 16, 20, 20))
        with torch.no_grad():
            values.append(orientation(h1, block.attention(h1)))
    values = np.stack(values)  # (seeds, observations)
    assert np.all(np.sign(values.mean(1)) == sign)  # every seed's mean is on the expected side
    assert np.mean(np.sign(values) == sign) >= 0.9  # and nearly every single value


@pytest.mark.parametrize("agent,sign", [("CWCA", 1), ("CWRA", -1), ("SWA", -1)])
def test_orientation_sides_on_pong_observations_with_random_weights(agent, sign, pong_obs):
    """Whole random agents on the ten shared Pong observations, five seeds."""
    values = []
    for seed in range(5):
        maps = feature_maps(random_agent(agent, seed), pong_obs)
        values.append(orientation(maps["h1"], maps["attention"]))
    values = np.stack(values)  # (seeds, observations)
    assert np.all(np.sign(values.mean(1)) == sign)
    assert np.mean(np.sign(values) == sign) >= 0.9
    assert abs(values.mean()) > 0.5  # far from neutral, not just on the right side


# ----------------------------------------------------------------------------- complementarity
def test_complementarity_is_the_spatial_correlation_of_channel_means():
    g = torch.Generator().manual_seed(1)
    h1 = torch.rand(2, 16, 20, 20, generator=g)
    np.testing.assert_allclose(complementarity(h1, -h1), -1, atol=1e-12)
    np.testing.assert_allclose(complementarity(h1, 2 * h1 + 3), 1, atol=1e-12)
    att = torch.rand(2, 16, 20, 20, generator=g)
    a, b = h1.double().mean(1).flatten(1).numpy(), att.double().mean(1).flatten(1).numpy()
    expected = [np.corrcoef(a[i], b[i])[0, 1] for i in range(2)]
    np.testing.assert_allclose(complementarity(h1, att), expected, atol=1e-12)
    assert np.isnan(complementarity(h1, torch.zeros_like(h1))).all()


# ----------------------------------------------------------------------------- observation files
def test_load_observations_accepts_single_and_batched_files(tmp_path):
    one = np.load(PONG_FILES[0])[0]  # (4, 84, 84)
    np.save(tmp_path / "one.npy", one)
    np.save(tmp_path / "many.npy", np.stack([one, one[::-1]]))
    obs, names = load_observations([tmp_path / "one.npy", tmp_path / "many.npy"])
    assert obs.shape == (3, 4, 84, 84) and obs.dtype == np.uint8
    assert names == ["many_0", "many_1", "one"]  # files in natural order of their paths


def test_the_shipped_pong_observations_are_the_published_ten(tmp_path, monkeypatch):
    obs, names = load_observations(["pong"])
    assert names == [f"pong_{i}" for i in range(1, 11)] and obs.dtype == np.uint8
    assert np.array_equal(obs, np.concatenate([np.load(f) for f in PONG_FILES]))
    assert (Path(__file__).parents[1] / "src" / "dimattn" / "data" / "pong_observations.npz").stat().st_size < 300_000
    monkeypatch.chdir(tmp_path)  # ./pong is a file of that name, not the shipped set
    np.save(tmp_path / "pong", obs[:1])
    assert load_observations(["./pong.npy"])[1] == ["pong"]


@pytest.mark.parametrize("array,message", [
    (np.zeros((1, 4, 84, 84), np.float32), "float32"),
    (np.zeros((84, 84), np.uint8), "shape"),
    (np.zeros((1, 3, 84, 84), np.uint8), "shape"),
    (np.array([{"a": 1}], dtype=object), "cannot read"),
])
def test_load_observations_rejects_bad_files(tmp_path, array, message):
    p = tmp_path / "bad.npy"
    np.save(p, array, allow_pickle=True)
    with pytest.raises(DimattnError, match=message):
        load_observations([p])
    with pytest.raises(DimattnError, match="does not exist"):
        load_observations([tmp_path / "missing.npy"])


# ----------------------------------------------------------------------------- the CLI
def test_explain_cli_on_a_trained_checkpoint_and_pong_observations(checkpoints, tmp_path, capsys):
    out = tmp_path / "explain"
    rc, stdout, _ = run_cli(["explain", "--checkpoint", str(checkpoints["CWCA"]), "--obs",
                             str(PONG_FILES[0]), str(PONG_FILES[1]), "--out", str(out)], capsys)
    assert rc == 0
    assert "CWCA" in stdout and "horizontal" in stdout
    rc, stdout, _ = run_cli(["explain", "--checkpoint", str(checkpoints["CWCA"]), "--obs", "pong", "--out",
                             str(tmp_path / "shipped")], capsys)  # the ten that ship with dimattn
    assert rc == 0 and (tmp_path / "shipped" / "state_pong_10.png").stat().st_size > 0
    for f in ("state_pong_1.png", "state_pong_2.png", "explain.npz", "measures.csv", "orientation.md",
              "orientation.png"):
        assert (out / f).stat().st_size > 0, f
    import matplotlib.image as mpimg

    img = mpimg.imread(out / "state_pong_1.png")
    assert img.ndim == 3 and img.shape[1] > 1000 and img.shape[0] > 300  # one agent row, four panels
    with np.load(out / "explain.npz", allow_pickle=False) as z:
        assert z["obs"].shape == (2, 4, 84, 84) and list(z["labels"]) == ["CWCA"]
        assert z["CWCA/h1"].shape == z["CWCA/attention"].shape == (2, 16, 20, 20)
        assert z["CWCA/gradcam"].shape == (2, 84, 84)
        np.testing.assert_array_equal(z["obs"][0], np.load(PONG_FILES[0])[0])
        assert np.all(z["CWCA/orientation"] > 0)
    rows = list(csv.DictReader((out / "measures.csv").open()))
    assert [r["observation"] for r in rows] == ["pong_1", "pong_2"]
    assert all(r["side"] == "horizontal" and r["action"] in {"NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE",
                                                               "LEFTFIRE"} for r in rows)


def test_explain_compare_places_the_agents_on_their_sides(checkpoints, tmp_path, capsys):
    out = tmp_path / "cmp"
    ckpts = [str(checkpoints[a]) for a in AGENTS]
    rc, stdout, _ = run_cli(["explain", "--compare", *ckpts, "--obs", *map(str, PONG_FILES[:2]),
                             "--out", str(out)], capsys)
    assert rc == 0
    rows = list(csv.DictReader((out / "measures.csv").open()))
    assert len(rows) == 5 * 2
    side = {a: {r["side"] for r in rows if r["agent"] == a} for a in AGENTS}
    assert side == {"NA": {"n/a"}, "SWA": {"vertical"}, "CWRA": {"vertical"}, "CWCA": {"horizontal"},
                    "CWRCA": side["CWRCA"]}
    table = (out / "orientation.md").read_text()
    assert all(f"| {a} |" in table for a in AGENTS)
    import matplotlib.image as mpimg

    assert mpimg.imread(out / "state_pong_1.png").shape[0] > 5 * 300  # five agent rows


def test_explain_reads_the_published_codes_checkpoints(checkpoints, tmp_path, capsys):
    published = as_published(checkpoints["CWRA"], tmp_path / "Pong_CWRA_0_model_checkpoint_500000_steps.zip")
    with zipfile.ZipFile(published) as zf:
        keys = torch.load(io.BytesIO(zf.read("policy.pth")), weights_only=True).keys()
    assert "features_extractor.self_attn_layer.w_qs.weight" in keys
    out = tmp_path / "pub"
    rc, _, _ = run_cli(["explain", "--checkpoint", str(published), "--obs", str(PONG_FILES[4]), "--out",
                        str(out)], capsys)
    assert rc == 0
    rows = list(csv.DictReader((out / "measures.csv").open()))
    assert rows[0]["agent"] == "CWRA" and rows[0]["side"] == "vertical"


def test_explain_takes_observations_from_play(checkpoints, tmp_path, capsys):
    out = tmp_path / "env"
    rc, _, _ = run_cli(["explain", "--checkpoint", str(checkpoints["SWA"]), "--env", "Pong", "--n-obs", "2",
                        "--every", "5", "--out", str(out)], capsys)
    assert rc == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["orientation.png", "state_Pong_ep0_t00005.png",
                                                         "state_Pong_ep0_t00010.png"]
    with np.load(out / "explain.npz") as z:
        obs = z["obs"]
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8 and not np.array_equal(obs[0], obs[1])


def test_explain_bad_input_is_one_line_and_exit_2(checkpoints, tmp_path, capsys):
    not_model = tmp_path / "notes.zip"
    not_model.write_text("hello")
    float_obs = tmp_path / "float.npy"
    np.save(float_obs, np.zeros((4, 84, 84), np.float32))
    wrong_shape = tmp_path / "shape.npy"
    np.save(wrong_shape, np.zeros((1, 4, 64, 64), np.uint8))
    meta_less = tmp_path / "json.zip"  # a zip, but not an SB3 model
    with zipfile.ZipFile(meta_less, "w") as zf:
        zf.writestr("data", json.dumps({}))
    ck, obs = str(checkpoints["CWCA"]), str(PONG_FILES[0])
    cases = [
        (["--checkpoint", str(not_model), "--obs", obs], "not a checkpoint"),
        (["--checkpoint", str(meta_less), "--obs", obs], "no policy.pth"),
        (["--checkpoint", ck, "--obs", str(float_obs)], "float32"),
        (["--checkpoint", ck, "--obs", str(wrong_shape)], "shape"),
        (["--checkpoint", ck, "--env", "Breakout"], "Breakout has 4 actions"),
        (["--checkpoint", ck, "--env", "NoSuchGame"], "unknown Atari game"),
        (["--checkpoint", ck, "--agent", "CWRA", "--obs", obs], "holds a CWCA agent"),
    ]
    for args, message in cases:
        rc, _, err = run_cli(["explain", *args, "--out", str(tmp_path / "x")], capsys)
        assert rc == 2, args
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)
    assert not (tmp_path / "x" / "explain.npz").exists()
