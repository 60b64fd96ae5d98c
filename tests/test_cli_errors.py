"""Every command behaves the same on bad input: one line on stderr, exit code 2, no traceback; and
every command has ``--help`` (ending with its exit codes), ``--version`` and ``--traceback``.

Each console script of pyproject.toml runs as ``python -m MODULE`` in a subprocess, as a user
runs it, with the mistakes people make: an unknown option, a bad number, a missing file, a
directory where a file belongs, a file of the wrong kind, an endpoint or port another program
holds. The subprocesses run in parallel; most fail before the heavy imports.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tokenize
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("slac_runtime", "robots", "calibration", "slac_train")


def console_scripts() -> dict[str, str]:
    """pyproject.toml's console scripts: name -> module."""
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    return {name: target.split(":")[0] for name, target in scripts.items()}


SCRIPTS = console_scripts()
# python -m tools that are not console scripts but take options the same way
OTHER_TOOLS = {
    "python -m slac_train.demo": "slac_train.demo",
    "python -m slac_train.pipeline_demo": "slac_train.pipeline_demo",
    "python -m slac_train.imitation.teachers.dclaw_turn_tables": (
        "slac_train.imitation.teachers.dclaw_turn_tables"
    ),
}

ENDPOINT = "tcp://127.0.0.1:1"  # nothing publishes there; slac-run refuses before it waits
# (script, what is wrong, arguments); {placeholders} are filled in by the `places` fixture.
BAD_INPUTS: list[tuple[str, str, list[str]]] = [
    ("slac-train", "unknown option", ["--no-such-option"]),
    ("slac-train", "bad number", ["--task", "cartpole-swingup", "--seed", "abc"]),
    ("slac-train", "bad float", ["--task", "cartpole-swingup", "--lr-model", "abc"]),
    ("slac-train", "missing file", ["--config", "{missing}.toml"]),
    ("slac-train", "directory", ["--config", "{dir}"]),
    ("slac-train", "wrong file", ["--config", "{text}"]),
    ("slac-train", "missing run", ["--resume", "{missing}"]),
    ("slac-train", "unknown task", ["--task", "nope"]),
    ("slac-train", "no updates", ["--task", "cartpole-swingup", "--total-env-steps", "100"]),
    ("slac-export", "unknown option", ["--no-such-option"]),
    ("slac-export", "missing file", ["{missing}"]),
    ("slac-export", "directory", ["{dir}"]),
    ("slac-export", "not a checkpoint", ["{text}"]),
    ("slac-export", "not a policy", ["--inspect", "{text}"]),
    ("slac-export", "policy directory", ["--inspect", "{dir}"]),
    ("slac-sweep", "unknown option", ["--no-such-option", "--sweep-dir", "{tmp}/s"]),
    ("slac-sweep", "bad number", ["--tasks", "cartpole-balance", "--seeds", "x"]),
    ("slac-sweep", "bad --set", ["--tasks", "cartpole-balance", "--set", "lr_model=abc"]),
    ("slac-sweep", "bad float", ["--tasks", "cartpole-balance", "--lr-model", "abc"]),
    ("slac-sweep", "no updates", ["--tasks", "cartpole-balance", "--total-env-steps", "100"]),
    ("slac-sweep", "unknown task", ["--tasks", "nope"]),
    ("slac-sweep", "missing sweep", ["--sweep-dir", "{missing}"]),
    ("slac-sweep", "file as sweep dir", ["--tasks", "cartpole-balance", "--sweep-dir", "{text}"]),
    ("slac-imitate", "unknown option", ["--no-such-option"]),
    ("slac-imitate", "bad number", ["--episodes", "abc"]),
    ("slac-imitate", "missing file", ["--dataset", "{missing}.npz"]),
    ("slac-imitate", "directory", ["--dataset", "{dir}"]),
    ("slac-imitate", "not a dataset", ["--dataset", "{text}", "--run-dir", "{tmp}/imitate"]),
    ("slac-camera", "unknown option", ["--no-such-option"]),
    ("slac-camera", "bad number", ["--camera", "0", "--fps", "abc"]),
    ("slac-camera", "missing file", ["--camera", "{missing}.mp4"]),
    ("slac-camera", "directory", ["--camera", "{dir}"]),
    ("slac-camera", "not a video", ["--camera", "{text}"]),
    ("slac-camera", "missing calibration", ["--camera", "0", "--camera-calibration", "{missing}"]),
    ("slac-camera", "endpoint in use", ["--camera", "{video}", "--camera-bind", "{busy}"]),
    ("slac-run", "unknown option", ["--camera", ENDPOINT, "--no-such-option"]),
    ("slac-run", "bad number", ["--camera", ENDPOINT, "--episodes", "abc"]),
    ("slac-run", "missing camera", ["--episodes", "1"]),
    ("slac-run", "missing policy", ["--camera", ENDPOINT, "--policy", "{missing}.onnx"]),
    ("slac-run", "directory", ["--camera", ENDPOINT, "--policy", "{dir}"]),
    ("slac-run", "not a policy", ["--camera", ENDPOINT, "--policy", "{text}"]),
    (
        "slac-run",
        "missing calibration",
        ["--camera", ENDPOINT, "--joint-calibration", "{missing}", "--log-dir", "{tmp}/logs"],
    ),
    ("slac-replay", "unknown option", ["{text}", "--no-such-option"]),
    ("slac-replay", "missing file", ["{missing}.slaclog"]),
    ("slac-replay", "directory", ["{dir}"]),
    ("slac-replay", "not a log", ["{text}"]),
    ("slac-virtual-robot", "unknown option", ["--no-such-option"]),
    ("slac-virtual-robot", "unknown robot", ["--robot", "nope"]),
    ("slac-virtual-robot", "bad number", ["--fps", "abc"]),
    ("slac-virtual-robot", "bad offsets", ["--plant-offsets", "x=1"]),
    ("slac-virtual-robot", "port link taken", ["--port-link", "{text}"]),
    ("slac-virtual-robot", "file as folder", ["--port-link", "{text}/tty"]),
    (
        "slac-virtual-robot",
        "endpoint in use",
        ["--port-link", "{tmp}/virtual/tty", "--camera-bind", "{busy}", "--duration", "1"],
    ),
    ("slac-calibrate", "unknown option", ["--no-such-option"]),
    ("slac-calibrate", "no subcommand", []),
    ("slac-calibrate", "bad number", ["joints", "--port", "{missing}", "--range-speed", "x"]),
    ("slac-calibrate", "missing port", ["joints", "--port", "{missing}", "--yes"]),
    ("slac-calibrate", "directory", ["joints", "--port", "{dir}", "--yes"]),
    (
        "slac-calibrate",
        "missing video",
        ["camera", "--camera", "{missing}.mp4", "--joint-positions", "reset"],
    ),
    (
        "slac-calibrate",
        "missing calibration",
        ["camera", "--camera", "0", "--joint-positions", "reset", "--camera-calibration", "{dir}"],
    ),
]
# what a bad sweep needs besides (a fresh folder for each)
SWEEP_DIR = ["--sweep-dir", "{tmp}/sweep-{n}"]
GOOD_INPUTS: list[tuple[str, str, list[str]]] = [
    ("slac-export", "with --traceback", ["{text}", "--traceback"]),
    (
        "slac-train",
        "print config",
        ["--task", "cartpole-swingup", "--total-env-steps", "1e5", "--print-config"],
    ),
    ("slac-imitate", "print config", ["--episodes", "1e3", "--print-config"]),
    (
        "slac-sweep",
        "print config",
        ["--tasks", "cartpole-balance", "--total-env-steps", "1e5", "--print-config"],
    ),
]


