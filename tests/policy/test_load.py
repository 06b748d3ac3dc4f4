"""Policies: the shipped ones load; errors name file and field; unknown keys fail; live reload."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from guard.errors import PolicyError
from guard.policy.load import PolicySet, PolicyStore, load_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def test_shipped_policies_load_and_tenants_map():
    ps = PolicySet.load(POLICIES)
    assert {"default", "strict", "pii-only"} <= set(ps.policies)
    assert ps.select().policy == "default"
    assert ps.select(tenant="kids-app").policy == "strict"
    assert ps.select(policy="pii-only", tenant="kids-app").policy == "pii-only"
    with pytest.raises(PolicyError, match="unknown policy"):
        ps.select(policy="nope")


def test_shipped_policies_redact_every_pii_entity():
    """A recogniser no shipped policy names would find PII and let it through."""
    from guard.detectors.pii import ENTITIES

    ps = PolicySet.load(POLICIES)
    for name in ("default", "strict", "pii-only"):
        named = {e for p in ps.policies[name].principles if p.action == "redact" for e in p.entities}
        assert named == set(ENTITIES), name


def write(tmp: Path, name: str, body: str) -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text(body)
    return p


GOOD = """policy: {name}
principles:
  - id: no-hate
    text: no hate
    categories: [hate]
    threshold: 0.8
    action: block
