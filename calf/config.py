"""One typed configuration for a run: dataclasses -> command-line flags and TOML, both ways.

``RunConfig`` holds one section per concern (env, td3, calf, nominal, train, eval). Each field
carries its help text and its allowed range as dataclass metadata, and everything else is derived
from that: the ``--section.field-name`` flags, the TOML reader's checks, the TOML writer.

Precedence: the dataclass defaults, then a TOML file (``--config run.toml``), then flags.
Another command line reuses the same two calls::

    add_config_arguments(parser)          # --config and every --section.field flag
    cfg = config_from_args(parser.parse_args())   # ConfigError on bad input

Bad input raises ``ConfigError`` whose message is one line naming the key; command lines print
it and exit with status 2.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calf.atomic import atomic_write

if TYPE_CHECKING:
    from calf.envs import PointMassParams

ALGOS = ("calf", "td3")
Scalar = bool | int | float | str


class ConfigError(ValueError):
    """A configuration value, key or file is bad; the message is one line naming it."""


class UsageError(Exception):
    """Bad command-line input: one line on stderr, exit status 2 (``python -m calf`` and
    ``calf-train``)."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are a ``UsageError`` of one line, no usage dump."""

    def error(self, message: str) -> Any:
        raise UsageError(message)


def _field(
    default: Scalar,
    help: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A dataclass field with its help text and allowed range (``lo_open``: ``> lo``)."""
    return field(
        default=default,
        metadata={"help": help, "lo": lo, "hi": hi, "lo_open": lo_open, "choices": choices},
    )


@dataclass(frozen=True)
class EnvConfig:
    """The point mass (``calf.envs.PointMassParams``, field for field)."""

    dt: float = _field(0.01, "integration step (s)", lo=0.0, lo_open=True)
    max_action: float = _field(5.0, "action (acceleration) bound", lo=0.0, lo_open=True)
    goal_radius: float = _field(0.2, "success: |s| < goal_radius", lo=0.0, lo_open=True)
    init_range: float = _field(4.0, "reset draws x, v uniformly in [-r, r]", lo=0.0, lo_open=True)
    boundary: float = _field(10.0, "leaving |x|, |v| <= boundary truncates", lo=0.0, lo_open=True)
    max_steps: int = _field(1000, "episode step limit", lo=1)

    def params(self, **overrides: Any) -> PointMassParams:
        """These values (and ``overrides``) as the env's ``PointMassParams``."""
        from calf.envs import PointMassParams  # gymnasium loads only when an env is built

        return PointMassParams(**{**asdict(self), **overrides})


@dataclass(frozen=True)
class TD3Config:
    """The TD3 learner and its exploration."""

    hidden_dim: int = _field(64, "hidden units per layer (actor and critic)", lo=1)
    lr: float = _field(3e-4, "Adam learning rate", lo=0.0, lo_open=True)
    discount: float = _field(0.99, "discount factor gamma", lo=0.0, hi=1.0)
    tau: float = _field(0.005, "target-network soft-update rate", lo=0.0, hi=1.0, lo_open=True)
    policy_noise: float = _field(0.2, "target-policy smoothing noise std", lo=0.0)
    noise_clip: float = _field(0.5, "target-policy smoothing noise clip", lo=0.0)
    policy_delay: int = _field(2, "critic updates per actor update", lo=1)
    batch_size: int = _field(256, "minibatch size", lo=1)
    replay_capacity: int = _field(100_000, "replay buffer size", lo=1)
    exploration_noise: float = _field(0.1, "exploration noise std, times max_action", lo=0.0)
    learning_starts: int = _field(500, "random-action steps before acting and learning", lo=0)
    fused_update: bool = _field(
        True, "the fused update (false: the straightforward reference update, same results)"
    )


@dataclass(frozen=True)
class CALFConfig:
    """The certificate (q - q_dagger >= nu_bar, kappa bounds) and the relax probability."""

    nu_bar: float = _field(1.0, "required critic improvement over the last certificate", lo=0.0)
    kappa_low_coef: float = _field(0.01, "lower K-infinity bound: k_low |s|^2 <= -Q", lo=0.0)
    kappa_up_coef: float = _field(1000.0, "upper K-infinity bound: -Q <= k_up |s|^2", lo=0.0)
    lambda_relax: float = _field(0.99995, "P_relax decay per step", lo=0.0, hi=1.0)
    relax_prob_init: float = _field(0.99995, "P_relax at the start of training", lo=0.0, hi=1.0)


@dataclass(frozen=True)
class NominalConfig:
    """The PD fallback a = clip(-kp x - kd v)."""

    kp: float = _field(1.0, "PD position gain", lo=0.0)
    kd: float = _field(1.0, "PD velocity gain", lo=0.0)


@dataclass(frozen=True)
class TrainConfig:
    """What to train, for how long, and how often to evaluate and keep checkpoints."""

    algo: str = _field("calf", "calf, or td3 for the plain TD3 agent", choices=ALGOS)
    episodes: int = _field(60, "training episodes", lo=1)
    seed: int = _field(0, "seed of networks, exploration and resets")
    device: str = _field("cpu", "torch device: cpu, cuda or cuda:N")
    checkpoint_every: int = _field(10, "episodes between kept checkpoints", lo=1)
    eval_every: int = _field(5, "episodes between evaluations", lo=1)


@dataclass(frozen=True)
class EvalConfig:
    """Evaluations: CALF as deployed, actor alone, nominal alone from the same start states."""

    rollouts: int = _field(100, "seeded start states per evaluation (E)", lo=1)
    max_steps: int = _field(1000, "step limit of an evaluation rollout", lo=1)
    seed: int = _field(12345, "seed of the evaluation start states")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run is made of; ``config.toml`` of a run folder is this, resolved."""

    env: EnvConfig = field(default_factory=EnvConfig)
    td3: TD3Config = field(default_factory=TD3Config)
    calf: CALFConfig = field(default_factory=CALFConfig)
    nominal: NominalConfig = field(default_factory=NominalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        for section in fields(self):
            value = getattr(self, section.name)
            for f in fields(value):
                _check_range(f"{section.name}.{f.name}", getattr(value, f.name), f.metadata)
        # Checks that tie two keys together.
        if self.env.boundary <= self.env.init_range:
            raise ConfigError(
                f"env.boundary: must exceed env.init_range ({self.env.init_range}), "
                f"got {self.env.boundary}"
            )
        if self.calf.kappa_up_coef < self.calf.kappa_low_coef:
            raise ConfigError(
                f"calf.kappa_up_coef: must be >= calf.kappa_low_coef "
                f"({self.calf.kappa_low_coef}), got {self.calf.kappa_up_coef}"
            )
        if self.td3.batch_size > self.td3.replay_capacity:
            raise ConfigError(
                f"td3.batch_size: must be <= td3.replay_capacity ({self.td3.replay_capacity}), "
                f"got {self.td3.batch_size}"
            )
        device = self.train.device
        if not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
            raise ConfigError(f"train.device: must be cpu, cuda or cuda:N, got {device!r}")

    def to_dict(self) -> dict[str, dict[str, Scalar]]:
        """{section: {key: value}}: what ``config.toml`` holds."""
        return asdict(self)


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in fields(RunConfig)}  # type: ignore[misc]

# The short flags ``python -m calf`` always had, as aliases of their keys.
SHORT_FLAGS: dict[str, str] = {
    "--algo": "train.algo",
    "--episodes": "train.episodes",
    "--seed": "train.seed",
    "--device": "train.device",
    "--max-steps": "env.max_steps",
}


# ------------------------------------------------------------------- values
def _kind(f: Any) -> type:
    """The scalar type of a field (annotations are strings under ``from __future__``)."""
    kinds = {"bool": bool, "int": int, "float": float, "str": str}
    return kinds[f.type if isinstance(f.type, str) else f.type.__name__]


def _check_range(key: str, value: Scalar, meta: Any) -> None:
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"{key}: must be one of {', '.join(meta['choices'])}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None:
        if meta.get("lo_open") and not value > lo:
            raise ConfigError(f"{key}: must be > {lo}, got {value}")
        if not value >= lo:
            raise ConfigError(f"{key}: must be >= {lo}, got {value}")
    if hi is not None and not value <= hi:
        raise ConfigError(f"{key}: must be <= {hi}, got {value}")


def _coerce(key: str, kind: type, value: Any) -> Scalar:
    """A TOML value as the field's type: ints pass as floats, nothing else converts."""
    if kind is bool:
        ok = isinstance(value, bool)
    elif isinstance(value, bool):  # bool is an int subclass: never a number here
        ok = False
    elif kind is float:
        ok = isinstance(value, int | float)
    else:
        ok = isinstance(value, kind)
    if not ok:
        want = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
        raise ConfigError(f"{key}: expected {want[kind]}, got {value!r} ({type(value).__name__})")
    return float(value) if kind is float else value


def _parse_text(key: str, kind: type, text: str) -> Scalar:
    """A command-line string as the field's type."""
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        want = {bool: "true or false", int: "an integer", float: "a number"}
        raise ConfigError(f"{key}: expected {want[kind]}, got {text!r}") from None
    return text


def _key_fields() -> dict[str, Any]:
    """'section.key' -> its dataclass field, for every key."""
    return {f"{section}.{f.name}": f for section, cls in SECTIONS.items() for f in fields(cls)}


def _unknown(key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{key}: unknown key{hint}")


def apply_overrides(cfg: RunConfig, values: dict[str, Any]) -> RunConfig:
    """``cfg`` with {'section.key': value} set (values already of the field's type)."""
    by_section: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        section, name = key.split(".", 1)
        by_section.setdefault(section, {})[name] = value
    parts = {s: replace(getattr(cfg, s), **kv) for s, kv in by_section.items()}
    return replace(cfg, **parts)


# --------------------------------------------------------------------- TOML
def config_from_dict(data: dict[str, Any], base: RunConfig | None = None) -> RunConfig:
    """{section: {key: value}} (as TOML reads it) over ``base`` (default: the defaults).
    Unknown sections or keys and values of the wrong type raise ConfigError."""
    known = _key_fields()
    values: dict[str, Scalar] = {}
    for section, table in data.items():
        if section not in SECTIONS:
            raise _unknown(section, list(SECTIONS))
        if not isinstance(table, dict):
            raise ConfigError(f"{section}: expected a table [{section}], got {table!r}")
        for name, value in table.items():
            key = f"{section}.{name}"
            if key not in known:
                raise _unknown(key, list(known))
            values[key] = _coerce(key, _kind(known[key]), value)
    return apply_overrides(base or RunConfig(), values)


def load_config(path: str | Path, base: RunConfig | None = None) -> RunConfig:
    """Read a TOML file over ``base``; ConfigError (naming the file) on any problem."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        return config_from_dict(data, base)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def _toml_value(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form; TOML reads 1e-05, 0.5, 1000.0
    return json.dumps(value)  # a TOML basic string uses JSON's escapes


def config_to_toml(cfg: RunConfig) -> str:
    """The config as TOML: one flat table of scalars per section, help as comments."""
    lines = ["# calf-viz run configuration (python -m calf --config this-file)"]
    for section, cls in SECTIONS.items():
        lines += ["", f"[{section}]"]
        for f in fields(cls):
            value = getattr(getattr(cfg, section), f.name)
            lines.append(f"{f.name} = {_toml_value(value)}  # {f.metadata['help']}")
    return "\n".join(lines) + "\n"


def write_config(path: str | Path, cfg: RunConfig) -> Path:
    """Write ``config.toml`` atomically."""
    text = config_to_toml(cfg)
    return atomic_write(path, lambda fh: fh.write(text))


# ----------------------------------------------------------------- argparse
_DEST = "config:"  # prefix of the argparse dest of every config flag


def add_config_arguments(parser: argparse.ArgumentParser, short_flags: bool = True) -> None:
    """Add ``--config PATH`` and ``--section.field-name VALUE`` for every key (``short_flags``:
    also --algo, --episodes, --seed, --device, --max-steps). Flags not given stay out of the
    namespace, so ``config_from_args`` can tell them from defaults."""
    parser.add_argument(
        "--config", metavar="TOML", default=None, help="read settings from a TOML file"
    )
    aliases = {key: flag for flag, key in SHORT_FLAGS.items()} if short_flags else {}
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"[{section}]", (cls.__doc__ or "").strip() or None)
        for f in fields(cls):
            key = f"{section}.{f.name}"
            flags = [f"--{section}.{f.name.replace('_', '-')}"]
            if key in aliases:
                flags.append(aliases[key])
            meta = f.metadata
            default = f.default if f.default is not MISSING else None
            group.add_argument(
                *flags,
                dest=_DEST + key,
                default=argparse.SUPPRESS,
                metavar="{" + ",".join(meta["choices"]) + "}"
                if meta["choices"]
                else _kind(f).__name__.upper(),
                help=f"{meta['help']} (default {default})",
            )


def config_from_args(namespace: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """The config from parsed arguments: ``base`` (default: the defaults), then the TOML
    file of ``--config``, then the flags given. Raises ConfigError."""
    cfg = base or RunConfig()
    path = getattr(namespace, "config", None)
    if path is not None:
        cfg = load_config(path, cfg)
    return apply_overrides(cfg, flag_values(namespace))


def flag_values(namespace: argparse.Namespace) -> dict[str, Scalar]:
    """{'section.key': value} of the config flags given on the command line."""
    known = _key_fields()
    values: dict[str, Scalar] = {}
    for dest, text in vars(namespace).items():
        if dest.startswith(_DEST):
            key = dest.removeprefix(_DEST)
            flag = "--" + key.replace("_", "-")
            try:
                values[key] = _parse_text(key, _kind(known[key]), text)
            except ConfigError as exc:
                raise ConfigError(f"{flag}: {str(exc).split(': ', 1)[1]}") from None
    return values
