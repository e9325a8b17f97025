"""Browser tests of the point-of-service screens: Chromium (Playwright) against the real POS app and
services over simulated cards and a simulated sensor. A hospital admission and discharge, a paypoint payment
with proof of life, a cloned card refused with its reason shown, and a supervised override — each in English
and in Hindi, with screenshots of every screen under out/screenshots/<lang>/."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cardsvc.beneficiary.session import BeneficiarySession
from point_of_service.catalogue import Catalogue, Package
from point_of_service.journal import Journal
from point_of_service.reasons import Reason, message_for
from point_of_service.services.sync import SyncService
from point_of_service.web import PosTerminal, create_app
from tests.fixtures.beneficiary import CARD_ID
from tests.fixtures.pos import OPERATOR_FINGER, OPERATOR_PIN, POS_CARD_NOW, PosWorld
from tests.fixtures.screens import LiveServer, Screens, SimPosHardware, serve_one_thread

pytestmark = pytest.mark.slow

LANGS = ["en", "hi"]


class NoNetwork:
    """Central unreachable (the normal case in the field)."""

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        raise ConnectionError("no route to central")


@dataclass
class PosScreens:
    server: LiveServer
    hw: SimPosHardware
    world: PosWorld
    tmp: Path

    def url(self, path: str) -> str:
        return self.server.url + path

    def journal(self) -> Journal:
        """A reading connection of the test's own (the app's belongs to the server thread)."""
        return Journal(self.tmp / "journal.sqlite")


@pytest.fixture
def pos_screens(pos_world: PosWorld, tmp_path: Path) -> Iterator[PosScreens]:
    pki = pos_world.pki
    catalogue = Catalogue(1, pki.district.chr, POS_CARD_NOW - 86_400, POS_CARD_NOW - 86_400, (
        Package(301, "Normal delivery", 450_000, "obstetrics"),
        Package(112, "Cataract (one eye)", 700_000, "ophthalmology"),
        Package(55, "Fever, observation", 90_000, "general"),
    ))  # fmt: skip
    signed = catalogue.sign(pki.district.signer, [pki.district.cert])
    hw = SimPosHardware(operator=pos_world.officer_card(tmp_path / "operator"))
    rng = random.Random(5)

    def build() -> Any:
        journal = Journal(tmp_path / "journal.sqlite")
        trust = pos_world.trust(journal)
        trust.install_catalogue(signed, now=datetime.fromtimestamp(POS_CARD_NOW, UTC))
        identity = pos_world.identity()
        sync = SyncService(journal, identity, trust, NoNetwork(), now=lambda: POS_CARD_NOW)
        terminal = PosTerminal(
            journal, identity, trust, hw, now=lambda: POS_CARD_NOW, rng=rng.randbytes, sync=sync
        )
        return create_app(terminal, {"SECRET_KEY": b"screens-test"})

    server = serve_one_thread(build)
    yield PosScreens(server, hw, pos_world, tmp_path)
    server.stop()


def hindi(text: str) -> bool:
    return any("\u0900" <= ch <= "\u097f" for ch in text)


def sign_in(s: PosScreens, screens: Screens, lang: str) -> Any:
    page = screens.page
    screens.hindi_only = True  # every Hindi screenshot: no English outside names and codes
    page.goto(s.url(f"/signin?lang={lang}"))
    assert page.locator("html").get_attribute("lang") == lang
    page.wait_for_selector("[data-status-key=card_reader].ok")  # the status bar polls the devices
    screens.shot(lang, "pos-signin")
    s.hw.finger = OPERATOR_FINGER
    page.fill("#pin", OPERATOR_PIN)
    page.press("#pin", "Enter")  # the keyboard alone signs in
    page.wait_for_selector("#read-card")
    page.wait_for_load_state("load")  # screens.js (deferred) has wired the card form before it is used
    return page


def small_controls(page: Any) -> list[str]:
    """Visible buttons and inputs in the page body lower than 48 px (too small for a finger). Measured once
    the page has loaded: its elements exist before screens.css has arrived, and unstyled they are small."""
    page.wait_for_load_state("load")
    return page.eval_on_selector_all(
        "main button, main .button, main input:not([type=hidden]):not([type=checkbox]), main select",
        "els => els.filter(e => e.offsetParent !== null && e.getBoundingClientRect().height < 48)"
        ".map(e => e.id || e.name || e.textContent)",
    )


def read_card_and_verify_member(s: PosScreens, screens: Screens, lang: str, finger_seed: int = 3) -> Any:
    page = screens.page
    s.hw.patient = s.world.beneficiary_card(s.tmp / "card", "wide")
    page.click("#read-card")
    page.wait_for_selector("#member-0")
    assert page.locator("ol.steps li.ok").count() == 8
    assert small_controls(page) == []
    screens.shot(lang, "pos-card-verified")
    s.hw.finger = finger_seed
    page.click("#member-0 button[type=submit]")
    return page


@pytest.mark.parametrize("lang", LANGS)
def test_hospital_admission_and_discharge(pos_screens: PosScreens, screens: Screens, lang: str) -> None:
    s = pos_screens
    page = sign_in(s, screens, lang)
    read_card_and_verify_member(s, screens, lang)
    page.wait_for_selector("#verified")
    page.click("#go-hospital")
    page.fill("#q", "deliv")
    page.press("#q", "Enter")
    page.wait_for_url("**q=deliv*")  # the filtered page itself, loaded, not the one before it
    assert page.locator("#packages tbody tr").count() == 1, "the search keeps only the matching package"
    screens.shot(lang, "pos-hospital-packages")
    assert small_controls(page) == [], "every control is large enough for a finger"
    page.click("#admit-301")
    page.wait_for_load_state("load")
    page.wait_for_selector(".flash.ok")
    [admission] = s.journal().admissions(status="open")
    assert admission.amount == 450_000 and admission.package_code == 301
    assert "4,500.00" in page.inner_text(f"#admission-{admission.block_counter}")
    screens.shot(lang, "pos-hospital-admitted")
    page.fill(f"#amount-{admission.block_counter}", "4000")
    page.click(f"#discharge-{admission.block_counter}")
    page.wait_for_load_state("load")  # the page after the discharge (the admission's page had a flash too)
    page.wait_for_selector(".flash.ok")
    assert s.journal().admissions(status="open") == []
    [settled] = s.journal().admissions(status="settled")
    assert settled.block_counter == admission.block_counter
    records = s.journal().records()
    assert [r.amount for r in records][-1] == 400_000, "the card settled the final amount typed"
    screens.shot(lang, "pos-hospital-discharged")
    page.click("#nav-journal")
    page.wait_for_selector("#journal")
    assert page.locator("#journal tbody tr").count() >= 4
    limits = page.inner_text(".card:has(progress)")
    expected = "2 of 1,000 offline debits" if lang == "en" else "1,000 में से 2 ऑफ़लाइन लेन-देन"
    assert expected in limits, "the card's own offline counters after two debits, in the local format"
    screens.shot(lang, "pos-journal")
    page.click("#sync-now")
    page.wait_for_selector(".flash.error")
    if lang == "en":
        assert message_for(Reason.SYNC_FAILED).problem in page.inner_text(".flash.error")
    assert "1" in page.inner_text("#sync-status"), "the frozen batch waits for the next sync"
    journal = s.journal()
    assert journal.batch_status().get("pending") == 1
    assert journal.events(kind="sync")[-1].outcome == "failed"
    journal.close()


@pytest.mark.parametrize("lang", LANGS)
def test_paypoint_payment_and_proof_of_life(pos_screens: PosScreens, screens: Screens, lang: str) -> None:
    s = pos_screens
    page = sign_in(s, screens, lang)
    read_card_and_verify_member(s, screens, lang)
    page.click("#go-paypoint")
    page.wait_for_selector("#wallets")
    screens.shot(lang, "pos-paypoint")
    page.select_option("#scheme", "2")
    page.fill("#amount", "1,500")
    page.click("#pay")
    page.wait_for_selector(".flash.ok")
    cash = s.journal().records()[-1]
    assert (cash.amount, cash.scheme_id) == (150_000, 2)
    page.fill("#amount", "abc")
    page.click("#pay")
    page.wait_for_selector(".flash.error")
    assert page.locator("[data-reason=amount-invalid]").count() == 1
    expected = message_for(Reason.AMOUNT_INVALID).problem
    assert (expected in page.inner_text(".flash.error")) == (lang == "en")
    screens.shot(lang, "pos-paypoint-refused")
    page.click("#proof-of-life")
    page.wait_for_selector(".flash.ok")
    assert s.journal().records()[-1].amount == 0
    assert len(s.journal().records()) == 2, "the refused amount never reached the card"


@pytest.mark.parametrize("lang", LANGS)
def test_cloned_card_refused_with_reason(pos_screens: PosScreens, screens: Screens, lang: str) -> None:
    s = pos_screens
    page = sign_in(s, screens, lang)
    world = s.world
    genuine = world.beneficiary_card(s.tmp / "genuine")
    clone = world.ben.new_card(s.tmp / "clone", rng=random.Random(99))
    from cardsvc.card.inprocess import InProcessConnection

    session = BeneficiarySession(InProcessConnection(clone))
    session.terminal_authenticate(world.ben.enrol.chain, world.ben.enrol.holder.signer, CARD_ID)
    session.generate_key()
    clone.power_off()
    genuine.power_off()
    for obj in genuine.state_dir.glob("objects/*"):
        if not obj.name.startswith("key."):
            shutil.copy(obj, clone.state_dir / "objects" / obj.name)
    s.hw.patient = clone
    page.click("#read-card")
    page.wait_for_selector(".refusal")
    assert page.locator("[data-reason=card-not-genuine]").count() == 1
    text = page.inner_text(".refusal")
    msg = message_for(Reason.CARD_NOT_GENUINE)
    if lang == "en":
        assert msg.problem in text and msg.next_step in text
    else:
        assert hindi(text) and msg.problem not in text, "the refusal is shown in Hindi"
    assert page.locator("ol.steps li.failed").count() == 1
    assert page.locator("ol.steps li.ok").count() == 5, "the five steps before the challenge passed"
    assert page.locator("#member-0").count() == 0, "no member can be chosen on a refused card"
    screens.shot(lang, "pos-card-refused-clone")
    [event] = s.journal().events(kind="verify-card")
    assert event.outcome == "refused" and event.reason == Reason.CARD_NOT_GENUINE.value


@pytest.mark.parametrize("lang", LANGS)
def test_fingerprint_mismatch_then_supervised_override(
    pos_screens: PosScreens, screens: Screens, lang: str
) -> None:
    s = pos_screens
    page = sign_in(s, screens, lang)
    read_card_and_verify_member(s, screens, lang, finger_seed=5)  # member 1's finger: a mismatch
    page.wait_for_selector("[data-reason=finger-mismatch]")
    assert page.locator("#fallbacks li").count() == 3
    screens.shot(lang, "pos-finger-mismatch")
    page.click("#override")
    s.hw.operator = s.world.officer_card(s.tmp / "supervisor", "supervisor")
    s.hw.finger = OPERATOR_FINGER
    page.select_option("#reason", "worn-fingerprints")
    page.fill("#note", "short")
    page.fill("#pin", OPERATOR_PIN)
    page.click("#confirm-override")
    page.wait_for_selector("[data-reason=override-needs-reason]")
    screens.shot(lang, "pos-override")
    page.fill("#note", "Manual labourer, ridges worn on every finger")
    page.click("#confirm-override")
    page.wait_for_selector("#verified")
    [event] = s.journal().events(kind="fallback")
    assert event.fallback == "supervised-override" and event.detail["why"] == "worn-fingerprints"


#: Installed in the card page before "Read the card": logs every change of the step list (and the live
#: refusal, once shown: a change of the refusal box alone is logged too) to the console, which outlives the
#: page the answer replaces.
WATCH_STEPS = r"""() => {
  const list = document.getElementById('steps'), box = document.getElementById('live-refusal');
  const observer = new MutationObserver(() => {
    const states = [...list.querySelectorAll('li')].map(li => li.dataset.step + '=' + li.className);
    const refusal = box.hidden ? '' : box.innerText.replace(/\s+/g, ' ');
    console.log('steps|' + states.join(',') + '|' + refusal);
  });
  observer.observe(list, {attributes: true, subtree: true});
  observer.observe(box, {attributes: true, subtree: true, childList: true, characterData: true});
}"""


def watch_steps(page: Any) -> list[tuple[list[tuple[str, str]], str]]:
    """Start recording the step list's states as the page shows them: [(step, state)...], refusal."""
    seen: list[tuple[list[tuple[str, str]], str]] = []

    def on_console(msg: Any) -> None:
        if msg.text.startswith("steps|"):
            _, states, refusal = msg.text.split("|", 2)  # the refusal box: problem, what to do
            pairs = [(name, state) for name, state in (s.split("=", 1) for s in states.split(","))]
            seen.append((pairs, refusal))

    page.on("console", on_console)
    page.evaluate(WATCH_STEPS)
    return seen