"""


@pytest.mark.parametrize("body, where", [
    (GOOD.replace("threshold: 0.8", "threshold: 1.8"), "principles.0.threshold"),
    (GOOD.replace("action: block", "action: explode"), "principles.0.action"),
    (GOOD.replace("categories: [hate]", "categories: [hat]"), "principles.0"),
    (GOOD + "surprise: 1\n", "surprise"),
    (GOOD.replace("    action: block", "    action: block\n    treshold: 0.5"), "principles.0.treshold"),
])
def test_errors_name_file_and_field(tmp_path, body, where):
    p = write(tmp_path, "default", body.format(name="default"))
    with pytest.raises(PolicyError) as exc:
        load_policy(p)
    assert str(p) in str(exc.value) and where in str(exc.value)


def test_name_must_match_file(tmp_path):
    p = write(tmp_path, "default", GOOD.format(name="other"))
    with pytest.raises(PolicyError, match="file name"):
        load_policy(p)


def test_reload_takes_valid_changes_and_keeps_old_on_errors(tmp_path):
    shutil.copy(POLICIES / "default.yaml", tmp_path / "default.yaml")
    store = PolicyStore(tmp_path)
    assert "strict" not in store.current.policies
    time.sleep(0.01)
    write(tmp_path, "strict", GOOD.format(name="strict"))
    assert store.reload_if_changed()
    assert "strict" in store.current.policies
    bad = write(tmp_path, "strict", "policy: strict\nprinciples: []\n")
    os.utime(bad, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert not store.reload_if_changed()
    assert "strict" in store.current.policies  # the last good set stays


@pytest.mark.parametrize("entry", ["no: strict", "0042: strict", "on: strict", "acme: 1"])
def test_a_tenant_yaml_reads_as_something_else_than_text_is_refused(tmp_path: Path, entry: str):
    """Unquoted, YAML reads ``no`` as false and ``0042`` as 34: the map used to send tenant "False"
    or "34" to the policy and the tenant written there to the default."""
    for f in ("default.yaml", "strict.yaml"):
        shutil.copy(POLICIES / f, tmp_path / f)
    (tmp_path / "tenants.yaml").write_text(f"tenants:\n  {entry}\n")
    with pytest.raises(PolicyError, match="not read as text; quote"):
        PolicySet.load(tmp_path)
    key, value = entry.split(": ")
    (tmp_path / "tenants.yaml").write_text(f'tenants:\n  "{key}": "strict"\n')
    assert PolicySet.load(tmp_path).select(tenant=key).policy == "strict"


def _copy_shipped(directory: Path) -> None:
    for f in ("default.yaml", "strict.yaml", "pii-only.yaml", "tenants.yaml"):
        shutil.copy(POLICIES / f, directory / f)


@pytest.mark.parametrize(("name", "extra"), [
    ("default.yaml", "on_detector_error: open\n"),   # would have turned default fail-open
    ("tenants.yaml", "  kids-app: default\n"),       # would have remapped kids-app
])
def test_a_key_written_twice_is_refused_not_overwritten(tmp_path: Path, name: str, extra: str):
    _copy_shipped(tmp_path)
    (tmp_path / "tenants.yaml").write_text("tenants:\n  kids-app: strict\n")
    with (tmp_path / name).open("a") as fh:
        fh.write(extra)
    with pytest.raises(PolicyError, match="appears twice"):
        PolicySet.load(tmp_path)


@pytest.mark.parametrize("breakage", ["tenants-yaml", "latin-1", "dangling-lock-link", "blocklist-latin-1"])
def test_a_bad_edit_on_reload_is_logged_and_the_set_in_force_kept(tmp_path: Path, breakage: str):
    """Each of these escaped the reload and crashed a running worker: a YAML syntax error in the
    tenant map, a file saved as Latin-1, and the dangling ``.#name.yaml`` link Emacs keeps while a
    file is edited (which is not a policy and is skipped)."""
    from guard.detectors.lexical import load_blocklists
    from guard.errors import ConfigError

    _copy_shipped(tmp_path)
    store = PolicyStore(tmp_path)
    before = store.current
    later = time.time_ns() + 10**9
    if breakage == "tenants-yaml":
        (tmp_path / "tenants.yaml").write_text("tenants:\n  kids-app: strict\n   internal: pii-only\n")
    elif breakage == "latin-1":
        (tmp_path / "strict.yaml").write_bytes((POLICIES / "strict.yaml").read_bytes() + "# caf\xe9\n".encode("latin-1"))
    elif breakage == "blocklist-latin-1":
        shutil.copytree(POLICIES / "blocklists", tmp_path / "blocklists")
        (tmp_path / "blocklists" / "profanity.txt").write_bytes("caf\xe9\n".encode("latin-1"))
        with pytest.raises(ConfigError, match="UTF-8"):
            load_blocklists(tmp_path / "blocklists")
        return
    else:
        (tmp_path / ".#default.yaml").symlink_to("user@host.1234:1700000000")
        assert not store.reload_if_changed() and store.current is before
        return
    for f in tmp_path.glob("*.yaml"):
        os.utime(f, ns=(later, later))
    assert not store.reload_if_changed()
    assert store.current is before


def _merged(tmp_path: Path, last: str) -> PolicySet:
    """A policy whose third principle merges the first (and, in ``last``, more)."""
    shutil.copy(POLICIES / "default.yaml", tmp_path / "default.yaml")
    (tmp_path / "merged.yaml").write_text(
        "policy: merged\n"
        "principles:\n"
        "  - &a {id: a, text: t, categories: [hate], threshold: 0.8, action: block, on_detector_error: closed,\n"
        "        tuning: &tune {target_precision: 0.9, min_evidence: 30, floor: 0.5}}\n"
        "  - &b {id: b, text: t, categories: [violence], action: block, on_detector_error: open}\n"
        f"  - {{<<: *a, id: c, categories: [dangerous], {last}}}\n")
    return PolicySet.load(tmp_path)


def test_merge_keys_still_load_and_may_be_overridden(tmp_path: Path):
    spec = _merged(tmp_path, "tuning: {<<: *tune, floor: 0.4}").policies["merged"]
    assert [p.id for p in spec.principles] == ["a", "b", "c"]
    assert spec.principles[2].tuning.floor == 0.4 and spec.principles[2].threshold == 0.8


def test_two_merge_keys_in_one_mapping_are_refused(tmp_path: Path):
    """The later would silently win, as a key written twice does."""
    with pytest.raises(PolicyError, match="merge key '<<' appears twice"):
        _merged(tmp_path, "<<: *b")
