"""The run configuration: defaults, flags generated from the dataclasses, TOML both ways, and
one-line errors that name the key."""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calf.config import (
    SECTIONS,
    ConfigError,
    RunConfig,
    add_config_arguments,
    apply_overrides,
    config_from_args,
    config_from_dict,
    config_to_toml,
    load_config,
    write_config,
)
from calf.envs import PointMassParams


def parse(*argv: str, short_flags: bool = True) -> RunConfig:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, short_flags=short_flags)
    return config_from_args(parser.parse_args(list(argv)))


def all_keys() -> list[tuple[str, dataclasses.Field[Any]]]:
    return [(f"{s}.{f.name}", f) for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def test_env_section_mirrors_point_mass_params() -> None:
    env_fields = {f.name: f.default for f in dataclasses.fields(RunConfig().env)}
    params = {f.name: f.default for f in dataclasses.fields(PointMassParams)}
    assert env_fields == params
    assert RunConfig().env.params(max_steps=7) == PointMassParams(max_steps=7)


def test_every_key_has_a_flag_and_the_flags_set_it() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    usage = parser.format_help()
    for key, _ in all_keys():
        assert "--" + key.replace("_", "-") + " " in usage
    cfg = parse("--calf.nu-bar", "0.5", "--nominal.kp", "3", "--td3.batch-size", "32")
    assert (cfg.calf.nu_bar, cfg.nominal.kp, cfg.td3.batch_size) == (0.5, 3.0, 32)
    assert cfg.train == RunConfig().train


def test_short_flags_of_python_m_calf_still_work() -> None:
    cfg = parse("--episodes", "7", "--max-steps", "50", "--seed", "3", "--algo", "td3")
    assert (cfg.train.episodes, cfg.env.max_steps, cfg.train.seed, cfg.train.algo) == (
        7,
        50,
        3,
        "td3",
    )
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, short_flags=False)
    parser.add_argument("--episodes")  # a caller's own option of the same name does not clash
    assert parser.parse_args(["--episodes", "3"]).episodes == "3"


def test_flags_override_the_file_which_overrides_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("[calf]\nnu_bar = 0.25\nkappa_up_coef = 50\n[train]\nepisodes = 9\n")
    cfg = parse("--config", str(path), "--episodes", "11")
    assert cfg.calf.nu_bar == 0.25 and cfg.calf.kappa_up_coef == 50.0  # an int read as a float
    assert cfg.train.episodes == 11
    assert cfg.td3 == RunConfig().td3


def test_toml_written_then_read_is_the_same_config(tmp_path: Path) -> None:
    cfg = apply_overrides(RunConfig(), {"td3.lr": 1e-05, "train.device": "cuda:1"})
    write_config(tmp_path / "config.toml", cfg)
    assert load_config(tmp_path / "config.toml") == cfg
    assert tomllib.loads(config_to_toml(cfg))["td3"]["lr"] == 1e-05


def _valid_value(f: dataclasses.Field[Any]) -> st.SearchStrategy[Any]:
    meta = f.metadata
    if meta["choices"]:
        return st.sampled_from(meta["choices"])
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    if kind == "bool":
        return st.booleans()
    if kind == "str":
        return st.sampled_from(["cpu", "cuda", "cuda:0"])
    lo = meta["lo"] if meta["lo"] is not None else -(10**6)
    hi = meta["hi"] if meta["hi"] is not None else 10**6
    if kind == "int":
        return st.integers(int(lo), int(hi))
    return st.floats(lo, hi, exclude_min=meta["lo_open"], allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_toml_round_trip_preserves_every_valid_value(data: st.DataObject) -> None:
    key, f = data.draw(st.sampled_from(all_keys()))
    value = data.draw(_valid_value(f))
    try:
        cfg = apply_overrides(RunConfig(), {key: value})
    except ConfigError:  # a value that breaks a cross-key rule (boundary > init_range, ...)
        return
    assert config_from_dict(tomllib.loads(config_to_toml(cfg))) == cfg


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[calf]\nnu_barr = 1\n", "calf.nu_barr: unknown key (did you mean 'calf.nu_bar'?)"),
        ("[trian]\nseed = 1\n", "trian: unknown key (did you mean 'train'?)"),
        ("[calf]\nnu_bar = 'big'\n", "calf.nu_bar: expected a number, got 'big' (str)"),
        ("[td3]\nbatch_size = 2.5\n", "td3.batch_size: expected an integer, got 2.5 (float)"),
        ("[td3]\nbatch_size = true\n", "td3.batch_size: expected an integer, got True (bool)"),
        ("[calf]\nnu_bar = -1\n", "calf.nu_bar: must be >= 0.0, got -1.0"),
        ("[env]\ndt = 0\n", "env.dt: must be > 0.0, got 0.0"),
        ("[calf]\nlambda_relax = 1.5\n", "calf.lambda_relax: must be <= 1.0, got 1.5"),
        ("[train]\nalgo = 'sac'\n", "train.algo: must be one of calf, td3, got 'sac'"),
        ("[env]\nboundary = 3.0\n", "env.boundary: must exceed env.init_range"),
        ("[td3]\nbatch_size = 64\nreplay_capacity = 10\n", "td3.batch_size: must be <= td3.repl"),
        ("[train]\ndevice = 'tpu'\n", "train.device: must be cpu, cuda or cuda:N, got 'tpu'"),
        ("calf = 3\n", "calf: expected a table [calf], got 3"),
        ("[calf\n", "not valid TOML"),
    ],
)
def test_bad_files_raise_one_line_naming_the_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--calf.nu-bar", "abc"], "--calf.nu-bar: expected a number, got 'abc'"),
        (["--episodes", "2.5"], "--train.episodes: expected an integer, got '2.5'"),
        (["--episodes", "0"], "train.episodes: must be >= 1, got 0"),
        (["--algo", "sac"], "train.algo: must be one of calf, td3"),
    ],
)
def test_bad_flags_raise_one_line_naming_the_key(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(*argv)


def test_a_missing_file_is_named() -> None:
    with pytest.raises(ConfigError, match="nope.toml: cannot read"):
        load_config("nope.toml")


def test_defaults_are_the_measured_ones() -> None:
    """The defaults a run uses (README, "The research loop"): a PD (damping ratio 0.5) that
    reaches the goal from every reset state, and a certificate that needs a real decrease."""
    cfg = RunConfig()
    assert (cfg.nominal.kp, cfg.nominal.kd) == (1.0, 1.0)
    assert cfg.calf.nu_bar == 1.0
    assert cfg.env.max_steps == cfg.eval.max_steps == 1000