def ticked(states: list[tuple[str, str]]) -> int:
    """How many steps are ticked, checking they are the FIRST ones (no step ticked before an earlier one)."""
    marks = [state for _, state in states]
    n = 0
    while n < len(marks) and marks[n] == "ok":
        n += 1
    assert all(m in ("pending", "current", "failed") for m in marks[n:]), f"steps out of order: {states}"
    assert marks[n + 1 :].count("failed") == 0 and marks.count("current") <= 1
    return n


@pytest.mark.parametrize("lang", LANGS)
def test_verification_steps_tick_one_by_one_as_the_card_passes_them(
    pos_screens: PosScreens, screens: Screens, lang: str
) -> None:
    s = pos_screens
    page = sign_in(s, screens, lang)
    s.hw.patient = s.world.beneficiary_card(s.tmp / "card", "wide")
    s.hw.apdu_delay = 0.1  # a real card's pace: about 2 s for the whole verification
    seen = watch_steps(page)
    page.click("#read-card", no_wait_after=True)
    for _ in range(100):  # three steps ticked: the screen while the card is still being read
        if seen and sum(state == "ok" for _, state in seen[-1][0]) >= 3:
            screens.shot_while_waiting(lang, "pos-card-reading")
            break
        page.wait_for_timeout(50)
    page.wait_for_selector("#member-0")
    counts = [ticked(states) for states, _ in seen]
    assert counts == sorted(counts), f"a ticked step was unticked: {counts}"
    shown = {n for n in counts if 0 < n < 8}
    assert len(shown) >= 3, f"the steps appeared all at once, not one by one: {counts}"
    assert page.locator("ol.steps li.ok").count() == 8, "the answer: every step passed"
    assert [li.get_attribute("data-step") for li in page.locator("ol.steps li").all()] == [
        "present", "activated", "chain", "revocation", "policy", "challenge", "terminal-auth", "profile"
    ]  # fmt: skip


