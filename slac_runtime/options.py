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
An integer may be typed as ``1e4``; a float must be a finite number.

Every command is built and run the same way: its parser (:class:`OneLineParser`,
:func:`command_parser`) gives ``--version``, ``--traceback`` and an ``exit codes:`` block at the
end of ``--help``, and :func:`run_command` runs its ``main``: any error is one line on stderr
(``--traceback`` adds the traceback), a usage error exits 2, a closed pipe ends it quietly. Exit
codes tell a script what happened (:class:`ExitCode`). This is plain argparse, so the robot-side
runtime needs no command-line library of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import enum
import math
import os
import re
import signal
import sys
import types
import typing
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
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
            value = parse_int(text) if self.kind is int else self.kind(text)
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


def parse_int(text: str) -> int:
    """An integer as a person types it: ``10000``, ``10_000``, ``1e4`` or ``1.0e4`` (a number
    written as a float is taken when it is a whole number); ValueError otherwise."""
    try:
        return int(text)
    except ValueError:
        value = float(text)  # ValueError for words
    if not value.is_integer():
        raise ValueError(f"not a whole number: {text!r}")
    return int(value)


integer = Check(int, lambda v: True, "an integer", "int")
"""Any integer (``1e4`` is 10000)."""

positive_float = Check(float, lambda v: v > 0, "a positive number of seconds", "positive_float")
"""A finite number above zero (times, ages, durations in seconds)."""

non_negative_float = Check(float, lambda v: v >= 0, "a number of at least 0", "non_negative_float")
finite_float = Check(float, lambda v: True, "a finite number", "finite_float")
"""Any finite number (the check of a float option that names none)."""


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


_DEFAULT_CHECKS: dict[Any, Check] = {int: integer, float: finite_float}
"""The check of an int or float option that names none: ``1e4`` is an integer, ``nan`` no number."""


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
    if isinstance(f.default, tuple):  # shown as typed: 9x6 for a WxH metavar, else a,b
        joiner = "x" if re.fullmatch(r"[A-Z]x[A-Z]", f.metadata.get("metavar") or "") else ","
        return f"{text} (default: {joiner.join(map(str, f.default))})"
    return f"{text} (default: {f.default})"


def add_options(
    parser: argparse.ArgumentParser,
    config_class: type,
    *,
    title: str | None = None,
    suppress_defaults: bool = False,
    exclude: Collection[str] = (),
) -> None:
    """An option (or argument) per field of ``config_class`` that has one.

    ``suppress_defaults``: fields the command line does not give are left out of the namespace
    (so that a resumed run can tell which values were typed); ``exclude``: fields left out.
    """
    target: Any = parser.add_argument_group(title) if title else parser
    groups: dict[str, Any] = {}
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        if not f.metadata.get("cli", True) or f.name in exclude:
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
            parse = meta.get("parse") or _DEFAULT_CHECKS.get(base, base)
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

SHARED_EXIT_CODES: dict[int, str] = {
    0: "done",
    1: "failed: an error stopped the command once it had started (--traceback shows where)",
    2: "refused: a usage error (an unknown option, a bad value, a missing, unreadable or wrong "
    "file); nothing was done",
    130: "interrupted by Ctrl-C; 143 by SIGTERM",
}
"""What every command's exit codes mean, unless its own ``exit_codes`` say more."""


def exit_codes_help(codes: Mapping[int, str] | None = None) -> str:
    """The ``exit codes:`` block at the end of every command's ``--help``: the command's own
    meanings (``codes``) over the shared ones (:data:`SHARED_EXIT_CODES`)."""
    import textwrap

    merged = {**SHARED_EXIT_CODES, **(codes or {})}
    lines = ["exit codes:"]
    for code, text in sorted(merged.items()):
        lines += textwrap.wrap(
            text, width=96, initial_indent=f"  {code:<5}", subsequent_indent=" " * 7
        )
    return "\n".join(lines)


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage block) with a pointer to
    ``--help``, that refuses abbreviated options and suggests the option meant by a misspelt one.

    Every command's parser (and subcommand's) also has ``--version``, ``--traceback`` (read by
    :func:`run_command`) and ends its ``--help`` with the exit codes (:func:`exit_codes_help`);
    ``shared_options=False`` leaves them out (a parser that forwards its other arguments).
    """

    def __init__(
        self,
        *args: Any,
        exit_codes: Mapping[int, str] | None = None,
        shared_options: bool = True,
        **kwargs: Any,
    ):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        if shared_options:
            codes = exit_codes_help(exit_codes)
            epilog = kwargs.get("epilog")
            kwargs["epilog"] = f"{epilog}\n\n{codes}" if epilog else codes
        super().__init__(*args, **kwargs)
        if shared_options:
            from slac_runtime import __version__

            self.add_argument(
                "--version",
                action="version",
                version=f"%(prog)s {__version__}",
                help="print the version and exit",
            )
            self.add_argument(
                "--traceback",
                action="store_true",
                default=argparse.SUPPRESS,
                help="on an error, also print its full traceback (for a bug report)",
            )

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

    def visible_options(self) -> set[str]:
        """Every option string ``--help`` shows, of this parser and its subcommands."""
        visible: set[str] = set()
        for action in self._actions:
            if action.help is not argparse.SUPPRESS:
                visible.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    if isinstance(sub, OneLineParser):
                        visible |= sub.visible_options()
        return visible

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
        message = one_line(message)
        self.exit(
            int(ExitCode.REFUSED), f"{self.prog}: error: {message} (see {self.prog} --help)\n"
        )


def command_parser(
    prog: str,
    config_class: type | None,
    description: str,
    epilog: str | None = None,
    *,
    exit_codes: Mapping[int, str] | None = None,
) -> OneLineParser:
    """A command's parser: its config's options, one-line errors, no abbreviations, ``--version``,
    ``--traceback`` and the exit codes (``exit_codes`` over :data:`SHARED_EXIT_CODES`)."""
    parser = OneLineParser(prog=prog, description=description, epilog=epilog, exit_codes=exit_codes)
    if config_class is not None:
        add_options(parser, config_class)
    return parser


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (``--print-config``); paths and tuples as JSON knows
    them."""
    import json

    print(json.dumps(value, indent=2, sort_keys=True, default=str))


