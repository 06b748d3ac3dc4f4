"""Read and validate policy files; keep the set current without a restart.

Policies live as ``policies/<name>.yaml``. An optional ``policies/tenants.yaml`` maps tenants to
policy names (``tenants: {kids-app: strict}``). A chunk picks its policy by its own ``policy`` field,
else by its tenant, else ``default``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog
import yaml
from pydantic import ValidationError

from guard.errors import PolicyError
from guard.policy.schema import PolicySpec

log = structlog.get_logger(__name__)

DEFAULT_POLICY = "default"
TENANTS_FILE = "tenants.yaml"


def _format(path: Path, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{path}: {where}: {err['msg']}")
    return "; ".join(parts)


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load`` keeps the last of two equal keys without a word: a second
    ``on_detector_error: open`` would turn a fail-closed policy open. Here a repeat is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:  # type: ignore[override]
        # Keys written in this mapping only: a merge key (``<<: *defaults``) brings keys that an
        # explicit one may override, which is what merging is for.
        seen: set[object] = set()
        merges = 0
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merges += 1
                if merges > 1:  # the later would silently win, as a repeated key does
                    raise yaml.constructor.ConstructorError(
                        None, None, "merge key '<<' appears twice", key_node.start_mark)
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, str | int | float | bool) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path, what: str) -> object:
    """A YAML file's content; any way it cannot be read (missing, not UTF-8, bad YAML, a key twice)
    is a ``PolicyError`` naming the file, which a reload logs while keeping what is in force."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: cannot read {what}: {exc}") from None


def load_policy(path: str | Path) -> PolicySpec:
    """Load one policy file; errors name the file and the field."""
    path = Path(path)
    data = read_yaml(path, "policy")
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: a policy file must be a mapping")
    try:
        spec = PolicySpec.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_format(path, exc)) from None
    if spec.policy != path.stem:
        raise PolicyError(f"{path}: policy: name {spec.policy!r} must match the file name {path.stem!r}")
    return spec


@dataclass(frozen=True)
class PolicySet:
    """An immutable snapshot of all policies and the tenant map."""

    policies: Mapping[str, PolicySpec]
    tenants: Mapping[str, str] = field(default_factory=dict)

    def select(self, policy: str | None = None, tenant: str | None = None) -> PolicySpec:
        """The policy a chunk asks for; unknown names are an error the caller dead-letters."""
        name = policy or (self.tenants.get(tenant, DEFAULT_POLICY) if tenant else DEFAULT_POLICY)
        try:
            return self.policies[name]
        except KeyError:
            raise PolicyError(f"unknown policy {name!r}; known: {sorted(self.policies)}") from None

    @classmethod
    def load(cls, directory: str | Path) -> PolicySet:
        directory = Path(directory)
        files = sorted(p for p in _files(directory, "*.yaml") if p.name != TENANTS_FILE)
        if not files:
            raise PolicyError(f"{directory}: no policy files (*.yaml)")
        policies = {p.stem: load_policy(p) for p in files}
        if DEFAULT_POLICY not in policies:
            raise PolicyError(f"{directory}: a '{DEFAULT_POLICY}.yaml' policy is required")
        tenants: dict[str, str] = {}
        tpath = directory / TENANTS_FILE
        if tpath.exists():
            raw = read_yaml(tpath, "the tenant map") or {}
            if not isinstance(raw, dict) or set(raw) - {"tenants"}:
                raise PolicyError(f"{tpath}: expected a mapping with the single key 'tenants'")
            entries = raw.get("tenants") or {}
            if not isinstance(entries, dict):
                raise PolicyError(f"{tpath}: tenants: expected a mapping of tenant to policy")
            # YAML reads an unquoted no/yes/on/off as a boolean and 0042 as a number: str() of
            # those is another tenant's name, so every key and value must already be a string
            odd = sorted(repr(x) for kv in entries.items() for x in kv if not isinstance(x, str))
            if odd:
                raise PolicyError(f"{tpath}: tenants: {', '.join(odd)} not read as text; quote tenant "
                                  "ids and policy names (\"no\", \"0042\")")
            tenants = dict(entries)
            missing = sorted(set(tenants.values()) - set(policies))
            if missing:
                raise PolicyError(f"{tpath}: tenants: unknown policies {missing}")
        return cls(policies=policies, tenants=tenants)


class PolicyStore:
    """Holds the current ``PolicySet`` and swaps in a new one when the files change.

    A reload that fails validation keeps the previous set (and logs why), so a bad edit never takes
    a running worker down or leaves it without a policy.
    """

    def __init__(self, directory: str | Path) -> None:
        self._dir = Path(directory)
        self._stamp: tuple[tuple[str, int], ...] = ()
        self._current: PolicySet | None = None

    def _fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        return files_stamp(self._dir, "*.yaml")

    @property
    def current(self) -> PolicySet:
        if self._current is None:
            self._current = PolicySet.load(self._dir)
            self._stamp = self._fingerprint()
        return self._current

    def reload_if_changed(self) -> bool:
        """Re-read the folder if any file changed; True when a new set was taken."""
        stamp = self._fingerprint()
        if stamp == self._stamp and self._current is not None:
            return False
        try:
            fresh = PolicySet.load(self._dir)
        except PolicyError as exc:
            log.error("policy_reload_failed", error=str(exc))
            self._stamp = stamp
            return False
        self._current, self._stamp = fresh, stamp
        log.info("policies_reloaded", policies=sorted(fresh.policies))
        return True


def _files(directory: Path, pattern: str) -> list[Path]:
    """The matching files an editor means: not hidden ones (Emacs keeps a dangling ``.#name.yaml``
    link beside a file being edited, vim a ``.name.yaml.swp``), and not links to nothing."""
    return [p for p in directory.glob(pattern) if not p.name.startswith(".") and p.is_file()]


def files_stamp(directory: Path, pattern: str) -> tuple[tuple[str, int, int], ...]:
    """Name, modification time and size of each matching file: what changes when one is edited,
    added or removed (a reload re-reads the folder only then). A file that vanishes between the
    listing and its ``stat`` is left out: the next check sees the folder as it then is."""
    out = []
    for p in _files(directory, pattern):
        try:
            st = p.stat()
        except OSError:
            continue
        out.append((p.name, st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


def default_policy_dir() -> Path:
    """``GUARD_POLICY_DIR`` or the repository's ``policies/`` folder."""
    env = os.environ.get("GUARD_POLICY_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "policies"