@pytest.mark.parametrize("lang", LANGS)
def test_a_refused_card_stops_at_its_step_while_reading(
    pos_screens: PosScreens, screens: Screens, lang: str
) -> None:
    s = pos_screens
    page = sign_in(s, screens, lang)
    s.hw.patient = s.world.beneficiary_card(s.tmp / "old", "personalised")  # written, never activated
    s.hw.apdu_delay = 0.15
    seen = watch_steps(page)
    held: dict[str, Any] = {}

    def hold_the_answer(route: Any) -> None:  # the server answers; the browser gets it when we say
        held["answer"] = route.fetch()
        held["route"] = route

    page.route("**/card/read", hold_the_answer)
    page.click("#read-card", no_wait_after=True)
    for _ in range(200):  # the page polls the steps while its answer is held
        if seen and seen[-1][1]:
            break
        page.wait_for_timeout(100)
    states, refusal = seen[-1]
    assert [state for _, state in states][:3] == ["ok", "failed", "pending"], states
    assert all(state == "pending" for _, state in states[2:]), "nothing after the refused step"
    msg = message_for(Reason.CARD_NOT_ACTIVATED)
    assert translated(msg.problem, lang) in refusal, "the refusal in plain words at its step, while reading"
    assert translated(msg.next_step, lang) in refusal, "and what to do next"
    assert hindi(refusal) == (lang == "hi")
    held["route"].fulfill(response=held["answer"])
    page.wait_for_selector("[data-read-result] [data-reason=card-not-activated]")
    assert page.locator("ol.steps li.failed").get_attribute("data-step") == "activated"
    assert page.locator("ol.steps li.ok").count() == 1
    screens.shot(lang, "pos-card-refused-not-activated")


