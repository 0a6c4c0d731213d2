"""CPF / CNPJ normalization and log masking (pure domain, python-stdnum underneath)."""

from __future__ import annotations

import random
import re
import string

import pytest
from stdnum.br import cpf

from src.domain.documents import DocumentKind, NormalizedDocument, mask_document, normalize_document

REASONS = {
    "empty",
    "not a CPF (11 digits) or CNPJ (14 characters)",
    "repeated digits",
    "invalid check digits",
    "invalid format",
}


@pytest.mark.parametrize(
    ("raw", "canonical", "formatted"),
    [
        ("529.982.247-25", "52998224725", "529.982.247-25"),
        ("52998224725", "52998224725", "529.982.247-25"),
        ("  529 982 247 25 ", "52998224725", "529.982.247-25"),
        ("529-982-247/25", "52998224725", "529.982.247-25"),
        ("CPF: 529.982.247-25", "52998224725", "529.982.247-25"),
        ("cpf 52998224725", "52998224725", "529.982.247-25"),
        ("52998224725.0", "52998224725", "529.982.247-25"),
        ("５２９.９８２.２４７-２５", "52998224725", "529.982.247-25"),
        ("\t012.345.678-90\n", "01234567890", "012.345.678-90"),
    ],
)
def test_valid_cpf_is_compacted_and_masked_in_the_standard_format(
    raw: str, canonical: str, formatted: str
) -> None:
    """A valid CPF in any spelling comes back as 11 digits plus the `000.000.000-00` mask."""
    result = normalize_document(raw)
    assert result == NormalizedDocument(
        kind=DocumentKind.CPF, canonical=canonical, formatted=formatted, valid=True, reason=None
    )


@pytest.mark.parametrize(
    ("raw", "canonical", "formatted"),
    [
        ("11.222.333/0001-81", "11222333000181", "11.222.333/0001-81"),
        ("11222333000181", "11222333000181", "11.222.333/0001-81"),
        ("CNPJ: 11 222 333 0001 81", "11222333000181", "11.222.333/0001-81"),
        ("12.ABC.345/01DE-35", "12ABC34501DE35", "12.ABC.345/01DE-35"),
        ("12.abc.345/01de-35", "12ABC34501DE35", "12.ABC.345/01DE-35"),
        ("12abc34501de35", "12ABC34501DE35", "12.ABC.345/01DE-35"),
        ("00.ABC.123/0001-86", "00ABC123000186", "00.ABC.123/0001-86"),
        ("CPF/CNPJ - 00.360.305/0001-04", "00360305000104", "00.360.305/0001-04"),
    ],
)
def test_valid_cnpj_numeric_or_alphanumeric_is_uppercased_and_formatted(
    raw: str, canonical: str, formatted: str
) -> None:
    """Numeric and 2026 alphanumeric CNPJs validate, with letters uppercased in both forms."""
    result = normalize_document(raw)
    assert result.kind is DocumentKind.CNPJ
    assert result.valid is True
    assert result.canonical == canonical
    assert result.formatted == formatted
    assert result.reason is None


def test_stdnum_accepts_a_repeated_digit_cpf_so_the_domain_must_reject_it() -> None:
    """The library alone would let `111.111.111-11` through; the normalizer does not."""
    assert cpf.is_valid("11111111111")
    assert normalize_document("111.111.111-11").valid is False


@pytest.mark.parametrize(
    ("raw", "kind", "canonical"),
    [
        ("111.111.111-11", DocumentKind.CPF, "11111111111"),
        ("999.999.999-99", DocumentKind.CPF, "99999999999"),
        ("00000000000", DocumentKind.CPF, "00000000000"),
        ("00000000000000", DocumentKind.CNPJ, "00000000000000"),
        ("11.111.111/1111-11", DocumentKind.CNPJ, "11111111111111"),
        ("77777777777777", DocumentKind.CNPJ, "77777777777777"),
    ],
)
def test_repeated_digit_numbers_are_invalid_but_keep_their_kind(
    raw: str, kind: DocumentKind, canonical: str
) -> None:
    """Repeated-digit placeholders are flagged as such, with the cleaned value and no mask."""
    result = normalize_document(raw)
    assert result == NormalizedDocument(
        kind=kind, canonical=canonical, formatted=None, valid=False, reason="repeated digits"
    )


@pytest.mark.parametrize(
    ("raw", "kind", "canonical"),
    [
        ("529.982.247-26", DocumentKind.CPF, "52998224726"),
        ("123.456.789-00", DocumentKind.CPF, "12345678900"),
        ("11.222.333/0001-82", DocumentKind.CNPJ, "11222333000182"),
        ("12.ABC.345/01DE-36", DocumentKind.CNPJ, "12ABC34501DE36"),
        ("12.abc.345/01de-53", DocumentKind.CNPJ, "12ABC34501DE53"),
    ],
)
def test_wrong_check_digits_keep_kind_and_cleaned_value(raw: str, kind: DocumentKind, canonical: str) -> None:
    """A well-shaped number with wrong check digits is invalid, not unknown."""
    result = normalize_document(raw)
    assert result == NormalizedDocument(
        kind=kind, canonical=canonical, formatted=None, valid=False, reason="invalid check digits"
    )


