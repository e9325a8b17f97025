"""Package catalogue: signed by a district (or the root), versioned; altered, foreign or older catalogues
are refused with the clerk's reason; the journal keeps old versions so admissions settle at their rate."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from cardsvc.pki.rights import Role
from point_of_service.catalogue import Catalogue, Package, verify_catalogue
from point_of_service.errors import CatalogueError
from point_of_service.reasons import CATALOGUE, Reason, message_for
from point_of_service.trust import TrustState
from tests.fixtures.keys import PkiHierarchy

NOW = datetime(2027, 1, 15, 10, 0, tzinfo=UTC)


def _catalogue(h: PkiHierarchy, version: int = 1, rate: int = 450_000) -> Catalogue:
    return Catalogue(
        version=version,
        issuer=h.district.chr,
        issued_at=1_799_000_000,
        valid_from=1_799_000_000,
        packages=(
            Package(301, "Normal delivery", rate, "obstetrics"),
            Package(112, "Cataract (one eye)", 700_000, "ophthalmology"),
        ),
    )


def _signed(h: PkiHierarchy, catalogue: Catalogue) -> bytes:
    return catalogue.sign(h.district.signer, [h.district.cert])


def test_signed_catalogue_installs_and_names_packages(pos_trust: TrustState, pki_hierarchy_soft) -> None:
    h = pki_hierarchy_soft
    assert pos_trust.install_catalogue(_signed(h, _catalogue(h)), now=NOW)
    assert pos_trust.current_catalogue().package(301).rate_paise == 450_000
    with pytest.raises(CatalogueError) as exc:
        pos_trust.current_catalogue().package(999)
    assert exc.value.reason is Reason.UNKNOWN_PACKAGE
    assert not pos_trust.install_catalogue(_signed(h, _catalogue(h)), now=NOW), "same one again: no-op"


def test_altered_rate_is_refused(pki_hierarchy_soft) -> None:
    h = pki_hierarchy_soft
    doc = json.loads(_signed(h, _catalogue(h)))
    doc["catalogue"]["packages"][1]["rate_paise"] = 4_500_000
    with pytest.raises(CatalogueError) as exc:
        verify_catalogue(json.dumps(doc).encode(), h.anchor, now=NOW)
    assert exc.value.reason is Reason.CATALOGUE_INVALID and "bad-signature" in exc.value.detail


def test_catalogue_signed_by_a_non_district_is_refused(pki_hierarchy_soft) -> None:
    h = pki_hierarchy_soft
    cat = _catalogue(h)
    wire = cat.sign(h.pos_terminal.signer, [h.district.cert, h.pos_terminal.cert])
    with pytest.raises(CatalogueError):
        verify_catalogue(wire, h.anchor, now=NOW)
    # another root's district
    rogue = h.issue(h.root, "INDKMA-ROGUE1", Role.DISTRICT)
    with pytest.raises(CatalogueError):
        verify_catalogue(cat.sign(rogue.signer, [h.district.cert]), h.anchor, now=NOW)


def test_older_version_is_a_rollback_and_old_versions_stay_readable(
    pos_trust: TrustState, pki_hierarchy_soft
) -> None:
    h = pki_hierarchy_soft
    assert pos_trust.install_catalogue(_signed(h, _catalogue(h, 2, rate=450_000)), now=NOW)
    assert pos_trust.install_catalogue(_signed(h, _catalogue(h, 3, rate=480_000)), now=NOW)
    with pytest.raises(CatalogueError) as exc:
        pos_trust.install_catalogue(_signed(h, _catalogue(h, 2, rate=400_000)), now=NOW)
    assert exc.value.reason is Reason.CATALOGUE_ROLLBACK
    reloaded = TrustState.load(pos_trust.journal, h.anchor)
    assert reloaded.current_catalogue().version == 3
    assert reloaded.catalogue_version(2).package(301).rate_paise == 450_000


def test_root_may_sign_without_chain(pki_hierarchy_soft) -> None:
    h = pki_hierarchy_soft
    cat = Catalogue(1, h.root.chr, 0, 0, (Package(5, "Dialysis", 150_000, "nephrology"),))
    assert verify_catalogue(cat.sign(h.root.signer), h.anchor, now=NOW).packages[0].code == 5


def test_every_reason_has_a_clerk_message() -> None:
    assert set(CATALOGUE) == set(Reason)
    for reason in Reason:
        msg = message_for(reason)
        assert msg.problem.endswith(".") and msg.next_step.endswith(".")