def translated(text: str, lang: str) -> str:
    """The catalogue's translation of ``text`` (what the clerk reads in ``lang``)."""
    from flask import Flask
    from flask_babel import Babel, force_locale, gettext

    from cardsvc.web.i18n import LOCALES, usable_translations

    app = Flask(__name__)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(usable_translations())
    Babel(app)
    with app.app_context(), force_locale(LOCALES[lang]):
        return str(gettext(text))


def member_photo(seed: int) -> bytes:
    """A small synthetic portrait (a head and shoulders drawn by Pillow), as a station stores it: JPEG."""
    import io

    from PIL import Image, ImageDraw

    rnd = random.Random(seed)
    img = Image.new("RGB", (96, 120), (rnd.randrange(150, 230), rnd.randrange(150, 230), 235))
    draw = ImageDraw.Draw(img)
    skin = (rnd.randrange(120, 200), rnd.randrange(80, 140), rnd.randrange(50, 100))
    draw.ellipse((28, 18, 68, 66), fill=skin)
    draw.rectangle((14, 78, 82, 120), fill=(rnd.randrange(0, 120), 60, rnd.randrange(60, 160)))
    draw.ellipse((14, 64, 82, 96), fill=(rnd.randrange(0, 120), 60, rnd.randrange(60, 160)))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=70)
    return buf.getvalue()


