"""Model checkpoints: a directory with model.safetensors + config.json. Never pickle.

config.json holds the architecture, the joint layout, the pose normalisation constants, the
training set's root-offset and latent statistics (mean, cov), provenance (data digest, recipe,
synthgen version) and the sha256 of the weights file. `load` rebuilds the model from it and
verifies, before any weight is used, that the file is complete, unaltered and matches the
architecture tensor by tensor; anything else raises `CheckpointError` with a one-line reason.

Training checkpoints add optimizer.safetensors (optimizer tensors) and training_state.json
(stage, step, seeds, optimizer hyper-parameters, sha256 of the optimizer file).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

import synthgen
from synthgen.conventions import LAYOUTS, InputConvention
from synthgen.errors import InputError
from synthgen.models.config import CrossingNetsConfig, GaussianStats, PoseNormalisation
from synthgen.models.crossing_nets import CrossingNets
from synthgen.outputs import write_bytes_atomically

FORMAT = "synthgen.crossing_nets"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
OPTIMIZER = "optimizer.safetensors"
TRAINING_STATE = "training_state.json"

_PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar", ".npz", ".joblib"}
_DTYPES = {  # safetensors header dtype → torch dtype
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}  # fmt: skip


class CheckpointError(InputError):
    """A checkpoint that is missing, corrupted, truncated, mismatched or of a refused format
    (an InputError, so a command given one prints its one-line reason and exits 2)."""


# --- weights ---------------------------------------------------------------------------------


def _serialise(tensors: dict[str, torch.Tensor]) -> bytes:
    return st_save({k: v.detach().contiguous() for k, v in tensors.items()})


def weights_sha256(model: CrossingNets) -> str:
    return hashlib.sha256(_serialise(model.state_dict())).hexdigest()


def save_model(model: CrossingNets, directory: str | Path) -> str:
    """Write model.safetensors and config.json; returns the weights' sha256."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    blob = _serialise(model.state_dict())
    digest = hashlib.sha256(blob).hexdigest()
    write_bytes_atomically(directory / WEIGHTS, blob)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "synthgen_version": synthgen.__version__,
        "architecture": model.config.to_dict(),
        "joints": _joints_entry(model.joint_layout),
        "normalisation": asdict(model.normalisation),
        "root_offset": asdict(model.root_offset),
        "latent": asdict(model.latent),
        "input_convention": model.input_convention.to_dict(),
        "provenance": model.provenance,
        "weights": {"file": WEIGHTS, "sha256": digest, "bytes": len(blob)},
    }
    write_bytes_atomically(directory / CONFIG, json.dumps(config, indent=2).encode())
    return digest


def load(path: str | Path) -> CrossingNets:
    """Rebuild a `CrossingNets` from a checkpoint directory (or its config.json / weights file).

    Refuses pickles (.pt/.pth/...) without reading them as such, and raises CheckpointError on
    a missing file, a sha256 mismatch (corruption), truncation, or a tensor whose name, shape
    or dtype differs from what config.json's architecture builds. Returns the model in eval mode.
    """
    directory = _checkpoint_dir(Path(path))
    config = _read_json(directory / CONFIG)
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{directory / CONFIG}: not a synthgen Crossing Nets config "
                              f"(format {config.get('format')!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{directory / CONFIG}: format_version {config.get('format_version')!r} "
                              f"is not supported (this synthgen reads {FORMAT_VERSION})")
    joints = config.get("joints", {})
    layout = joints.get("layout")
    if layout not in LAYOUTS or joints != _joints_entry(layout):
        raise CheckpointError(f"{directory / CONFIG}: joint layout {layout!r} with {joints.get('count')} joints "
                              f"is not one synthgen knows (known: {', '.join(LAYOUTS)}, with their joint names)")
    try:
        model = CrossingNets(CrossingNetsConfig.from_dict(config["architecture"]),
                             PoseNormalisation(**config["normalisation"]),
                             GaussianStats.from_dict(config["root_offset"]),
                             GaussianStats.from_dict(config["latent"]),
                             config.get("provenance", {}), joint_layout=layout,
                             input_convention=InputConvention.from_dict(config.get("input_convention")))
    except KeyError as e:
        raise CheckpointError(f"{directory / CONFIG}: missing entry {e}") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / CONFIG}: invalid architecture or metadata ({e})") from None

    weights = directory / WEIGHTS
    blob = _read_bytes(weights)
    tensors = _verified_tensors(weights, blob, config.get("weights", {}).get("sha256"), model.state_dict())
    model.load_state_dict(tensors, strict=True)
    return model.eval()


def read_input_convention(path: str | Path) -> InputConvention:
    """The input convention in a checkpoint's config.json, without loading its weights; configs
    written before models carried one hold synthgen's own (conventions.SYNTHGEN_INPUT)."""
    config_path = _checkpoint_dir(Path(path)) / CONFIG
    config = _read_json(config_path)
    try:
        return InputConvention.from_dict(config.get("input_convention"))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{config_path}: invalid input_convention ({error})") from None


def _joints_entry(layout: str) -> dict:
    """config.json's "joints": the layout's name, joint names and count."""
    names = LAYOUTS[layout].joint_names
    return {"layout": layout, "names": list(names), "count": len(names)}


