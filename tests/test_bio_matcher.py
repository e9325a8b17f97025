"""The MCC-LSSR matcher: invariance, calibration, card verification, 1:N search, FVC accuracy smoke."""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path

import numpy as np
import pytest

from cardsvc.bio.calibration import Calibration, load_default_calibration
from cardsvc.bio.errors import MatcherError
from cardsvc.bio.iso19794 import decode_compact, encode_compact, quantise_for_card
from cardsvc.bio.matcher import DEFAULT_THRESHOLD, EncodedTemplate, Matcher, fmr_to_threshold
from cardsvc.bio.perturb import jitter, random_template, rigid_transform
from cardsvc.bio.template import FingerTemplate


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher()


@pytest.fixture(scope="module")
def fingers() -> list[FingerTemplate]:
    """Generated minutiae sets (no images needed): distinct 'fingers' of 40-50 minutiae."""
    rng = np.random.default_rng(11)
    return [random_template(rng, count=int(rng.integers(40, 51))) for _ in range(6)]


def _big_canvas(t: FingerTemplate) -> FingerTemplate:
    """The same minutiae on a larger image, so moved minutiae stay inside."""
    return FingerTemplate(minutiae=t.minutiae, width=t.width + 400, height=t.height + 400)


@pytest.mark.parametrize(("rotation", "dx", "dy"), [(0, 0, 0), (25, 40, -30), (-45, -60, 80), (60, 120, 10)])
def test_rotated_and_translated_finger_keeps_a_high_score(
    matcher: Matcher, fingers: list[FingerTemplate], rotation: float, dx: float, dy: float
) -> None:
    t = _big_canvas(fingers[0])
    moved = rigid_transform(t, rotation=rotation, dx=dx + 200, dy=dy + 200)
    assert len(moved.minutiae) == len(t.minutiae)
    assert matcher.similarity(t, moved) > 0.6
    assert matcher.compare(t, moved) >= 60  # FMR below 1e-6


def test_another_impression_of_the_same_finger_matches(
    matcher: Matcher, fingers: list[FingerTemplate]
) -> None:
    rng = np.random.default_rng(5)
    t = fingers[1]
    other = jitter(rigid_transform(t, rotation=12, dx=8, dy=-6), rng, position_sd=3, angle_sd=8, drop=0.2)
    assert matcher.verify(other, t).matched


def test_different_fingers_score_low(matcher: Matcher, fingers: list[FingerTemplate]) -> None:
    scores = [matcher.compare(a, b) for i, a in enumerate(fingers) for b in fingers[i + 1 :]]
    assert max(scores) < 20  # FMR above 1%: nowhere near a match
    results = [matcher.verify(a, b) for i, a in enumerate(fingers) for b in fingers[i + 1 :]]
    assert not any(r.matched for r in results)


def test_a_print_turned_beyond_90_degrees_is_not_matched(
    matcher: Matcher, fingers: list[FingerTemplate]
) -> None:
    """MCC pairs minutiae only within 90 degrees of direction: fingers are not placed upside down."""
    t = _big_canvas(fingers[2])
    turned = rigid_transform(t, rotation=150)
    assert matcher.compare(t, turned) < 20


def test_score_is_symmetric_enough_and_empty_templates_score_zero(
    matcher: Matcher, fingers: list[FingerTemplate]
) -> None:
    rng = np.random.default_rng(9)
    a = fingers[3]
    b = jitter(a, rng)
    assert matcher.similarity(a, b) == pytest.approx(matcher.similarity(b, a), abs=0.05)
    empty = FingerTemplate(minutiae=(), width=300, height=400)
    assert matcher.compare(a, empty) == 0.0


def test_encoded_templates_serialise_and_pickle(matcher: Matcher, fingers: list[FingerTemplate]) -> None:
    a, b = matcher.encode(fingers[0]), matcher.encode(jitter(fingers[0], np.random.default_rng(1)))
    again = EncodedTemplate.from_bytes(a.to_bytes())
    assert matcher.compare(again, b) == matcher.compare(a, b)
    assert matcher.compare(pickle.loads(pickle.dumps(a)), b) == matcher.compare(a, b)
    with pytest.raises(MatcherError, match="not an encoded MCC template"):
        EncodedTemplate.from_bytes(b"XXXX" + a.to_bytes()[4:])
    with pytest.raises(MatcherError, match="header implies"):
        EncodedTemplate.from_bytes(a.to_bytes()[:-1])


def test_calibration_reads_as_false_match_rate() -> None:
    table = load_default_calibration()
    assert table.raw and "impostor" in table.source
    raws = np.linspace(0, 0.2, 200)
    scores = [table.score_of(r) for r in raws]
    assert all(b >= a for a, b in itertools.pairwise(scores))  # monotonic
    assert table.score_of(0.0) == 0.0 and scores[-1] == pytest.approx(120.0)
    assert fmr_to_threshold(1e-4) == pytest.approx(40.0) == DEFAULT_THRESHOLD
    assert fmr_to_threshold(0.01) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="false-match rate"):
        fmr_to_threshold(0)


