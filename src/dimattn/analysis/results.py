"""Evaluation results as one tidy table: loading, checking, and export to the published pickle.

Every analysis in dimattn starts from a *tidy* :class:`pandas.DataFrame` with one row per
(game, agent, seed, evaluation) and the columns :data:`COLUMNS`:

=========  =======  ==========================================================================
column     dtype    meaning
=========  =======  ==========================================================================
game       str      canonical ALE name (``Pong``)
agent      str      an agent label: one of the five, a plugin's block, ``NAME@conv2``
seed       int      the run's seed (the published pickle has none: seeds are numbered 0..n-1)
timestep   int      total environment steps at the evaluation
score      float    mean game score over that evaluation's episodes
=========  =======  ==========================================================================

It can be read from (SPEC §5):

- a folder of runs (a study directory or any RL Zoo log folder): every ``evaluations.npz`` with a
  resolved ``config.yml`` beside it, found recursively; the config names game, agent and seed;
- the published post-processed pickle, through :func:`restricted_load`, which admits NumPy arrays
  and plain containers and refuses anything else;
- the word ``published``: the same published scores, shipped with dimattn as :data:`PUBLISHED_TABLE`
  (the tidy table, generated from the pickle by ``scripts/published_table.py``, tested equal to it).

Problems that still leave something to analyse are reported as :class:`DataWarning` warnings;
problems that leave nothing are :class:`~dimattn.errors.DimattnError`.
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
import pickletools
import warnings
import zipfile
import zlib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dimattn.agents.registry import agent_order, check_agent, load_provider
from dimattn.engines.rundir import CONFIG, EVALUATIONS
from dimattn.errors import DimattnError
from dimattn.fileio import atomic_write_bytes, read_regular
from dimattn.games import canonical_game, v4_id
from dimattn.yamlfile import load_yaml

COLUMNS: tuple[str, ...] = ("game", "agent", "seed", "timestep", "score")
#: File names that mark a run directory.
#: Suffixes read as a published results pickle.
PICKLE_SUFFIXES = (".pkl", ".pickle")
#: The word that names the published study's scores shipped with dimattn (``dimattn report published``).
PUBLISHED = "published"
#: Package data: the published scores as the tidy table (gzip CSV), made by ``scripts/published_table.py``.
PUBLISHED_TABLE = "data/published_scores.csv.gz"
#: A ``dimattn tune`` folder holds this file (its search) and this page (its results): its trials' runs are
#: tried hyperparameters, not seeds of a study, so a folder of runs leaves them out and the report links the page.
TUNE_FILE = "tune.yml"
TUNE_PAGE = "tune.html"


class DataWarning(UserWarning):
    """Input that is analysed anyway, with a caveat the user should read (a missing seed, ...)."""


def note(message: str) -> None:
    """Report a caveat about the data as a :class:`DataWarning`."""
    warnings.warn(message, DataWarning, stacklevel=2)


# --------------------------------------------------------------------------- restricted unpickler
class _NDArrayToken:
    """Stands for ``numpy.ndarray`` in a pickle: only ever an argument of :func:`_reconstruct`,
    so a pickle cannot call the ndarray constructor itself (with an object dtype, say)."""


#: Bounds of what the restricted unpickler reads and makes: the published pickle is 0.97 MB, ~37,000
#: opcodes and ~2,000 objects (56 games x 5 agents x 6 arrays); its largest array is 2 KB.
MAX_PICKLE_BYTES = 256 * 2**20
MAX_PICKLE_OPS = 10_000_000
MAX_PICKLE_OBJECTS = 1_000_000
MAX_ARRAY_BYTES = 256 * 2**20


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct`` limited to plain ndarrays of at most :data:`MAX_ARRAY_BYTES`."""
    if subtype is not _NDArrayToken:
        raise pickle.UnpicklingError(f"refusing to build array subclass {subtype!r}")
    dt = _dtype(dtype)
    dims = shape if isinstance(shape, tuple) else (shape,)
    if not all(isinstance(n, int) and n >= 0 for n in dims) or math.prod(dims) * dt.itemsize > MAX_ARRAY_BYTES:
        raise pickle.UnpicklingError(f"refusing an array of shape {str(shape)[:60]} and dtype {dt} (more than "
                                     f"{MAX_ARRAY_BYTES:,} bytes, or not a shape)")
    return np.ndarray.__new__(np.ndarray, dims, dt)