def _verified_tensors(path: Path, blob: bytes, expected_sha: str | None,
                      expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    header = _safetensors_header(path, blob)
    digest = hashlib.sha256(blob).hexdigest()
    if digest != expected_sha:
        raise CheckpointError(f"{path}: sha256 {digest[:12]}… does not match config.json's "
                              f"{str(expected_sha)[:12]}… (file corrupted or replaced)")
    names = set(header) - {"__metadata__"}
    missing, extra = sorted(set(expected) - names), sorted(names - set(expected))
    if missing or extra:
        raise CheckpointError(f"{path}: tensors do not match the architecture in config.json "
                              f"(missing {missing[:3]}, unexpected {extra[:3]})")
    for name, ref in expected.items():
        info = header[name]
        shape, dtype = info.get("shape"), info.get("dtype")
        if shape != list(ref.shape) or _DTYPES.get(dtype) != ref.dtype:
            raise CheckpointError(f"{path}: tensor {name!r} is {dtype} {shape} but the "
                                  f"architecture in config.json needs {ref.dtype} {list(ref.shape)}")
    return st_load(blob)


def _safetensors_header(path: Path, blob: bytes) -> dict:
    """Parse and check the safetensors header; detects truncation before anything else."""
    if len(blob) < 8:
        raise CheckpointError(f"{path}: truncated ({len(blob)} bytes), not a safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    if blob[8:9] != b"{":  # a safetensors header is JSON right after its 8-byte length
        _refuse_pickle(path, blob[:8])
        raise CheckpointError(f"{path}: not a safetensors file (no JSON header)")
    if 8 + n > len(blob):
        raise CheckpointError(f"{path}: truncated: header needs {8 + n} bytes, file has {len(blob)}")
    try:
        header = json.loads(blob[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: corrupted safetensors header") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupted safetensors header")
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (KeyError, TypeError, IndexError, ValueError):
        raise CheckpointError(f"{path}: corrupted safetensors header") from None
    if 8 + n + end != len(blob):
        raise CheckpointError(f"{path}: truncated or padded: tensors need {8 + n + end} bytes, "
                              f"file has {len(blob)}")
    return header


def _refuse_pickle(path: Path, head: bytes) -> None:
    """Pickles (protocol 2+) start with PROTO 0x80 and the protocol number; torch.save writes a
    zip (PK\\x03\\x04). Only the first bytes are looked at: nothing is ever unpickled."""
    is_pickle = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    if is_pickle or head[:4] == b"PK\x03\x04" or path.suffix.lower() in _PICKLE_SUFFIXES:
        raise CheckpointError(f"{path}: refusing a pickle / torch.save file; synthgen only loads a "
                              f"directory with {WEIGHTS} + {CONFIG} and never unpickles")


def _checkpoint_dir(path: Path) -> Path:
    if path.is_dir():
        return path
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        _refuse_pickle(path, b"")
    with path.open("rb") as f:
        _refuse_pickle(path, f.read(8))
    if path.name in (CONFIG, WEIGHTS):
        return path.parent
    raise CheckpointError(f"{path}: expected a checkpoint directory with {WEIGHTS} + {CONFIG}")


# --- training state --------------------------------------------------------------------------


def save_training_state(directory: str | Path, optimizers: dict[str, torch.optim.Optimizer], state: dict) -> None:
    """Optimizer tensors → optimizer.safetensors; everything else → training_state.json."""
    directory = Path(directory)
    tensors, groups = {}, {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        groups[name] = sd["param_groups"]
        for pid, pstate in sd["state"].items():
            for key, value in pstate.items():
                tensors[f"{name}.{pid}.{key}"] = value
    blob = _serialise(tensors)
    write_bytes_atomically(directory / OPTIMIZER, blob)
    doc = dict(state, optimizers=groups, optimizer_sha256=hashlib.sha256(blob).hexdigest())
    write_bytes_atomically(directory / TRAINING_STATE, json.dumps(doc, indent=2).encode())


def load_training_state(directory: str | Path) -> tuple[dict, dict[str, dict]]:
    """→ (state dict from training_state.json, {optimizer name: torch optimizer state_dict})."""
    directory = Path(directory)
    doc = _read_json(directory / TRAINING_STATE)
    blob = _read_bytes(directory / OPTIMIZER)
    _safetensors_header(directory / OPTIMIZER, blob)
    if hashlib.sha256(blob).hexdigest() != doc.get("optimizer_sha256"):
        raise CheckpointError(f"{directory / OPTIMIZER}: sha256 does not match {TRAINING_STATE}")
    tensors = st_load(blob)
    optimizers = {}
    for name, groups in doc.pop("optimizers").items():
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            opt_name, pid, field_name = key.split(".", 2)
            if opt_name == name:
                state.setdefault(int(pid), {})[field_name] = value
        for g in groups:
            if "betas" in g:
                g["betas"] = tuple(g["betas"])
        optimizers[name] = {"state": state, "param_groups": groups}
    return doc, optimizers


# --- small file helpers ----------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None


def _read_json(path: Path) -> dict:
    blob = _read_bytes(path)
    _refuse_pickle(path, blob[:8])
    try:
        doc = json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return doc