def test_calibration_fit_matches_the_impostor_distribution_it_saw() -> None:
    rng = np.random.default_rng(4)
    impostors = rng.beta(2, 60, 20000)
    table = Calibration.fit(impostors)
    for fmr in (0.1, 0.01, 0.001):
        threshold_raw = np.quantile(impostors, 1 - fmr)
        assert table.score_of(float(threshold_raw)) == pytest.approx(-10 * np.log10(fmr), abs=1.0)
    with pytest.raises(ValueError, match="at least 100"):
        Calibration.fit(impostors[:50])


def test_verify_quantises_both_sides_to_the_card_format(
    matcher: Matcher, fingers: list[FingerTemplate]
) -> None:
    live = jitter(fingers[4], np.random.default_rng(2))
    on_card = decode_compact(encode_compact(fingers[4]))
    result = matcher.verify(live, on_card)
    assert result.matched and result.threshold == DEFAULT_THRESHOLD
    assert result.score == matcher.compare(quantise_for_card(live), quantise_for_card(on_card))
    assert 0 < result.estimated_fmr < 1e-4
    strict = matcher.verify(live, fingers[5], threshold=60)
    assert not strict.matched


def test_search_finds_the_mate_and_raises_the_threshold_with_gallery_size(
    matcher: Matcher, fingers: list[FingerTemplate]
) -> None:
    rng = np.random.default_rng(8)
    gallery_templates = {f"other-{i}": random_template(rng, count=45) for i in range(120)}
    gallery_templates["mate"] = fingers[0]
    gallery = matcher.gallery(gallery_templates)
    probe = jitter(rigid_transform(fingers[0], rotation=-10, dx=5), rng)
    hits = gallery.search(matcher, probe, target_fmr=1e-3)
    assert [h.identity for h in hits] == ["mate"]
    # the pre-filter alone (shortlist of 5 of 121) still keeps the mate
    assert [h.identity for h in gallery.search(matcher, probe, shortlist=5)] == ["mate"]
    assert gallery.shortlist_size(None) == 50
    # no mate: nothing clears the raised threshold
    assert matcher.search(fingers[5], gallery) == []


def test_search_of_an_empty_gallery(matcher: Matcher, fingers: list[FingerTemplate]) -> None:
    assert matcher.search(fingers[0], {}) == []


@pytest.mark.fvc
def test_accuracy_smoke_on_real_prints(fvc_dir: Path, matcher: Matcher) -> None:
    """Four fingers x four impressions of FVC2002 DB1 B: genuine pairs clear impostor pairs."""
    from cardsvc.bio.extract import extract_template, load_image

    encoded = {}
    for finger in (101, 102, 103, 104):
        for impression in (1, 2, 3, 4):
            image = load_image(str(fvc_dir / "DB1_B" / f"{finger}_{impression}.tif"))
            encoded[(finger, impression)] = matcher.encode(
                quantise_for_card(extract_template(image, quality=False))
            )
    keys = list(encoded)
    genuine, impostor = [], []
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            (genuine if a[0] == b[0] else impostor).append(matcher.compare(encoded[a], encoded[b]))
    assert len(genuine) == 24 and len(impostor) == 96
    assert max(impostor) < DEFAULT_THRESHOLD
    assert np.mean(np.array(genuine) > max(impostor)) >= 0.85
    assert np.median(genuine) >= 60


def test_single_threaded_blas_restores_the_callers_thread_count() -> None:
    """The matcher limits BLAS to one thread only while it runs; other code keeps its setting."""
    from cardsvc.bio import mcc

    libs = mcc._blas_controllers()
    if not libs:
        pytest.skip("threadpoolctl found no BLAS library to control")
    before = [lib.get_num_threads() for lib in libs]
    with mcc.single_threaded_blas():
        assert all(lib.get_num_threads() == 1 for lib in libs)
        with mcc.single_threaded_blas():
            assert all(lib.get_num_threads() == 1 for lib in libs)
    assert [lib.get_num_threads() for lib in libs] == before


def test_compiled_kernels_and_numpy_path_give_the_same_scores(fingers: list[FingerTemplate]) -> None:
    """numba is optional: without it (or with CARDSVC_MCC_JIT=0) the numpy path must agree."""
    from cardsvc.bio import mcc

    pytest.importorskip("numba")
    rng = np.random.default_rng(21)
    templates = [*fingers, *(jitter(f, rng) for f in fingers)]
    encoded = [mcc.encode(t) for t in templates]
    try:
        mcc.use_jit(True)
        assert mcc._jit() is not None
        compiled = [mcc.lssr_score(a, b) for a in encoded for b in encoded]
        gamma_c = mcc.local_similarities(encoded[0], encoded[6])
        mcc.use_jit(False)
        plain = [mcc.lssr_score(a, b) for a in encoded for b in encoded]
        gamma_p = mcc.local_similarities(encoded[0], encoded[6])
    finally:
        mcc.use_jit(True)
    np.testing.assert_allclose(gamma_c, gamma_p, atol=1e-5)
    np.testing.assert_allclose(compiled, plain, atol=2e-3)
    assert max(compiled) > 0.5  # the comparison set holds genuine pairs, not only zeros