def _dtype(*args: Any) -> np.dtype:
    """``numpy.dtype`` without object dtypes (an object array could hold any Python object)."""
    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError("refusing an object-dtype array")
    return dt


def _scalar(dtype: np.dtype, data: bytes = b"") -> np.generic:
    """``numpy.core.multiarray.scalar`` for plain (non-object) dtypes: a scalar from its bytes."""
    return np.frombuffer(data, dtype=_dtype(dtype), count=1)[0]


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: str = "C") -> np.ndarray:
    """``numpy.core.numeric._frombuffer`` as protocol 5 spells an array: its bytes, dtype and shape."""
    dt = _dtype(dtype)
    dims = shape if isinstance(shape, tuple) else (shape,)
    if (not isinstance(buf, (bytes, bytearray)) or order not in ("C", "F") or not all(isinstance(n, int) and n >= 0
                                                                                    for n in dims)
            or math.prod(dims) * dt.itemsize != len(buf) or len(buf) > MAX_ARRAY_BYTES):
        raise pickle.UnpicklingError(f"refusing an array of shape {str(shape)[:60]} from {type(buf).__name__}")
    return np.frombuffer(buf, dtype=dt).reshape(dims, order=order).copy()


def _latin1(text: Any, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol 2 pickles spell ``bytes`` (an array's raw data): latin-1 text only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode other than of text to latin1 bytes")
    return text.encode("latin1")


# Every global a pickle of NumPy arrays needs (NumPy 1 and 2 module paths), mapped to a safe
# stand-in. Plain containers (dict, list, tuple, str, numbers) need no global at all.
_ALLOWED: dict[tuple[str, str], Any] = {
    **{(mod, "_reconstruct"): _reconstruct for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "scalar"): _scalar for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "ndarray"): _NDArrayToken,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1,  # protocol 2's bytes
    **{(mod, "_frombuffer"): _frombuffer for mod in ("numpy.core.numeric", "numpy._core.numeric")},  # protocol 5
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds NumPy arrays and plain containers and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only NumPy arrays and plain containers are allowed"
            ) from None


def _check_ops(data: bytes) -> None:
    """Walk the opcodes of ``data`` without running them: at most :data:`MAX_PICKLE_OPS`, and every length
    they declare present (the C unpickler allocates a declared length before it reads the bytes)."""
    end = len(data)
    for n, (op, arg, pos) in enumerate(pickletools.genops(data)):  # raises on a length beyond the data
        if n >= MAX_PICKLE_OPS:
            raise pickle.UnpicklingError(f"more than {MAX_PICKLE_OPS:,} opcodes")
        if op.name == "FRAME" and arg > end - pos:
            raise pickle.UnpicklingError(f"a frame of {arg:,} bytes at byte {pos:,} of {end:,}")


def _check_plain(obj: Any) -> None:
    """Raise if ``obj`` holds anything but containers, strings, numbers and non-object arrays, a container
    twice (a shared reference: a few hundred bytes can make a graph whose paths never end) or more than
    :data:`MAX_PICKLE_OBJECTS` objects. Visits each object once."""
    seen: set[int] = set()
    todo: list[tuple[Any, str]] = [(obj, "top level")]
    while todo:
        item, where = todo.pop()
        if len(seen) >= MAX_PICKLE_OBJECTS:
            raise pickle.UnpicklingError(f"more than {MAX_PICKLE_OBJECTS:,} objects")
        if isinstance(item, (dict, list, tuple)):
            if id(item) in seen:
                raise pickle.UnpicklingError(f"a {type(item).__name__} referenced twice, at {where}")
            seen.add(id(item))
            if isinstance(item, dict):
                todo += [(k, where) for k in item] + [(v, f"{where}/{str(k)[:40]}") for k, v in item.items()]
            else:
                todo += [(v, where) for v in item]
        elif isinstance(item, np.ndarray):
            if item.dtype.hasobject:
                raise pickle.UnpicklingError(f"object-dtype array at {where}")
        elif not isinstance(item, (str, bytes, int, float, bool, type(None), np.generic)):
            raise pickle.UnpicklingError(f"unexpected {type(item).__name__} at {where}")


def restricted_loads(data: bytes, source: str = "pickle") -> Any:
    """Unpickle ``data`` admitting only NumPy arrays and plain containers, bounded in size, opcodes, objects
    and array sizes (:data:`MAX_PICKLE_BYTES`, ...), so that no pickle runs code, allocates without bound
    or holds a graph that takes forever to walk.

    Raises :class:`DimattnError` (one line, naming ``source``) for a hostile or corrupt pickle.
    """
    try:
        if len(data) > MAX_PICKLE_BYTES:
            raise pickle.UnpicklingError(f"{len(data):,} bytes, more than {MAX_PICKLE_BYTES:,}")
        _check_ops(data)
        obj = RestrictedUnpickler(io.BytesIO(data)).load()
        _check_plain(obj)
    # A corrupt pickle can fail in many ways (EOFError, ValueError, KeyError, MemoryError, ...);
    # all of them mean the same thing to the user.
    except Exception as exc:  # noqa: BLE001
        raise DimattnError(
            f"cannot read {source}: refused or corrupt pickle ({type(exc).__name__}: {exc}); "
            "give the published post-processed results pickle or a folder of runs"
        ) from None
    return obj


def restricted_load(path: str | Path) -> Any:
    """:func:`restricted_loads` on the contents of ``path``."""
    path = Path(path)
    data = read_regular(path, MAX_PICKLE_BYTES, "a results pickle")
    return restricted_loads(data, str(path))


# --------------------------------------------------------------------------- the published pickle
def from_published(obj: Any, source: str = "pickle") -> pd.DataFrame:
    """The published structure ``{env_id: {agent: {"timesteps": (T,), "mean_per_eval": (T, S)}}}``
    -> tidy table. Seeds are numbered 0..S-1 in column order (the pickle does not name them)."""
    if not isinstance(obj, dict) or not obj:
        raise DimattnError(f"{source} is not a results pickle: expected a dict of games, got {type(obj).__name__}")
    frames = []
    for env_id, per_agent in obj.items():
        game = canonical_game(str(env_id))
        if not isinstance(per_agent, dict):
            raise DimattnError(f"{source}: entry {env_id!r} is not a dict of agents")
        for agent_name, fields in per_agent.items():
            agent = check_agent(str(agent_name))
            try:
                steps = np.asarray(fields["timesteps"])
                per_eval = np.asarray(fields["mean_per_eval"], dtype=np.float64)  # (T, S)
            except (TypeError, KeyError, ValueError) as exc:
                raise DimattnError(
                    f"{source}: {env_id}/{agent_name} lacks 'timesteps' and 'mean_per_eval' ({exc})") from None
            if steps.ndim != 1 or per_eval.ndim != 2 or per_eval.shape[0] != steps.shape[0]:
                raise DimattnError(
                    f"{source}: {env_id}/{agent_name} has timesteps {steps.shape} and mean_per_eval "
                    f"{per_eval.shape}; expected (T,) and (T, n_seeds)")
            n_evals, n_seeds = per_eval.shape
            frame = pd.DataFrame({
                "game": game, "agent": agent,
                "seed": np.tile(np.arange(n_seeds), n_evals),      # (T*S,) seed varies fastest
                "timestep": np.repeat(steps.astype(np.int64), n_seeds),
                "score": per_eval.reshape(-1),                      # (T, S) -> (T*S,)
            })
            for seed, g in frame.groupby("seed"):
                drop_non_finite(g["timestep"].to_numpy(), g["score"].to_numpy(), f"{source}: {env_id}/{agent_name} "
                                f"seed {seed}")
            frames.append(frame[np.isfinite(frame["score"])])
    return tidy(pd.concat(frames, ignore_index=True))


def drop_non_finite(steps: np.ndarray, score: np.ndarray, run: str) -> np.ndarray:
    """The mask of ``score``'s finite evaluations; a :class:`DataWarning` names ``run`` and the steps dropped.

    A diverged run can write NaN or ±inf. Such an evaluation has no place on a score scale (it would
    poison every mean, interval and profile it enters), so it is left out, as a missing evaluation is;
    the run's finite evaluations still count (docs/report.md).
    """
    finite = np.isfinite(score)
    if not finite.all():
        bad = [f"{int(s):,}" for s in steps[~finite][:5]] + (["..."] if (~finite).sum() > 5 else [])
        note(f"{run}: left out {int((~finite).sum())} of {len(score)} evaluation(s) whose score is not a finite "
             f"number (NaN or infinite; a diverged run?), at step(s) {', '.join(bad)}")
    return finite


def load_published(path: str | Path) -> pd.DataFrame:
    """Read the published post-processed results pickle into the tidy table."""
    return from_published(restricted_load(path), str(path))


def to_published(df: pd.DataFrame) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Tidy table -> the published structure, with its derived fields.

    Per ``<Game>NoFrameskip-v4`` and agent: ``timesteps`` int64 (T,), ``mean_per_eval`` float64
    (T, S), ``mean`` (T,), ``std_error`` (T,) = std(ddof=0)/√S over seeds, ``last_evals`` (S,),
    ``std_error_last_eval`` (). Seeds of one (game, agent) must share their evaluation steps
    (see :func:`align_steps`).
    """
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for (game, agent), g in df.groupby(["game", "agent"], sort=False):
        wide = g.pivot(index="timestep", columns="seed", values="score")  # (T, S)
        if wide.isna().any().any():
            raise DimattnError(f"{game}/{agent}: seeds have different evaluation steps; align them first")
        per_eval = wide.to_numpy(dtype=np.float64)
        n_seeds = per_eval.shape[1]
        last = per_eval[-1].copy()
        out.setdefault(v4_id(game), {})[agent] = {
            "timesteps": wide.index.to_numpy(dtype=np.int64),
            "mean": per_eval.mean(axis=1),
            "std_error": per_eval.std(axis=1) / np.sqrt(n_seeds),
            "last_evals": last,
            "std_error_last_eval": np.float64(last.std() / np.sqrt(n_seeds)),
            "mean_per_eval": per_eval,
        }
    return out


def save_published(df: pd.DataFrame, path: str | Path) -> None:
    """Write :func:`to_published` of ``df`` as a pickle, atomically."""
    atomic_write_bytes(path, pickle.dumps(to_published(df), protocol=4))


# --------------------------------------------------------------------------- run folders
def _read_config(path: Path) -> tuple[str, str, int]:
    """``config.yml`` -> (game, agent, seed)."""
    cfg = load_yaml(path, CONFIG)  # bounded as study.yml is: an alias bomb is refused before it expands
    if not isinstance(cfg, dict):
        raise DimattnError(f"{path} is not a YAML mapping; expected keys game, agent and seed")
    missing = [k for k in ("agent", "seed") if k not in cfg] + ([] if "game" in cfg or "env_id" in cfg else ["game"])
    if missing:
        raise DimattnError(f"{path} lacks {', '.join(missing)}; a run's config.yml must name game, agent and seed")
    try:
        game = canonical_game(str(cfg.get("game") or cfg["env_id"]))
        block = cfg.get("block") if isinstance(cfg.get("block"), dict) else {}
        if block.get("name"):  # its provider, by the name config.yml records (a study's plugin)
            load_provider(str(block["name"]), block, near=list(path.absolute().parents)[:6])
        agent = check_agent(str(cfg["agent"]))
        seed = int(cfg["seed"])
    except (DimattnError, TypeError, ValueError) as exc:
        raise DimattnError(f"{path}: {exc}") from None
    return game, agent, seed


#: An evaluations.npz bigger than this is not a run's (10M steps evaluated every 1,000 steps with 100
#: episodes each is 16 MB), and no array of one may declare more elements than this.
MAX_EVALUATIONS_BYTES = 256 * 2**20
MAX_EVALUATION_VALUES = 10**8


def _npz_array(z: zipfile.ZipFile, name: str, path: Path) -> np.ndarray:
    """Array ``name`` of the npz ``z``, its header checked before its data is read: a plain number dtype
    (no structured, string or object one), at most :data:`MAX_EVALUATION_VALUES` values."""
    try:
        f = z.open(f"{name}.npy")
    except KeyError:
        raise DimattnError(f"cannot read {path}: it has no array {name!r}; expected RL Zoo's evaluations.npz "
                           "with arrays timesteps and results") from None
    with f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if dtype.kind not in "iuf" or dtype.names is not None or dtype.subdtype is not None:
            raise DimattnError(f"cannot read {path}: {name} has dtype {dtype}; expected numbers (integers or floats)")
        if math.prod(shape) > MAX_EVALUATION_VALUES:
            raise DimattnError(f"cannot read {path}: {name} declares shape {shape}, more than "
                               f"{MAX_EVALUATION_VALUES:,} values")
    with z.open(f"{name}.npy") as f:  # reads the values the header declares, never the rest of the member
        return np.lib.format.read_array(f, allow_pickle=False)


def read_evaluations(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """``evaluations.npz`` -> (timesteps (T,) int64, results (T, episodes) float64), checked: one line naming
    the file for anything that is not an evaluation history. None for an empty (0-byte) file, which a run
    killed while an RL Zoo run wrote it leaves: the caller leaves that run out with a note."""
    data = read_regular(path, MAX_EVALUATIONS_BYTES, "RL Zoo's evaluations.npz")
    if not data:
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            steps, results = _npz_array(z, "timesteps", path), _npz_array(z, "results", path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DimattnError(f"cannot read {path}: {type(exc).__name__}: {str(exc)[:200]}; expected RL Zoo's "
                           "evaluations.npz with arrays timesteps and results (truncated or not an npz?)") from None
    if results.ndim == 1:  # one episode per evaluation
        results = results[:, None]
    if steps.ndim != 1 or results.ndim != 2 or len(steps) != len(results) or (len(steps) and not results.shape[1]):
        raise DimattnError(f"{path}: timesteps {steps.shape} and results {results.shape} do not match; expected "
                           "(T,) and (T, episodes)")
    _check_steps(steps, path)
    return steps.astype(np.int64), results.astype(np.float64)


def _check_steps(steps: np.ndarray, path: Path) -> None:
    """Evaluation steps are finite whole numbers >= 0, strictly increasing (as a run writes them)."""
    problem = None
    if not np.isfinite(steps).all():
        problem = "a timestep that is not a finite number"
    elif (steps < 0).any():
        problem = f"a negative timestep ({steps[steps < 0][0]:g})"
    elif (steps != np.round(steps)).any() or (steps > 2**62).any():
        problem = "a timestep that is not a whole number of steps"
    elif (np.diff(steps) <= 0).any():
        i = int(np.argmax(np.diff(steps) <= 0))
        what = "twice" if steps[i + 1] == steps[i] else f"after {steps[i]:g}"
        problem = f"timesteps out of order: {steps[i + 1]:g} {what}"
    if problem:
        raise DimattnError(f"{path} holds {problem}; a run's evaluations are at increasing steps: fix the file "
                           "or move the run out of the input folder")


def _read_evaluations(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """``evaluations.npz`` -> (timesteps (T,) int64, score (T,) = mean over each evaluation's episodes)."""
    read = read_evaluations(path)
    return None if read is None else (read[0], read[1].mean(axis=1))


def find_runs(folder: str | Path) -> list[Path]:
    """Every directory under ``folder`` holding both ``evaluations.npz`` and ``config.yml``, sorted; the runs
    of a hyperparameter search (under a folder holding :data:`TUNE_FILE`) left out."""
    folder = Path(folder)
    runs = []
    tunes = tune_folders(folder)
    for npz in sorted(folder.rglob(EVALUATIONS)):
        if any(npz.is_relative_to(t) for t in tunes):
            continue
        if (npz.parent / CONFIG).exists():  # one that is not a regular file is refused when read
            runs.append(npz.parent)
        else:
            note(f"skipped {npz}: no {CONFIG} beside it, so its game, agent and seed are unknown")
    return runs


def tune_folders(folder: str | Path) -> list[Path]:
    """The ``dimattn tune`` folders under ``folder`` (``folder`` itself included), sorted."""
    return sorted(p.parent for p in Path(folder).rglob(TUNE_FILE) if (p.parent / "trials").is_dir()
                  or (p.parent / TUNE_PAGE).is_file())


def load_runs(folder: str | Path) -> pd.DataFrame:
    """Every run under ``folder`` (a study directory or an RL Zoo log folder) -> tidy table."""
    folder = Path(folder)
    frames, seen = [], {}
    for run in find_runs(folder):
        key = _read_config(run / CONFIG)
        if key in seen:
            raise DimattnError(
                f"two runs of {key[0]}/{key[1]} seed {key[2]}: {seen[key]} and {run}; "
                "move one of them out of the input folder")
        seen[key] = run
        read = _read_evaluations(run / EVALUATIONS)
        if read is None or len(read[0]) == 0:
            note(f"skipped {run}: it has no evaluations yet" + (f" ({EVALUATIONS} is empty)" if read is None else ""))
            continue
        steps, score = read
        finite = drop_non_finite(steps, score, str(run))
        if not finite.any():
            continue  # the warning above says that every evaluation was left out
        steps, score = steps[finite], score[finite]
        game, agent, seed = key
        frames.append(pd.DataFrame({"game": game, "agent": agent, "seed": seed, "timestep": steps, "score": score}))
    if not frames:
        raise DimattnError(
            f"no runs with evaluations under {folder}: expected evaluations.npz files with a config.yml "
            "beside them (a study directory or an RL Zoo log folder)")
    return tidy(pd.concat(frames, ignore_index=True))


def published_table_bytes(df: pd.DataFrame) -> bytes:
    """The tidy table as the shipped file: CSV with every float written exactly, gzip'd reproducibly."""
    text = tidy(df).to_csv(index=False, lineterminator="\n")  # floats as repr: they read back bit for bit
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def load_shipped_published() -> pd.DataFrame:
    """The published study's scores (56 games x 5 agents x 5 seeds x 50 evaluations) shipped with dimattn.
    A damaged installation (the file deleted, truncated, overwritten) is one line saying to reinstall."""
    shipped = resources.files("dimattn").joinpath(PUBLISHED_TABLE)
    try:
        data = shipped.read_bytes()
        # keep_default_na=False: pandas would read the agent NA as a missing value
        df = pd.read_csv(io.BytesIO(data), compression="gzip", keep_default_na=False, float_precision="round_trip")
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"no column {', '.join(missing)}")
        df = tidy(df)
        if df.empty or not np.isfinite(df["score"]).all():
            raise ValueError("no rows" if df.empty else "a score that is not a finite number")
    # A damaged file fails in many ways (gzip, zlib, CSV parser, dtypes); all mean the same to the user.
    except (OSError, EOFError, ValueError, zlib.error, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
        raise DimattnError(f"the published scores shipped with dimattn ({shipped}) are unreadable ("
                           f"{' '.join(str(cause).split())[:160]}); the installation is damaged: reinstall dimattn "
                           "(pip install --force-reinstall dimattn)") from None
    return df


def check_source(source: str | Path, what: str = "the input") -> None:
    """Refuse an empty ``source`` (``what``: how the user gave it): ``Path("")`` is the current folder, never
    what an empty argument meant."""
    if not str(source).strip():
        raise DimattnError(f"{what} is an empty path; give a study directory, a folder of runs, a results .pkl "
                           "or 'published'")


def load_results(source: str | Path) -> pd.DataFrame:
    """A study directory, a folder of runs, a published results pickle, or ``"published"`` (the shipped
    published scores; ``./published`` names a folder of that name) -> tidy table."""
    if str(source) == PUBLISHED:
        return load_shipped_published()
    check_source(source)
    path = Path(source)
    if path.is_dir():
        return load_runs(path)
    if path.exists() and path.suffix.lower() in PICKLE_SUFFIXES:  # a FIFO or device is refused unread
        return load_published(path)
    if path.exists():
        raise DimattnError(f"{path} is neither a folder of runs nor a results pickle (.pkl)")
    raise DimattnError(f"{path} does not exist; give a study directory, a folder of runs or a results .pkl")


# --------------------------------------------------------------------------- checks
def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Columns in :data:`COLUMNS` order and dtypes, rows sorted by game, agent (study order), seed, step."""
    df = df.loc[:, list(COLUMNS)].astype({"game": str, "agent": str, "seed": np.int64,
                                          "timestep": np.int64, "score": np.float64})
    order = {a: i for i, a in enumerate(agent_order(set(df["agent"])))}
    df = df.sort_values(["game", "agent", "seed", "timestep"], key=lambda c: c.map(order) if c.name == "agent" else c)
    return df.reset_index(drop=True)


def align_steps(df: pd.DataFrame) -> pd.DataFrame:
    """Keep, per game, only the evaluation steps every (agent, seed) of that game has.

    Seeds that were evaluated at different steps (a run still in progress, a different
    ``--eval-freq``) cannot be averaged step by step; a :class:`DataWarning` says what was dropped.
    """
    kept = []
    for game, g in df.groupby("game", sort=False):
        per_run = [set(r["timestep"]) for _, r in g.groupby(["agent", "seed"], sort=False)]
        common = set.intersection(*per_run)
        if not common:
            note(f"{game}: its runs share no evaluation step; left out")
            continue
        if any(len(s) != len(common) for s in per_run):
            longest = max(len(s) for s in per_run)
            note(f"{game}: runs were evaluated at different steps; using the {len(common)} steps all runs "
                 f"share (up to {max(common):,}) instead of up to {longest}")
        kept.append(g[g["timestep"].isin(common)])
    if not kept:
        raise DimattnError("no game has evaluation steps shared by all its runs; nothing to analyse")
    return pd.concat(kept, ignore_index=True)


def coverage_notes(df: pd.DataFrame, agents: tuple[str, ...] | None = None) -> list[str]:
    """Say which agents each game lacks and which (game, agent) has fewer seeds than the most seen."""
    notes = []
    present = df.groupby("game")["agent"].unique()
    seen_agents = [a for a in (agent_order(set(df["agent"])) if agents is None else agents) if a in set(df["agent"])]
    for game, have in present.items():
        missing = [a for a in seen_agents if a not in set(have)]
        if missing:
            notes.append(f"{game}: no runs of {', '.join(missing)}")
    seeds = df.groupby(["game", "agent"])["seed"].nunique()
    most = int(seeds.max())
    for (game, agent), n in seeds.items():
        if n < most:
            notes.append(f"{game}/{agent}: {n} seed(s) where others have {most}")
    return notes
