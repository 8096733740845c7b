"""ai-toolkit spellings the typed config accepts: qtype names, numbers written as strings, timestep types.

Pure functions and tables used by toolkit/config_modules/ while validating; no torch import.
"""

from __future__ import annotations

import re
from typing import Any

QTYPE_HELP = (
    "optimum-quanto weight type: qfloat8, qint8, qint4, qint2. ai-toolkit's names are accepted: float8 -> qfloat8, "
    "int8 / uint8 -> qint8, uint4 / int4 -> qint4, uint2 -> qint2."
)
# ai-toolkit qtype names -> the quanto type storing the same bits (torchao's float8 / int8 weight-only and
# ai-toolkit's uintN weight-only quantizers keep per-channel or per-group scales, as quanto does).
_AITK_QTYPES = {
    "float8": "qfloat8",
    "qfloat8_e4m3fn": "qfloat8",
    "int8": "qint8",
    "uint8": "qint8",
    "uint4": "qint4",
    "int4": "qint4",
    "uint2": "qint2",
    "": "qfloat8",
}


def aitk_qtype(value: Any) -> Any:
    """ai-toolkit's ``qtype`` spelling -> ours; a ValueError saying what to write for those quanto cannot store."""
    if not isinstance(value, str):
        return value
    if "|" in value:
        raise ValueError(
            f"{value!r} names an accuracy recovery adapter, which is not supported; write the qtype "
            f"alone ({aitk_qtype(value.split('|')[0])!r})"
        )
    if re.fullmatch(r"u?int[3567]", value):
        raise ValueError(
            f"{value!r}: optimum-quanto stores 2-, 4- and 8-bit weights only; use qint4 (uint4) for "
            "about the same memory, or qint8 / qfloat8"
        )
    if value.startswith(("convrot", "nvfp4", "orbit")):
        raise ValueError(
            f"{value!r} is one of ai-toolkit's own quantizers, not available here; use qfloat8, qint8 or qint4"
        )
    return _AITK_QTYPES.get(value, value)


_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")


def number_if_numeric(value: Any) -> Any:
    """``"1e-4"`` -> 1e-4, ``"8"`` -> 8, in lists too; anything else unchanged."""
    if isinstance(value, list):
        return [number_if_numeric(item) for item in value]
    if isinstance(value, str):
        text = value.strip()
        if _INT.match(text):
            return int(text)
        if _FLOAT.match(text):
            return float(text)
    return value


AITK_TIMESTEP_TYPES = {
    "next_sample": "it trains on a simulated sampling step; use shift",
    "one_step": "it trains at t = 1000 only; use linear, sigmoid, shift, weighted or lognorm_blend",
    "two_step": "it trains at 2 fixed timesteps only; use linear, sigmoid, shift, weighted or lognorm_blend",
    "four_step": "it trains at 4 fixed timesteps only; use linear, sigmoid, shift, weighted or lognorm_blend",
    "eight_step": "it trains at 8 fixed timesteps only; use linear, sigmoid, shift, weighted or lognorm_blend",
    "flux_shift": "use shift",
    "lumina2_shift": "use shift",
}
"""ai-toolkit timestep types with no equivalent here -> what to write instead."""