# ---- running a command ---------------------------------------------------------------------------


class CommandError(Exception):
    """An outcome a command reports as one line, ``prog: kind: message``, with its exit code (a
    safe stop, a fault with what became of the robot). Raise it ``from`` the error behind it:
    ``--traceback`` prints that one's traceback too."""

    def __init__(self, message: str, exit_code: int = ExitCode.FAULT, kind: str = "error"):
        super().__init__(message)
        self.exit_code = int(exit_code)
        self.kind = kind


def wants_traceback(argv: Sequence[str]) -> bool:
    """True when the command line asks for tracebacks (``--traceback`` before any ``--``)."""
    words = list(argv)
    return "--traceback" in (words[: words.index("--")] if "--" in words else words)


def run_command(
    prog: str, body: Callable[[list[str]], int], argv: Sequence[str] | None = None
) -> int:
    """Run a command's ``body(argv)`` as every command runs; its exit code.

    * An error is one line on stderr, ``prog: error: ...``: a :class:`UsageError` exits 2
      (refused), a :class:`CommandError` with its own code and kind, anything else 1 (with its
      type, and a pointer to ``--traceback``). ``--traceback`` prints the traceback first; the exit
      code stays the same.
    * Ctrl-C that reaches here exits 130 with one line; usage errors of the parser exit 2 as
      ``SystemExit`` (``--help`` and ``--version`` exit 0).
    * A reader that goes away (``slac-export --inspect P | head``) ends the command quietly, with
      128 + SIGPIPE as a shell reports a process that SIGPIPE stopped.
    """
    words = list(sys.argv[1:] if argv is None else argv)
    show_traceback = wants_traceback(words)
    try:
        code = int(body(words))
        sys.stdout.flush()  # a closed pipe shows here, not during the interpreter's exit
        return code
    except BrokenPipeError:
        if not _stdout_closed():
            return _report(prog, sys.exc_info()[1], show_traceback)
        return ExitCode.for_signal(signal.SIGPIPE)
    except KeyboardInterrupt:
        if show_traceback:
            import traceback

            traceback.print_exc()
        say(prog, "interrupted", "Ctrl-C")
        return ExitCode.for_signal(signal.SIGINT)
    except Exception as error:
        return _report(prog, error, show_traceback)


def _report(prog: str, error: BaseException | None, show_traceback: bool) -> int:
    """Say ``error`` in one line (after its traceback, if asked); its exit code."""
    assert error is not None
    if show_traceback:
        import traceback

        traceback.print_exception(error)
    if isinstance(error, CommandError):
        say(prog, error.kind, error_message(error))
        return error.exit_code
    if isinstance(error, UsageError):
        say(prog, "error", error_message(error))
        return int(ExitCode.REFUSED)
    hint = "" if show_traceback else " (--traceback shows where)"
    say(prog, "error", f"{type(error).__name__}: {error_message(error)}{hint}")
    return int(ExitCode.FAULT)


def _stdout_closed() -> bool:
    """True when stdout is a pipe whose reader has gone; stdout then writes to /dev/null, so
    that the interpreter's last flush is quiet."""
    import select

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a stdout without a file (a test's capture)
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    if not any(events & select.POLLERR for _, events in poller.poll(0)):
        return False  # the broken pipe was another one (a socket, a child's stdin)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    return True


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


def comma_integers(text: str, looks_like: str) -> tuple[int, ...]:
    """``"1, -1,1"`` -> ``(1, -1, 1)``; otherwise an ArgumentTypeError ``"<looks_like>, got
    <text>"`` (``looks_like``: what the option's value must look like)."""
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{looks_like}, got {text!r}") from None


def one_line(text: str) -> str:
    """``text``'s first non-empty line (with `` ...`` when more followed): a message that must
    stay on one line."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[0] + (" ..." if len(lines) > 1 else "")


def say(prog: str, kind: str, message: object) -> None:
    """One line on stderr: ``prog: kind: message`` (only the message's first line)."""
    print(f"{prog}: {kind}: {one_line(str(message))}", file=sys.stderr, flush=True)


def error_message(error: BaseException) -> str:
    """An exception as the sentence a user reads (a KeyError's key without its quotes)."""
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error) or type(error).__name__


__all__ = [
    "SHARED_EXIT_CODES",
    "Check",
    "CommandError",
    "ExitCode",
    "OneLineParser",
    "UsageError",
    "add_options",
    "available_cores",
    "check_options",
    "command_parser",
    "config_from_args",
    "error_message",
    "exit_codes_help",
    "finite_float",
    "flag_of",
    "float_in",
    "int_at_least",
    "int_in",
    "integer",
    "non_negative_float",
    "one_line",
    "option",
    "parse_config",
    "parse_int",
    "positive_float",
    "print_json",
    "run_command",
    "say",
    "signal_handlers",
    "signals_interrupt",
    "thread_count",
    "wants_traceback",
]
