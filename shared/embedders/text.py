"""Query text as Immich's runtime hands it to a CLIP tokenizer (immich_ml/models/clip/textual.py).

- Whitespace is always collapsed (`" ".join(text.split())`).
- Models whose config.json says `text_cfg.tokenizer_kwargs.clean == "canonicalize"` (the SigLIP and SigLIP2
  exports) get open_clip's canonical form, the one they were trained on: ftfy and HTML entities fixed,
  underscores to spaces, ASCII punctuation dropped, lower case (open_clip/tokenizer.py `_clean_canonicalize`).
- NLLB models (`nllb-clip-*-siglip`) read the query's language from a FLORES-200 code written in front of it.
"""

from __future__ import annotations

import html
import logging
import string

log = logging.getLogger(__name__)

DEFAULT_LANGUAGE = "en"
_PUNCTUATION = str.maketrans("", "", string.punctuation)

# Immich's WEBLATE_TO_FLORES200 (immich_ml/models/constants.py): the app's language tags -> NLLB codes.
FLORES200 = {
    "af": "afr_Latn", "ar": "arb_Arab", "az": "azj_Latn", "be": "bel_Cyrl", "bg": "bul_Cyrl", "ca": "cat_Latn",
    "cs": "ces_Latn", "da": "dan_Latn", "de": "deu_Latn", "el": "ell_Grek", "en": "eng_Latn", "es": "spa_Latn",
    "et": "est_Latn", "fa": "pes_Arab", "fi": "fin_Latn", "fr": "fra_Latn", "he": "heb_Hebr", "hi": "hin_Deva",
    "hr": "hrv_Latn", "hu": "hun_Latn", "hy": "hye_Armn", "id": "ind_Latn", "it": "ita_Latn", "ja": "jpn_Hira",
    "kmr": "kmr_Latn", "ko": "kor_Hang", "lb": "ltz_Latn", "lt": "lit_Latn", "lv": "lav_Latn", "mfa": "zsm_Latn",
    "mk": "mkd_Cyrl", "mn": "khk_Cyrl", "mr": "mar_Deva", "ms": "zsm_Latn", "nb-NO": "nob_Latn", "nn": "nno_Latn",
    "nl": "nld_Latn", "pl": "pol_Latn", "pt-BR": "por_Latn", "pt": "por_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl",
    "sk": "slk_Latn", "sl": "slv_Latn", "sr-Cyrl": "srp_Cyrl", "sv": "swe_Latn", "ta": "tam_Taml", "te": "tel_Telu",
    "th": "tha_Thai", "tr": "tur_Latn", "uk": "ukr_Cyrl", "ur": "urd_Arab", "vi": "vie_Latn", "zh-CN": "zho_Hans",
    "zh-Hans": "zho_Hans", "zh-TW": "zho_Hant",
}


def collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


def canonicalize(text: str) -> str:
    """open_clip's `_clean_canonicalize`: `canonicalize_text(basic_clean(text))`, step for step."""
    import ftfy  # only SigLIP-style models need it

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()  # basic_clean
    text = text.replace("_", " ").translate(_PUNCTUATION).lower()
    return collapse_whitespace(text)


def flores200_code(lang: str) -> str:
    """Immich's lookup: the tag as given (`pt-BR`), then its language (`de-CH` -> `de`), else English."""
    code = FLORES200.get(lang) or FLORES200.get(lang.split("-")[0])
    if code is None:
        log.warning("language %r has no NLLB code; the query is embedded as English", lang)
        return FLORES200[DEFAULT_LANGUAGE]
    return code
