"""``slac-export``: a run's encoder + actor as one self-describing ONNX policy.

slac-export runs/dclaw-turn-20261122-s0                 # -> runs/.../policy.onnx
slac-export runs/.../checkpoints/ckpt-100000.pt --out turn.onnx
slac-export --inspect turn.onnx                          # metadata and signature as a table
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slac_runtime import __version__
from slac_runtime.options import (
    ExitCode,
    OneLineParser,
    UsageError,
    command_parser,
    error_message,
    option,
    parse_config,
    run_command,
    say,
)
from slac_runtime.policy_metadata import PolicyMetadata, file_sha256


class ExportError(RuntimeError):
    """A problem the user can fix; printed as one line."""


def policy_metadata(checkpoint: dict[str, Any], checkpoint_path: Path) -> PolicyMetadata:
    """The policy's metadata from a loaded checkpoint (task, robot, rates, provenance)."""
    from slac_runtime.robot import find_robot
    from slac_train.config import TrainConfig
    from slac_train.envs import get_task_spec, make_env

    config = TrainConfig.from_dict(checkpoint["config"])
    spec = get_task_spec(config.task)
    env = make_env(
        config.task, seed=0, action_repeat=config.action_repeat, image_size=config.image_size
    )
    try:
        control_period_s, action_repeat = env.control_period_s, env.action_repeat
        action_dim = int(env.action_space.shape[0])
    finally:
        env.close()
    robot = getattr(spec, "robot", None)
    description = find_robot(robot).description if robot else None
    counters = checkpoint.get("counters", {})
    return PolicyMetadata(
        task=config.task,
        robot=robot,
        image_height=config.image_size,
        image_width=config.image_size,
        channel_order="RGB",
        history_length=8,
        action_dim=action_dim,
        feature_dim=config.feature_dim,
        joint_names=description.joint_names if description else (),
        joint_ranges=description.joint_ranges if description else (),
        velocity_limit=description.velocity_limit if description else None,
        control_period_s=float(control_period_s),
        action_repeat=int(action_repeat),
        training_agent_steps=int(counters.get("agent_steps", 0)),
        training_env_steps=int(counters.get("env_steps", 0)),
        checkpoint_sha256=file_sha256(checkpoint_path),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        package_version=__version__,
        episode_policy_steps=config.max_episode_agent_steps or spec.episode_agent_steps,
    )


UPDATE_COUNTERS = ("updates", "pretrain_updates", "bc_updates")  # slac-train's, slac-imitate's


def untrained_warning(checkpoint: dict[str, Any], checkpoint_path: Path) -> str | None:
    """A sentence when the checkpoint's networks were never updated (their initial random
    weights), else None. Checkpoints that do not count updates get None."""
    counters = checkpoint.get("counters", {})
    counts = [int(counters[k]) for k in UPDATE_COUNTERS if k in counters]
    if not counts or sum(counts) > 0:
        return None
    return (
        f"{checkpoint_path} was written after 0 updates: the policy is the networks' random "
        "initial weights and will not do the task (train longer than the initial random "
        "collection)"
    )


