import os

# Tests render offscreen; EGL works on the CI machine. The toolkit itself never sets this at import:
# make_env() probes a backend when MUJOCO_GL is unset, which tests/test_rendering.py covers.
os.environ.setdefault("MUJOCO_GL", "egl")


import pytest  # noqa: E402

from tests.train_configs import tiny_train_values  # noqa: E402


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks run fastest on one thread, and a shared 2-core machine stays responsive."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:  # tests that never import torch stay torch-free
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def cli_flags(**values) -> list[str]:
    """Config values as command-line options: ``key=value`` -> ``--key value``; a boolean ->
    ``--key`` or ``--no-key``; a list or tuple -> ``--key v1 v2 ...``."""
    out = []
    for key, value in values.items():
        name = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            out.append(name if value else "--no-" + name[2:])
        elif isinstance(value, (list, tuple)):
            out += [name, *map(str, value)]
        else:
            out += [name, str(value)]
    return out


def short_run_flags(
    episode_steps: int, total_env_steps: int, eval_every_env_steps: int
) -> list[str]:
    """slac-train options of a short run: episodes of ``episode_steps`` agent steps, the first of
    them random collection."""
    return cli_flags(
        max_episode_agent_steps=episode_steps,
        initial_collection_steps=episode_steps,
        total_env_steps=total_env_steps,
        eval_every_env_steps=eval_every_env_steps,
    )


TINY_TRAIN_ARGS = cli_flags(**tiny_train_values(eval_video=False, reconstruction_video=False))


def train_tiny(run_dir, task: str = "dclaw-turn", seed: int = 0, env_steps: int = 60):
    """A few updates of tiny networks: a real checkpoint in seconds."""
    from slac_train.cli import main

    flags = short_run_flags(
        episode_steps=10, total_env_steps=env_steps, eval_every_env_steps=env_steps
    )
    code = main(["--task", task, *TINY_TRAIN_ARGS, *flags, *cli_flags(seed=seed, run_dir=run_dir)])
    assert code == 0
    return run_dir


@pytest.fixture(scope="session")
def tiny_dclaw_run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("tiny-dclaw") / "run")


@pytest.fixture(scope="session")
def tiny_dclaw_policy(tiny_dclaw_run):
    from slac_train.export_cli import export_run

    path, _ = export_run(tiny_dclaw_run)
    return path
