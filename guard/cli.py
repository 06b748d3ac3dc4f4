"""The ``guard`` command: a thin dispatcher to each command's own module.

Commands are resolved lazily by module path so ``guard --help`` stays fast and the library never
imports the Kafka/Faust side (``streams``) unless a command that needs it is run.
"""

from __future__ import annotations

import importlib
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
    result = getattr(importlib.import_module(module), func)(args[1:])
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