def _command(script: str) -> str:
    return SCRIPTS.get(script) or OTHER_TOOLS[script]


def _run(module: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    env.setdefault("MUJOCO_GL", "egl")
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """The files, folders and endpoints the bad inputs name."""
    import cv2
    import numpy as np
    import zmq

    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "empty").mkdir()
    text = tmp / "notes.md"  # (ffmpeg plays a .txt file as a video of its text)
    text.write_text("not what the command wants\n" * 50)
    video = str(tmp / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 64))
    for _ in range(5):
        writer.write(np.zeros((64, 64, 3), np.uint8))
    writer.release()
    context = zmq.Context()
    holder = context.socket(zmq.PUB)
    holder.bind("tcp://127.0.0.1:*")
    yield {
        "tmp": str(tmp),
        "dir": str(tmp / "empty"),
        "text": str(text),
        "missing": str(tmp / "missing"),
        "video": video,
        "busy": holder.getsockopt_string(zmq.LAST_ENDPOINT),
    }
    holder.close(linger=0)
    context.term()


@pytest.fixture(scope="module")
def results(places):
    """Every case's completed process, run in parallel: (script, case) -> CompletedProcess."""
    cases = {}
    for n, (script, what, args) in enumerate(BAD_INPUTS + GOOD_INPUTS):
        if script == "slac-sweep" and "--sweep-dir" not in args:
            args = [*args, *SWEEP_DIR]
        cases[script, what] = [a.format(n=n, **places) for a in args]
    for script in [*SCRIPTS, *OTHER_TOOLS]:
        for flag in ("--help", "--version"):
            cases[script, flag] = [flag]
    cwd = Path(places["tmp"])
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            key: pool.submit(_run, _command(key[0]), args, cwd) for key, args in cases.items()
        }
        return {key: future.result() for key, future in futures.items()}


