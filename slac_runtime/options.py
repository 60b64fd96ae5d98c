"""Command-line plumbing shared by every command: typed configs, option checks, one-line errors,
exit codes.

Each command's options are one dataclass whose fields carry their help, default and checks
(:func:`option`); :func:`add_options` turns it into argparse options and :func:`parse_config`
parses a command line into it. Option names are the field names with dashes
(``episode_steps`` -> ``--episode-steps``) unless a field names its own ``flag``; old spellings
stay as hidden ``aliases``. Abbreviations are refused, and an unknown option gets a suggestion.

Every number a user types is checked where it enters, and a bad one is reported in one line that
names the option, what it got and what it needs::

    slac-run: error: argument --episodes: must be an integer of at least 1, got '0'

The same checks run when a config is built in code (:func:`check_options`, from ``__post_init__``).
Exit codes tell a script what happened (:class:`ExitCode`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import enum
import math
import os
import signal
import sys
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar


class ExitCode(enum.IntEnum):
    """What a command's exit status means."""

    OK = 0  # done: every episode ran to its end
    FAULT = 1  # stopped by an error of the robot, its bus or the software: the robot was made safe
    REFUSED = (
        2  # refused before anything moved: fix the command line, the policy or the robot set-up
    )
    SAFE_STOP = (
        3  # a watchdog stopped the robot (stale camera, tracking error, bad frames, overruns)
    )
    # Stopped by a signal: 128 + its number (130 for Ctrl-C, 143 for SIGTERM), as shells report it.

    @staticmethod
    def for_signal(signum: int) -> int:
        return 128 + int(signum)


class UsageError(RuntimeError):
    """A problem the user can fix before anything moves; printed as one line, exit code 2."""


# ---- checked values ------------------------------------------------------------------------------