def card_with_photos(world: PosWorld, state: Path, photos: dict[int, bytes]) -> Any:
    """A card personalised with member photos, then activated (the FKO certifies the photo set too)."""
    from cardsvc.card.inprocess import InProcessConnection
    from cardsvc.formats.profile import OfflineLimits, StoredPhoto
    from tests.fixtures.beneficiary import activate, household_profile, personalise
    from tests.fixtures.pos import WIDE_LIMITS_AMOUNT, WIDE_LIMITS_COUNT

    state.mkdir()
    sim = world.ben.new_card(state)
    session = BeneficiarySession(InProcessConnection(sim))
    profile = household_profile(limits=OfflineLimits(WIDE_LIMITS_COUNT, WIDE_LIMITS_AMOUNT))
    point = personalise(world.ben, session, profile)
    session.write_photos([StoredPhoto(member, jpeg) for member, jpeg in sorted(photos.items())])
    activate(world.ben, session, point, state.parent)
    sim.power_off()
    return world.ben.new_card(state)  # fresh and unpowered, as a card taken out of a wallet


@pytest.mark.parametrize("lang", LANGS)
def test_member_photos_shown_when_the_card_is_read(
    pos_screens: PosScreens, screens: Screens, lang: str
) -> None:
    import base64

    s = pos_screens
    page = sign_in(s, screens, lang)
    photos = {0: member_photo(1), 1: member_photo(2)}  # the head and the spouse; the others have none
    s.hw.patient = card_with_photos(s.world, s.tmp / "photo-card", photos)
    page.click("#read-card")
    page.wait_for_selector("#member-0")
    page.wait_for_load_state("load")  # the load event waits for the images
    assert page.locator("ol.steps li.ok").count() == 8, "a card with photos verifies: they are certified"
    for member, jpeg in photos.items():
        img = page.locator(f"#member-{member} img.photo")
        src = img.get_attribute("src") or ""
        assert src.startswith("data:image/jpeg;base64,"), "inline: no photo file leaves the terminal"
        assert base64.b64decode(src.split(",", 1)[1]) == jpeg, "the photo read from the card"
        assert img.evaluate("i => i.complete && i.naturalWidth") == 96, "the browser decoded it"
        name = ["Ramesh Kumar", "Sunita Devi"][member]
        assert name in (img.get_attribute("alt") or "")
    assert page.locator("#member-2 img").count() == 0
    assert page.locator("#member-2 div.photo[role=img]").count() == 1, "no photo: a placeholder"
    screens.shot(lang, "pos-card-photos")
    s.hw.finger = 5  # the spouse's right index (tests/fixtures/pos.py MEMBER_FINGERS)
    page.click("#member-1 button[type=submit]")
    page.wait_for_selector("#verified")
    assert page.locator("#member-1 #verified").count() == 1
    assert page.locator("#member-1 img.photo").count() == 1, "the photo stays beside the verified member"
