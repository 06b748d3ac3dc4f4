"""The ``guard`` command: a thin dispatcher to each command's own module.

Commands are resolved lazily by module path so ``guard --help`` stays fast and the library never
imports the Kafka/Faust side (``streams``) unless a command that needs it is run.
"""

from __future__ import annotations

import importlib
import os
import sys

#: command → (module, function taking argv, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "moderate": ("guard.moderate", "main", "stream a text through the pipeline in-process"),
    "eval": ("guard.evaluation", "main", "score a labeled JSONL file and write a metrics report"),
    "models": ("guard.models.cli", "main", "build (ONNX + Triton repository) or train the models"),
    "services": ("guard.devenv.services", "main", "run a local Kafka broker and Triton server"),
    "worker": ("streams.app", "main", "run a Faust worker (llm.chunks → guard.decisions)"),
    "demo": ("streams.demo", "main", "stream sample LLM answers through the running system"),
    "tuner": ("streams.tuner", "main", "run the feedback tuner (one instance): guard.feedback → guard.thresholds"),
    "feedback": ("streams.feedback_cli", "feedback_main", "send a verdict on a decision"),
    "thresholds": ("streams.feedback_cli", "thresholds_main", "show, pin or unpin thresholds"),
}


def _usage() -> str:
    lines = ["usage: guard COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    if args[0] not in COMMANDS:
        print(f"guard: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[args[0]]
    try:
        result = getattr(importlib.import_module(module), func)(args[1:])
    except Exception as exc:
        if os.environ.get(TRACEBACK_ENV) or not _is_user_error(exc):
            raise
        print(f"guard {args[0]}: {_describe(exc)} (set {TRACEBACK_ENV}=1 for the traceback)", file=sys.stderr)
        return 1
    return int(result or 0)


#: set to any value to see the full traceback of an error ``main`` would otherwise print in one line
TRACEBACK_ENV = "GUARD_TRACEBACK"


def _is_user_error(exc: BaseException) -> bool:
    """Errors that say what the user must fix (a path, a policy, a setting, an unreachable broker
    or server), not a bug: one line is what they need. Others keep their traceback."""
    from pydantic import ValidationError

    from guard.errors import GuardError

    kafka = type(exc).__module__.startswith(("aiokafka", "kafka."))
    return isinstance(exc, GuardError | OSError | ValidationError | TimeoutError) or kafka


def _env_prefix(model: str) -> str:
    """``GUARD_TUNER_`` for the tuner's settings, ``GUARD_`` for the rest."""
    return "GUARD_TUNER_" if model == "TunerSettings" else "GUARD_"


def _describe(exc: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):  # a setting: name the variable, with its model's prefix
        prefix = _env_prefix(exc.title)
        bad = "; ".join(f"{prefix}{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        return f"invalid setting: {bad}"
    return str(exc) or type(exc).__name__


if __name__ == "__main__":
    raise SystemExit(main())