def training_provenance(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """How a checkpoint's policy was trained, for the exported file: the command, and for
    slac-train the demonstrations (files and SHA-256), the starting policy and the randomisation;
    for slac-imitate the teacher and its episodes."""
    config = checkpoint.get("config", {})
    imitation = checkpoint.get("imitation")
    if imitation is not None:
        return {
            "command": "slac-imitate",
            "teacher": imitation.get("teacher"),
            "episodes": imitation.get("episodes"),
            "dataset": imitation.get("dataset"),
            "dagger_rounds": imitation.get("dagger_rounds"),
        }
    return {
        "command": "slac-train",
        "demos": checkpoint.get("demos"),
        "demo_ratio": config.get("demo_ratio") if config.get("demos") else None,
        "init_policy": config.get("init_policy"),
        "residual_scale": config.get("residual_scale") if config.get("residual_actor") else None,
        "randomization": config.get("randomization", "task"),
    }


def export_run(source: str | Path, output: str | Path | None = None) -> tuple[Path, PolicyMetadata]:
    """Export the newest checkpoint of a run directory (or a checkpoint file) to ONNX."""
    source = Path(source)
    if not source.exists():
        raise ExportError(
            f"{source} does not exist: pass a run directory (runs/…) or a checkpoint file"
        )
    from slac_train.checkpoint import latest_checkpoint, load_agent
    from slac_train.export import export_onnx

    try:
        checkpoint_path = latest_checkpoint(source)
    except FileNotFoundError as e:
        raise ExportError(str(e)) from None
    try:
        agent, state = load_agent(checkpoint_path, device="cpu")
    except KeyError as e:
        raise ExportError(
            f"{checkpoint_path} lacks {e} (is it a slac-train checkpoint with its config?)"
        ) from None
    except ValueError as e:  # not a checkpoint, or one of another format
        raise ExportError(str(e)) from None
    except Exception as e:  # torch.load raises many types for corrupt files
        raise ExportError(
            f"{checkpoint_path} could not be read as a slac-train checkpoint: {e}"
        ) from None
    metadata = policy_metadata(state, checkpoint_path)
    warning = untrained_warning(state, checkpoint_path)
    if warning:
        say("slac-export", "warning", warning)
    if output is None:
        run_dir = source if source.is_dir() else checkpoint_path.parent.parent
        output = run_dir / "policy.onnx"
    output = Path(output)
    try:
        export_onnx(
            agent.encoder, agent.actor, metadata, output, provenance=training_provenance(state)
        )
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        raise ExportError(f"cannot write {output}: {e}") from None
    return output, metadata


def inspect(path: str | Path) -> str:
    """The policy's metadata and input/output signature, as a table."""
    from slac_runtime.policy import load_session

    session, metadata = load_session(path)  # refuses what is not a policy before torch loads
    from slac_train.export import PROVENANCE_PROP

    rows = [(k, str(v)) for k, v in asdict(metadata).items()]
    training = session.get_modelmeta().custom_metadata_map.get(PROVENANCE_PROP)
    if training is not None:
        rows.append((PROVENANCE_PROP, training))
    rows.append(("", ""))
    for kind, items in (("input", session.get_inputs()), ("output", session.get_outputs())):
        for item in items:
            rows.append((f"{kind} {item.name}", f"{item.type} {item.shape}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@dataclass
class ExportConfig:
    """``slac-export``'s options."""

    source: str | None = option(None, "run directory or checkpoint file", positional=True)
    out: Path | None = option(
        None, "ONNX file to write (default: RUN_DIR/policy.onnx)", aliases=["-o", "output"]
    )
    inspect: Path | None = option(
        None, "show a policy's metadata and signature instead", metavar="POLICY"
    )


def build_parser() -> OneLineParser:
    return command_parser(
        "slac-export",
        ExportConfig,
        __doc__.splitlines()[0],
        exit_codes={
            0: "exported (or inspected)",
            2: "refused (a missing or unreadable run, checkpoint or policy, an unwritable output)",
        },
    )


def main(argv: list[str] | None = None) -> int:
    return run_command("slac-export", _main, argv)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parse_config(parser, ExportConfig, argv)
    logging.getLogger("torch").setLevel(logging.ERROR)
    try:
        if args.inspect is not None:
            print(inspect(args.inspect))
            return ExitCode.OK
        if not args.source:
            parser.error("give a run directory or checkpoint to export, or --inspect POLICY")
        path, metadata = export_run(args.source, args.out)
        print(
            f"exported {metadata.task} policy ({metadata.training_env_steps} env steps) to {path}"
        )
        return ExitCode.OK
    except BrokenPipeError:
        raise  # the reader of stdout went away (slac-export --inspect P | head): not an error
    except Exception as e:
        raise UsageError(error_message(e)) from e


if __name__ == "__main__":
    sys.exit(main())
