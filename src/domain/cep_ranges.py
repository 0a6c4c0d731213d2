"""The state (UF) a CEP belongs to, from the Correios CEP ranges per state (pure, no I/O).

Source: Correios, "Faixas de CEP por UF" (the table behind the public "Busca Faixa de CEP" service,
https://buscacepinter.correios.com.br/app/faixa_cep_uf_localidade/index.php). Each state owns whole
ranges of the first five digits; AM, DF and GO own two ranges each. 00000-000 to 00999-999 and
78900-000 to 78999-999 (Rondônia's range until 2008, now 76800-000 to 76999-999) belong to no state.
"""

from __future__ import annotations

from bisect import bisect_right

# (first five digits, last five digits, UF), in ascending order, never overlapping
CEP_RANGES: tuple[tuple[int, int, str], ...] = (
    (1000, 19999, "SP"), (20000, 28999, "RJ"), (29000, 29999, "ES"), (30000, 39999, "MG"),
    (40000, 48999, "BA"), (49000, 49999, "SE"), (50000, 56999, "PE"), (57000, 57999, "AL"),
    (58000, 58999, "PB"), (59000, 59999, "RN"), (60000, 63999, "CE"), (64000, 64999, "PI"),
    (65000, 65999, "MA"), (66000, 68899, "PA"), (68900, 68999, "AP"), (69000, 69299, "AM"),
    (69300, 69399, "RR"), (69400, 69899, "AM"), (69900, 69999, "AC"), (70000, 72799, "DF"),
    (72800, 72999, "GO"), (73000, 73699, "DF"), (73700, 76799, "GO"), (76800, 76999, "RO"),
    (77000, 77999, "TO"), (78000, 78899, "MT"), (79000, 79999, "MS"),
    (80000, 87999, "PR"), (88000, 89999, "SC"), (90000, 99999, "RS"),
)  # fmt: skip
_STARTS = [start for start, _, _ in CEP_RANGES]


def uf_of_cep(cep: str | None) -> str | None:
    """The UF whose Correios range holds `cep` (`00000-000` or 8 digits), or None."""
    digits = "".join(ch for ch in cep or "" if ch.isdigit())
    if len(digits) != 8:
        return None
    prefix = int(digits[:5])
    index = bisect_right(_STARTS, prefix) - 1
    if index < 0:
        return None
    start, end, uf = CEP_RANGES[index]
    return uf if start <= prefix <= end else None