class Check:
    """An option's type and range: called with the text of a command line (argparse's ``type``),
    or :meth:`validate` with a value set in code. Both raise with the same sentence."""

    def __init__(
        self,
        kind: type,
        ok: Callable[[Any], bool],
        need: str | Callable[[], str],
        name: str | None = None,
    ):
        self.kind = kind
        self._ok = ok
        self._need = need
        self.__name__ = name or kind.__name__  # argparse names the type in some messages

    @property
    def need(self) -> str:
        return self._need() if callable(self._need) else self._need

    def _problem(self, value: Any, shown: str) -> str | None:
        if self.kind is float and not math.isfinite(value):
            return f"must be a finite number, got {shown}"
        if not self._ok(value):
            return f"must be {self.need}, got {shown}"
        return None

    def __call__(self, text: str) -> Any:
        try:
            value = self.kind(text)
        except ValueError:
            what = "an integer" if self.kind is int else "a number"
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        problem = self._problem(value, repr(text))
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    def validate(self, value: Any) -> str | None:
        """The problem with ``value`` (a sentence), or None."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be {self.need}, got {value!r}"
        if self.kind is int and not float(value).is_integer():
            return f"must be an integer, got {value!r}"
        return self._problem(value, repr(value))


positive_float = Check(float, lambda v: v > 0, "a positive number of seconds", "positive_float")
"""A finite number above zero (times, ages, durations in seconds)."""

non_negative_float = Check(float, lambda v: v >= 0, "a number of at least 0", "non_negative_float")
finite_float = Check(float, lambda v: True, "a finite number", "finite_float")


def int_at_least(low: int) -> Check:
    """An integer of at least ``low``."""
    return Check(int, lambda v: v >= low, f"an integer of at least {low}", f"integer >= {low}")


def float_in(low: float, high: float, what: str = "a number") -> Check:
    """A finite number in ``[low, high]``."""
    return Check(float, lambda v: low <= v <= high, f"{what} from {low:g} to {high:g}", "float")


def int_in(low: int, high: int, what: str = "an integer") -> Check:
    """An integer in ``[low, high]``."""
    return Check(int, lambda v: low <= v <= high, f"{what} from {low} to {high}", "int")


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


thread_count = Check(
    int,
    lambda v: 1 <= v <= available_cores(),
    lambda: f"an integer from 1 to {available_cores()} (this computer's cores)",
    "thread_count",
)
"""1 .. the cores this process may use: more threads than cores starve the servo bus and camera."""


# ---- configs as options --------------------------------------------------------------------------


def option(
    default: Any = None,
    help: str = "",
    *,  # noqa: A002 - argparse's word
    flag: str | None = None,
    aliases: Sequence[str] = (),
    parse: Callable[[str], Any] | None = None,
    choices: Sequence[Any] | None = None,
    metavar: str | None = None,
    required: bool = False,
    positional: bool = False,
    exclusive: str | None = None,
    cli: bool = True,
) -> Any:
    """A config field that is also a command-line option.

    ``flag``: the option's name without dashes (default: the field's, ``_`` -> ``-``); ``aliases``:
    old names (without dashes) or short options (``-o``) accepted but not shown; ``parse``: the
    text -> value function (a :class:`Check` also validates values set in code); ``required``: the
    command line must give it; ``positional``: an argument, not an option; ``exclusive``: fields
    sharing this name cannot be given together; ``cli=False``: a config value with no option.
    """
    metadata = {
        "help": help,
        "flag": flag,
        "aliases": tuple(aliases),
        "parse": parse,
        "choices": choices,
        "metavar": metavar,
        "required": required,
        "positional": positional,
        "exclusive": exclusive,
        "cli": cli,
    }
    return dataclasses.field(default=default, metadata=metadata)


def flag_of(f: dataclasses.Field) -> str:
    """The option a config field is set by (``--episode-steps``, or the argument's name)."""
    name = f.metadata.get("flag") or f.name.replace("_", "-")
    return name if f.metadata.get("positional") else "--" + name


def _field_type(annotation: Any) -> tuple[Any, bool]:
    """``(base type, optional)`` of a field's annotation (``int | None`` -> ``(int, True)``)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(annotation))
    return annotation, False


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse``, where ``none`` or ``default`` means None (the field's automatic choice)."""

    def parse_optional(text: str) -> Any:
        return None if text.lower() in ("none", "default", "") else parse(text)

    parse_optional.__name__ = getattr(parse, "__name__", "value")
    return parse_optional


def _metavar(name: str, base: Any) -> str:
    if base is Path:
        return "DIR" if name.endswith("dir") else "FILE"
    return base.__name__.upper()


def _help(f: dataclasses.Field, base: Any) -> str:
    text = f.metadata.get("help", "")
    if f.default is dataclasses.MISSING or f.metadata.get("required"):
        return text
    if f.default is None or (base is bool and f.default is False):
        return text
    return f"{text} (default: {f.default})"


def add_options(
    parser: argparse.ArgumentParser,
    config_class: type,
    *,
    title: str | None = None,
    suppress_defaults: bool = False,
) -> None:
    """An option (or argument) per field of ``config_class`` that has one.

    ``suppress_defaults``: fields the command line does not give are left out of the namespace
    (so that a resumed run can tell which values were typed).
    """
    target: Any = parser.add_argument_group(title) if title else parser
    groups: dict[str, Any] = {}
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        if not f.metadata.get("cli", True):
            continue
        base, optional = _field_type(hints[f.name])
        meta = f.metadata
        default = argparse.SUPPRESS if suppress_defaults else f.default
        where = target
        if meta.get("exclusive"):
            if meta["exclusive"] not in groups:
                groups[meta["exclusive"]] = target.add_mutually_exclusive_group()
            where = groups[meta["exclusive"]]
        kwargs: dict[str, Any] = {"help": _help(f, base)}
        if base is bool:
            action = argparse.BooleanOptionalAction if f.default is True else "store_true"
            kwargs.update(action=action, default=default)
        else:
            parse = meta.get("parse") or base
            kwargs.update(
                type=_optional(parse) if optional and meta.get("parse") is None else parse,
                default=default,
                choices=meta.get("choices"),
            )
            if meta.get("metavar") or base in (int, float, Path):
                kwargs["metavar"] = meta.get("metavar") or _metavar(f.name, base)
        if meta.get("positional"):
            if not meta.get("required"):
                kwargs["nargs"] = "?"
            where.add_argument(f.name, **kwargs)
            continue
        where.add_argument(flag_of(f), dest=f.name, required=bool(meta.get("required")), **kwargs)
        for alias in meta.get("aliases", ()):
            hidden = dict(kwargs, help=argparse.SUPPRESS, default=argparse.SUPPRESS)
            parser.add_argument(
                alias if alias.startswith("-") else "--" + alias, dest=f.name, **hidden
            )


C = TypeVar("C")


def config_from_args(config_class: type[C], args: argparse.Namespace, **extra: Any) -> C:
    """``config_class`` built from the fields ``args`` holds (plus ``extra``)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values.update(extra)
    return config_class(**values)


def check_options(config: Any) -> None:
    """Check every field whose ``parse`` is a :class:`Check` (for ``__post_init__``); ValueError
    in the command line's words (``argument --threads: must be ...``)."""
    for f in dataclasses.fields(config):
        parse = f.metadata.get("parse")
        value = getattr(config, f.name)
        if isinstance(parse, Check) and value is not None:
            problem = parse.validate(value)
            if problem:
                raise ValueError(f"argument {flag_of(f)}: {problem}")


def parse_config(
    parser: argparse.ArgumentParser, config_class: type[C], argv: Sequence[str] | None = None
) -> C:
    """Parse ``argv`` into ``config_class``; a value the config
    refuses is a one-line usage error."""
    args = parser.parse_args(argv)
    try:
        return config_from_args(config_class, args)
    except (ValueError, UsageError) as e:
        parser.error(str(e))


# ---- the parser ----------------------------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage block) with a pointer to
    ``--help``, that refuses abbreviated options and suggests the option meant by a misspelt one."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def _known_options(self) -> dict[str, str]:
        """Every ``--option`` this parser (and its subcommands) knows -> the name it is shown as."""
        shown = {
            a.dest: a.option_strings[0]
            for a in self._actions
            if a.option_strings and a.help is not argparse.SUPPRESS
        }
        known: dict[str, str] = {}
        for action in self._actions:
            for name in action.option_strings:
                if name.startswith("--"):
                    known[name] = shown.get(action.dest, name)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    if isinstance(sub, OneLineParser):
                        known.update(
                            {k: v for k, v in sub._known_options().items() if k not in known}
                        )
        return known

    def suggestion(self, unknown: str) -> str | None:
        """The option a misspelt ``--option`` most likely meant, or None."""
        known = self._known_options()
        close = difflib.get_close_matches(unknown.split("=", 1)[0], list(known), n=1, cutoff=0.6)
        return known[close[0]] if close else None

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments: "):
            words = message.split(": ", 1)[1].split()
            meant = [(w, self.suggestion(w)) for w in words if w.startswith("--")]
            hints = [(w.split("=", 1)[0], s) for w, s in meant if s]
            if len(hints) == 1:
                message += f"; did you mean {hints[0][1]}?"
            elif hints:
                message += "; did you mean " + ", ".join(f"{s} (for {w})" for w, s in hints) + "?"
        self.exit(
            int(ExitCode.REFUSED), f"{self.prog}: error: {message} (see {self.prog} --help)\n"
        )


def command_parser(
    prog: str, config_class: type, description: str, epilog: str | None = None
) -> OneLineParser:
    """A command's parser: its config's options, one-line errors, no abbreviations."""
    parser = OneLineParser(prog=prog, description=description, epilog=epilog)
    add_options(parser, config_class)
    return parser


@contextlib.contextmanager
def signal_handlers(signals: Sequence[int], handler: Callable[[int, Any], None]) -> Iterator[None]:
    """``handler`` handles ``signals`` in the block; their previous handlers come back after it."""
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


@contextlib.contextmanager
def signals_interrupt(
    received: list[int], signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
) -> Iterator[None]:
    """In the block, ``signals`` raise KeyboardInterrupt as Ctrl-C does (SIGTERM from Slurm,
    ``docker stop``, systemd or ``timeout``); each signal is appended to ``received``."""

    def handler(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    with signal_handlers(signals, handler):
        yield


def say(prog: str, kind: str, message: object) -> None:
    """One line on stderr: ``prog: kind: message``."""
    print(f"{prog}: {kind}: {message}", file=sys.stderr, flush=True)


def error_message(error: BaseException) -> str:
    """An exception as the sentence a user reads (a KeyError's key without its quotes)."""
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error) or type(error).__name__


__all__ = [
    "Check",
    "ExitCode",
    "OneLineParser",
    "UsageError",
    "add_options",
    "available_cores",
    "check_options",
    "command_parser",
    "config_from_args",
    "error_message",
    "finite_float",
    "flag_of",
    "float_in",
    "int_at_least",
    "int_in",
    "non_negative_float",
    "option",
    "parse_config",
    "positive_float",
    "say",
    "signal_handlers",
    "signals_interrupt",
    "thread_count",
]
