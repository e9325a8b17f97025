"""The `keymgmt` command line: a ceremony an operator would type, refusals printed with their rule."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from keymgmt.cli import main
from tests.fixtures.keys import SoftHsm

NOW = "2026-11-23T09:00:00Z"


@pytest.fixture
def run(tmp_path: Path, softhsm: SoftHsm):
    home = tmp_path / "ks"
    base_env = {
        "KEYMGMT_HOME": str(home),
        "KEYMGMT_SCRYPT_N": "1024",
        "KEYMGMT_ACTOR": "dkma-officer",
        "KEYMGMT_ROOT_SECRET": softhsm.pin,
        "KEYMGMT_DISTRICT_SECRET": softhsm.pin,
        "KEYMGMT_NEW_KEY_SECRET": softhsm.pin,
        "KEYMGMT_TERMINAL_PASSPHRASE": "terminal passphrase",
        "PKCS11_MODULE": softhsm.module,
    }

    def _run(*args: str, now: str = NOW, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(main, ["--now", now, *args], env={**base_env, **(env or {})})

    _run.home = home  # type: ignore[attr-defined]
    return _run


def _ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def test_ceremony_revocation_and_audit_from_the_command_line(run) -> None:
    tag = uuid.uuid4().hex[:6]
    _ok(
        run(
            "init-root",
            "INROOT00001",
            "--custody",
            "pkcs11",
            "--token",
            "rootca",
            "--key-label",
            f"cli-root-{tag}",
        )
    )
    out = _ok(
        run(
            "add-district",
            "INDKMA-PATNA1",
            "--custody",
            "pkcs11",
            "--token",
            "dkma",
            "--key-label",
            f"cli-d-{tag}",
        )
    )
    assert "INDKMA-PATNA1 (DISTRICT) issued by INROOT00001" in out
    out = _ok(run("register-terminal", "INTRM-POS-0001", "--district", "INDKMA-PATNA1", "--type", "pos"))
    assert "rights READ_PROFILE,READ_TEMPLATES,DEBIT,PROOF_OF_LIFE" in out
    _ok(
        run(
            "issue-officer",
            "INFOP-HOSP-0042",
            "--district",
            "INDKMA-PATNA1",
            "--role",
            "facility-operator",
            "--generate-key",
            env={"KEYMGMT_NEW_KEY_SECRET": "officer pw"},
        )
    )
    out = _ok(run("show", "INFOP-HOSP-0042"))
    assert out.splitlines()[2].startswith("    INFOP-HOSP-0042 (FACILITY_OPERATOR)")
    assert "valid: INTRM-POS-0001" in _ok(run("verify", "INTRM-POS-0001", "--require", "read_templates"))

    refused = run("verify", "INTRM-POS-0001", "--require", "TOP_UP")
    assert refused.exit_code == 1
    assert "refused (missing-right): INTRM-POS-0001 (POS_TERMINAL) lacks the right TOP_UP" in refused.output

    _ok(
        run(
            "revoke",
            "INTRM-POS-0001",
            "--by",
            "INDKMA-PATNA1",
            "--reason",
            "stolen",
            "--at",
            "2026-11-23T10:00Z",
        )
    )
    assert "published INDKMA-PATNA1 v1 with 1 entries" in _ok(run("publish", "--by", "INDKMA-PATNA1"))
    assert "valid" in _ok(run("verify", "INTRM-POS-0001", "--at", "2026-11-23T09:59:59Z"))
    late = run("verify", "INTRM-POS-0001", now="2026-11-23T11:00:00Z")
    assert (
        late.exit_code == 1
        and "refused (revoked): INTRM-POS-0001 was revoked at 2026-11-23 10:00:00Z" in late.output
    )

    expired = run("verify", "INTRM-POS-0001", "--at", "2031-01-01T00:00:00Z")
    assert expired.exit_code == 1 and "refused (expired)" in expired.output

    out_file = run.home / "pos.chain"
    assert "wrote 3 certificates" in _ok(run("export-chain", "INTRM-POS-0001", str(out_file)))

    assert "valid: INTRM-POS-0001" in _ok(run("verify-chain", str(out_file), "--at", "2026-11-23T09:30:00Z"))
    _ok(run("export-bundle", str(run.home / "bundle")))
    late_file = run(
        "verify-chain", str(out_file), "--bundle", str(run.home / "bundle"), now="2026-11-24T00:00:00Z"
    )
    assert late_file.exit_code == 1 and "refused (revoked)" in late_file.output
    forged = bytearray(out_file.read_bytes())
    forged[-5] ^= 0xFF
    out_file.write_bytes(bytes(forged))
    bad = run("verify-chain", str(out_file), "--at", "2026-11-23T09:30:00Z")
    assert bad.exit_code == 1 and "refused (bad-signature)" in bad.output

    assert "audit log intact: 15 entries" in _ok(run("audit", "verify"))
    shown = _ok(run("audit", "show"))
    assert "terminal.register" in shown and "signed-by=INDKMA-PATNA1" in shown

    audit_path = run.home / "audit.log"
    lines = audit_path.read_text().splitlines()
    entry = json.loads(lines[3])
    entry["details"]["rights"].append("CERTIFY")
    lines[3] = json.dumps(entry)
    audit_path.write_text("\n".join(lines) + "\n")
    tampered = run("audit", "verify")
    assert tampered.exit_code == 1
    assert "error (audit-tampered): entry 4 (seq 4, action 'officer.issue')" in tampered.output


def test_default_enrolment_terminal_rights_include_renew(run) -> None:
    """A station registered by the default ceremony can renew cards (and lower a split card's original)."""
    _ok(run("init-root", "INROOT00001", env={"KEYMGMT_NEW_KEY_SECRET": "root pw"}))
    _ok(run("add-district", "INDKMA-PATNA1", env={"KEYMGMT_ROOT_SECRET": "root pw",
                                                   "KEYMGMT_NEW_KEY_SECRET": "district pw"}))  # fmt: skip
    secrets = {"KEYMGMT_DISTRICT_SECRET": "district pw", "KEYMGMT_TERMINAL_PASSPHRASE": "t pw"}
    out = _ok(run("register-terminal", "INTRM-ENR-0001", "--district", "INDKMA-PATNA1", "--type", "enrolment",
                  env=secrets))  # fmt: skip
    assert "rights ENROL,READ_PROFILE,READ_TEMPLATES,RENEW" in out
    assert "valid" in _ok(run("verify", "INTRM-ENR-0001", "--require", "ENROL,RENEW"))


def test_operator_mistakes_get_one_clear_line(run) -> None:
    missing = run("show", "INTRM-NONE")
    assert missing.exit_code == 1 and "no root" in missing.output
    _ok(run("init-root", "INROOT00001", env={"KEYMGMT_NEW_KEY_SECRET": "root pw"}))
    wrong = run("add-district", "INDKMA-X", env={"KEYMGMT_ROOT_SECRET": "not it"})
    assert wrong.exit_code == 1 and "error (key-custody): wrong passphrase" in wrong.output
    bad = run(
        "issue-officer", "INFKO-1", "--district", "INROOT00001", "--role", "fko", "--public-key", "04" * 65
    )
    assert bad.exit_code == 1 and "is a ROOT, not a district" in bad.output
    both = run("issue-officer", "INFKO-1", "--district", "INDKMA-X", "--role", "fko")
    assert both.exit_code == 1 and "exactly one of --public-key HEX or --generate-key" in both.output
    again = run("init-root", "INROOT00002")
    assert again.exit_code == 1 and "already has a root" in again.output
    rights = run("add-district", "INDKMA-Y", "--rights", "FLY", env={"KEYMGMT_ROOT_SECRET": "root pw"})
    assert rights.exit_code == 1 and "unknown right 'FLY'" in rights.output


def test_secrets_are_prompted_without_echo_when_not_in_the_environment(tmp_path: Path) -> None:
    env = {"KEYMGMT_HOME": str(tmp_path / "ks"), "KEYMGMT_SCRYPT_N": "1024", "KEYMGMT_NEW_KEY_SECRET": ""}
    result = CliRunner().invoke(
        main, ["init-root", "INROOT00001"], input="s3cret root\ns3cret root\n", env=env
    )
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    env["KEYMGMT_ROOT_SECRET"] = "s3cret root"
    env["KEYMGMT_NEW_KEY_SECRET"] = "district pw"
    assert CliRunner().invoke(main, ["add-district", "INDKMA-1"], env=env).exit_code == 0