def test_every_console_script_is_tried_with_each_kind_of_bad_input():
    tried = {script: {what for s, what, _ in BAD_INPUTS if s == script} for script in SCRIPTS}
    assert all("unknown option" in kinds for kinds in tried.values()), tried
    assert set(tried) == {s for s, _, _ in BAD_INPUTS}
    for script, kinds in tried.items():
        assert len(kinds) >= 4, f"{script}: only {sorted(kinds)}"


@pytest.mark.parametrize(
    ("script", "what"),
    [(s, w) for s, w, _ in BAD_INPUTS],
    ids=[f"{s}-{w}" for s, w, _ in BAD_INPUTS],
)
def test_a_bad_input_is_one_line_and_exit_code_2(results, script, what):
    result = results[script, what]
    shown = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 2, shown
    assert "Traceback" not in result.stderr + result.stdout, shown
    assert "Exception ignored" not in result.stderr, shown
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, shown
    prog = script if script in SCRIPTS else script.split()[-1]
    assert lines[0].startswith(f"{prog}") and ": error: " in lines[0], shown


@pytest.mark.parametrize("script", [*SCRIPTS, *OTHER_TOOLS])
def test_every_command_has_help_with_exit_codes_and_a_version(results, script):
    shown = results[script, "--help"]
    assert shown.returncode == 0, shown.stderr
    for part in ("exit codes:", "  2 ", "--traceback", "--version"):
        assert part in shown.stdout, f"{script} --help lacks {part!r}:\n{shown.stdout}"
    version = results[script, "--version"]
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(r"\S.* \d+\.\d+\.\d+\S*", version.stdout.strip()), version.stdout


def test_print_config_prints_the_resolved_config_and_integers_may_be_1e5(results):
    train = results["slac-train", "print config"]
    assert train.returncode == 0, train.stderr
    config = json.loads(train.stdout)
    assert config["total_env_steps"] == 100_000 and config["action_repeat"] == 4  # the task's
    imitate = results["slac-imitate", "print config"]
    assert imitate.returncode == 0, imitate.stderr
    assert json.loads(imitate.stdout)["episodes"] == 1000
    sweep = results["slac-sweep", "print config"]
    assert sweep.returncode == 0, sweep.stderr
    printed = json.loads(sweep.stdout)
    assert printed["sweep"]["values"]["total_env_steps"] == 100_000
    assert printed["trials"]["cartpole-balance-s0"]["total_env_steps"] == 100_000
    assert not Path(printed["trials"]["cartpole-balance-s0"]["run_dir"]).parents[1].exists()