@pytest.mark.parametrize(
    "raw",
    [
        "12345",
        "529.982.247-2",
        "529.982.247-255",
        "529.982.247-2A",
        "12.ABC.345/01DE-AB",
        "12.ABC.345/01DE-3",
        "529982247é5",
        "not a document",
        "1234567890123456",
        "9982247",
    ],
)
def test_wrong_length_or_characters_are_unknown_without_canonical(raw: str) -> None:
    """Anything not shaped like a CPF or CNPJ is UNKNOWN, and nothing of it is echoed back."""
    result = normalize_document(raw)
    assert result == NormalizedDocument(
        kind=DocumentKind.UNKNOWN,
        canonical=None,
        formatted=None,
        valid=False,
        reason="not a CPF (11 digits) or CNPJ (14 characters)",
    )


@pytest.mark.parametrize("raw", [None, "", "   ", "\t\n", "...", "-/-", "CPF: "])
def test_empty_input_is_unknown_with_reason_empty(raw: str | None) -> None:
    """None, blanks and pure punctuation mean there is no document at all."""
    result = normalize_document(raw)
    assert result.kind is DocumentKind.UNKNOWN
    assert result.valid is False
    assert result.canonical is None
    assert result.reason == "empty"


@pytest.mark.parametrize(
    ("raw", "kind", "formatted"),
    [
        ("1234567890", DocumentKind.CPF, "012.345.678-90"),
        ("123456797", DocumentKind.CPF, "001.234.567-97"),
        ("9876543229", DocumentKind.CPF, "098.765.432-29"),
        ("9876543229.0", DocumentKind.CPF, "098.765.432-29"),
        ("360305000104", DocumentKind.CNPJ, "00.360.305/0001-04"),
        ("0360305000104", DocumentKind.CNPJ, "00.360.305/0001-04"),
    ],
)
def test_leading_zeros_lost_by_spreadsheets_are_restored_when_that_makes_it_valid(
    raw: str, kind: DocumentKind, formatted: str
) -> None:
    """A numeric cell that dropped its leading zeros is padded back to a valid document."""
    result = normalize_document(raw)
    assert result.kind is kind
    assert result.valid is True
    assert result.formatted == formatted


@pytest.mark.parametrize("raw", ["1234567891", "123456789", "360305000105", "0360305000105", "111111111"])
def test_short_numbers_are_not_padded_when_padding_does_not_validate(raw: str) -> None:
    """Padding is only a repair: a short number that stays invalid remains UNKNOWN."""
    result = normalize_document(raw)
    assert result.kind is DocumentKind.UNKNOWN
    assert result.valid is False
    assert result.canonical is None


@pytest.mark.parametrize(
    "raw",
    ["529.982.247-26", "111.111.111-11", "12.ABC.345/01DE-36", "00000000000000", "5299822472", "52998224"],
)
def test_reasons_never_contain_the_document(raw: str) -> None:
    """LGPD: a reason is a fixed phrase and never carries a run of the document's digits."""
    reason = normalize_document(raw).reason or ""
    assert reason in REASONS
    assert re.sub(r"[^0-9A-Za-z]", "", raw) not in reason
    assert not re.search(r"[0-9]{3,}", reason)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("52998224725", "***.982.247-**"),
        ("529.982.247-25", "***.982.247-**"),
        ("529.982.247-26", "***.982.247-**"),
        ("1234567890", "***.345.678-**"),
        ("11.222.333/0001-81", "**.***.333/0001-**"),
        ("12.ABC.345/01DE-35", "**.***.345/01DE-**"),
        ("12abc34501de35", "**.***.345/01DE-**"),
    ],
)
def test_mask_document_keeps_only_the_middle(value: str, masked: str) -> None:
    """Logs see the middle of a CPF/CNPJ, never its first block or check digits."""
    assert mask_document(value) == masked


@pytest.mark.parametrize("value", [None, "", "abc", "12345", "529.982.247-255", "12.ABC.345/01DE-AB"])
def test_mask_document_hides_anything_else_entirely(value: str | None) -> None:
    """Values that are not shaped like a document are masked as `***`."""
    assert mask_document(value) == "***"


@pytest.mark.parametrize("value", ["52998224725", "11222333000181", "12ABC34501DE35", "01234567890"])
def test_mask_never_reveals_the_whole_number(value: str) -> None:
    """The masked text holds fewer than half of the document's characters."""
    masked = mask_document(value)
    visible = re.sub(r"[^0-9A-Z]", "", masked)
    assert value not in masked
    assert len(visible) <= len(value) // 2 + 2
    assert masked.count("*") >= 4


def test_random_strings_never_raise_and_keep_invariants() -> None:
    """Fuzz: any text gives a consistent result (valid ⇒ formatted; unknown ⇒ no canonical)."""
    rng = random.Random(20260701)
    alphabet = string.printable + "áçÃ°º–—０１２３４５６７８９\u200b\x00"
    for _ in range(3000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        result = normalize_document(raw)
        masked = mask_document(raw)
        assert result.reason in REASONS | {None}
        assert result.valid == (result.reason is None)
        if result.valid:
            assert result.formatted is not None
            assert result.kind is not DocumentKind.UNKNOWN
        if result.kind is DocumentKind.UNKNOWN:
            assert result.canonical is None
            assert masked == "***"
        else:
            assert result.canonical is not None
            assert result.canonical not in masked


def test_random_digit_strings_of_document_length_classify_by_length() -> None:
    """Fuzz: 11 random digits are always a CPF, 14 always a CNPJ, valid or not."""
    rng = random.Random(7)
    for _ in range(500):
        digits11 = "".join(rng.choice(string.digits) for _ in range(11))
        digits14 = "".join(rng.choice(string.digits) for _ in range(14))
        assert normalize_document(digits11).kind is DocumentKind.CPF
        assert normalize_document(digits14).kind is DocumentKind.CNPJ
        assert normalize_document(digits11).valid == (cpf.is_valid(digits11) and len(set(digits11)) > 1)
