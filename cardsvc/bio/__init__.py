"""Fingerprints: ISO/IEC 19794-2 templates, mindtct extraction, the MCC-LSSR matcher (see docs/biometrics.md).

Public API (import from the submodules):
    cardsvc.bio.template   Minutia, MinutiaKind, FingerTemplate
    cardsvc.bio.iso19794   IsoRecord, decode_template, encode_template, encode_compact, decode_compact,
                           quantise_for_card, wrap_verify_template, unwrap_verify_template
    cardsvc.bio.extract    extract_template, image_quality, load_image
    cardsvc.bio.matcher    Matcher, Gallery, MatchResult, SearchHit, fmr_to_threshold, DEFAULT_THRESHOLD
    cardsvc.bio.errors     BiometricError, TemplateFormatError, ExtractionError, MatcherError
"""