def test_traceback_adds_the_traceback_and_keeps_the_exit_code(results):
    shown = results["slac-export", "with --traceback"]
    assert shown.returncode == 2 and "Traceback (most recent call last)" in shown.stderr
    assert shown.stderr.strip().splitlines()[-1].startswith("slac-export: error: ")


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """``slac-export --inspect POLICY | head``: no 'Broken pipe', no traceback."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slac_train.export_cli",
            "--inspect",
            "robots/dclaw/policies/turn.onnx",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # the reader is gone before the command writes
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert err == "" and proc.returncode == 128 + 13  # SIGPIPE, as a shell reports it


def test_status_lines_through_a_pipe_are_plain_and_rate_limited():
    import io

    from slac_runtime.status_line import StatusLine

    now = [0.0]
    piped = io.StringIO()
    line = StatusLine(piped, every_s=10.0, clock=lambda: now[0])
    assert not line.interactive  # a StringIO is no terminal
    for k in range(100):  # 10 s of ticks at 0.1 s
        line.show(f"tick {k}")
        now[0] += 0.1
    line.end()
    line.message("episode 0: done")
    assert "\r" not in piped.getvalue()
    assert piped.getvalue().splitlines() == ["tick 0", "episode 0: done"]
    terminal = io.StringIO()
    live = StatusLine(terminal, interactive=True)
    live.show("a")
    live.show("b")
    live.message("done")
    assert terminal.getvalue() == "\ra\rb\ndone\n"


def test_the_sweep_writes_no_colours_into_a_log():
    from slac_train.sweep.cli import strip_colours

    record = logging.LogRecord(
        "ray",
        logging.INFO,
        "x",
        1,
        "View the dashboard at %s%s%s",
        ("\x1b[1m\x1b[32m", "h:8265", "\x1b[39m"),
        None,
    )
    assert strip_colours(record) and record.getMessage() == "View the dashboard at h:8265"


def test_the_virtual_robot_says_its_bus_counts_in_words():
    from robots.dclaw.virtual import describe_bus

    line = describe_bus(
        {"rx_crc_errors": 2, "torn_reads": 0},
        {"count": 1200, "p50_ms": 0.21, "p99_ms": 0.9, "max_ms": 1.5},
    )
    assert line == (
        "bus: 1,200 replies (reply latency p50 0.21 ms, p99 0.90 ms, max 1.50 ms); "
        "rx crc errors 2, torn reads 0"
    )
    assert "{" not in describe_bus({}, {"count": 0, "p50_ms": None})


def _parsers():
    """Every command's parser, by name."""
    from calibration.cli import build_parser as calibrate
    from robots.dclaw.virtual import build_parser as virtual
    from slac_runtime.camera import build_parser as camera
    from slac_runtime.options import command_parser
    from slac_runtime.replay_cli import EXIT_CODES as replay_codes
    from slac_runtime.replay_cli import ReplayConfig
    from slac_runtime.run_cli import EXIT_CODES as run_codes
    from slac_runtime.run_cli import RunConfig
    from slac_train.cli import build_parser as train
    from slac_train.demo import RolloutConfig
    from slac_train.export_cli import build_parser as export
    from slac_train.imitation.cli import build_parser as imitate
    from slac_train.pipeline_demo import DemoConfig
    from slac_train.sweep.cli import build_parser as sweep

    return {
        "slac-train": train(),
        "slac-export": export(),
        "slac-sweep": sweep(),
        "slac-imitate": imitate(),
        "slac-camera": camera(),
        "slac-run": command_parser("slac-run", RunConfig, "", exit_codes=run_codes),
        "slac-replay": command_parser("slac-replay", ReplayConfig, "", exit_codes=replay_codes),
        "slac-virtual-robot": virtual(),
        "slac-calibrate": calibrate(),
        "demo": command_parser("demo", RolloutConfig, ""),
        "pipeline demo": command_parser("pipeline demo", DemoConfig, ""),
    }


# Options of other programs that the source names: the teacher tables' builder, a Gymnasium
# script's ``--env-id``.
FOREIGN_OPTIONS = {"--output", "--phases", "--dynamics-draws", "--follow", "--mount-height-mm"}
FOREIGN_OPTIONS |= {"--env-id"}
# Source text that names an option in passing (``--option`` in a docstring about options).
NOT_OPTIONS = {"--option"}
# Older spellings, still accepted, that may be named where they are handled (a message about a
# ``--set`` the user typed); nowhere else.
OLD_SPELLINGS = {"--set": "slac_train/sweep/", "--env-steps": "slac_train/sweep/cli.py"}


def test_every_option_a_message_names_is_one_help_shows():
    """A hint names the option a user can find in ``--help``, never an old hidden spelling
    (``--calibration``, ``-o``, ``--env-steps``, ``--set``)."""
    visible = set().union(*(p.visible_options() for p in _parsers().values()))
    named: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            with tokenize.open(path) as f:
                for token in tokenize.generate_tokens(f.readline):
                    if token.type != tokenize.STRING and token.type != getattr(
                        tokenize, "FSTRING_MIDDLE", -1
                    ):
                        continue
                    for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]", token.string):
                        where = f"{path.relative_to(ROOT)}:{token.start[0]}"
                        if where.startswith(OLD_SPELLINGS.get(option, "-")):
                            continue
                        named.setdefault(option, []).append(where)
    unknown = {
        option: places
        for option, places in named.items()
        if option not in visible | FOREIGN_OPTIONS | NOT_OPTIONS
    }
    assert not unknown, f"options named in messages but not shown by any --help: {unknown}"
    for hidden in ("--calibration", "--env-steps", "--set", "--num-threads", "--bind"):
        assert hidden not in visible  # still accepted, no longer advertised


def test_egl_contexts_close_quietly_when_a_dclaw_and_a_dm_control_env_exit():
    code = (
        "from slac_train.envs import make_env\n"
        "a = make_env('dclaw-turn', seed=0); a.reset()\n"
        "b = make_env('cartpole-swingup', seed=0); b.reset()\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.setdefault("MUJOCO_GL", "egl")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Exception ignored" not in result.stderr and "EGLError" not in result.stderr, (
        result.stderr
    )
