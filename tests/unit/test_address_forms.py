"""The address forms of issue 25 read by the rules: hyphen-glued numbers and complements, bairros in
parentheses, roads with Km, Quadra/Lote, Conjunto, rural addresses, and the UF taken from the CEP."""

from __future__ import annotations

import pytest

from src.domain.address_rules import MAX_INPUT_CHARS, normalize_address_rules
from src.domain.addresses import NormalizedAddress

FIELDS = ("logradouro", "numero", "complemento", "bairro", "cidade", "uf", "cep")


def parts(address: NormalizedAddress) -> tuple[str | None, ...]:
    return tuple(getattr(address, name) for name in FIELDS)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "RUA DA GROENLANDIA-255 APTO 404 - SION - BELO HORIZONTE - MG",
            ("Rua da Groenlandia", "255", "Apto 404", "Sion", "Belo Horizonte", "MG", None),
        ),
        (
            "RUA TIBAU DO NORTE-25 - NOVA PARNAMIRIM - PARNAMIRIM - RN",
            ("Rua Tibau do Norte", "25", None, "Nova Parnamirim", "Parnamirim", "RN", None),
        ),
        (
            "AL. DOM PEDRO II-3189 - CENTRO - PORTO VELHO-RO",
            ("Alameda Dom Pedro II", "3189", None, "Centro", "Porto Velho", "RO", None),
        ),
    ],
)
def test_number_joined_to_the_street_by_a_hyphen_is_the_number(
    raw: str, expected: tuple[str | None, ...]
) -> None:
    """`STREET-255` ends the street name at the hyphen: 255 is the house number."""
    assert parts(normalize_address_rules(raw)) == expected


@pytest.mark.parametrize(
    ("raw", "numero", "complemento"),
    [
        ("AV ROMULO MAIORANA 1695-APTO 1903 - MARCO - BELEM - PA", "1695", "Apto 1903"),
        ("RUA BOA VISTA 1318-CS - ALECRIM - NATAL - RN", "1318", "Casa"),
        ("RUA PROJETADA 639-CASA - JARDIM BOTANICO - GOIANIA - GO", "639", "Casa"),
        ("RUA X 40-LT 7 - CENTRO - SANTAREM - PA", "40", "Lote 7"),
        ("AV JOAO XXIII 2000-BL B AP 304 - DISTRITO INDUSTRIAL - SAO LUIS - MA", "2000", "Bloco B Apto 304"),
    ],
)
def test_complement_glued_to_the_number_by_a_hyphen_is_a_complement(
    raw: str, numero: str, complemento: str
) -> None:
    """`1695-APTO 1903`: the number before the hyphen, the complement after it."""
    address = normalize_address_rules(raw)
    assert (address.numero, address.complemento) == (numero, complemento)


@pytest.mark.parametrize(
    ("raw", "logradouro"),
    [
        ("Rod. BR-101 km 30, Itajaí SC", "Rodovia BR-101"),
        ("ROD BR 116 KM 45 - ZONA RURAL - CARUARU - PE", "Rodovia BR-116"),
        ("Rodovia SP330 Km 12, Campinas - SP", "Rodovia SP-330"),
        ("Rua T-37, 3445, Setor Bueno, Goiânia/GO", "Rua T-37"),
        ("Rua C-140, Qd 300, Lt 12, Jardim América, Goiânia-GO", "Rua C-140"),
    ],
)
def test_road_codes_keep_their_hyphen_and_are_never_a_house_number(raw: str, logradouro: str) -> None:
    """`BR 116`, `SP330` and `T-37` are codes in the street's name, not a name and a number."""
    address = normalize_address_rules(raw)
    assert address.logradouro == logradouro
    assert address.numero in {None, "3445"}


def test_road_with_km_puts_the_km_in_the_complement() -> None:
    """On a road the Km locates the address; there is no house number unless one is written."""
    address = normalize_address_rules("ROD BR 116 KM 45,5 - ZONA RURAL - CARUARU - PE")
    assert parts(address) == ("Rodovia BR-116", None, "Km 45.5", "Zona Rural", "Caruaru", "PE", None)


@pytest.mark.parametrize(
    ("raw", "bairro"),
    [
        (
            "AV MELICIO MACHADO 1318-CS - ZONA DE EXPANSAO (ARUANA) - ARACAJU - SE",
            "Zona de Expansao (Aruana)",
        ),
        ("Av. Beira Mar 5200, Barra da Tijuca (Jardim Oceânico), Rio de Janeiro - RJ", None),
    ],
)
def test_bairro_in_parentheses_is_kept_whole(raw: str, bairro: str | None) -> None:
    """`Zona de Expansão (Aruana)` is one bairro, parentheses included."""
    expected = bairro or "Barra da Tijuca (Jardim Oceânico)"
    assert normalize_address_rules(raw).bairro == expected


@pytest.mark.parametrize(
    "raw",
    ["Rua X 10 (fundos), Centro, Campinas (SP)", "Rua X, 10, (fundos) Centro, Campinas, (SP)"],
)
def test_parentheses_holding_a_uf_or_a_complement_are_still_read_as_parts(raw: str) -> None:
    """A UF or a complement in parentheses is read as that part, not glued to a name."""
    address = normalize_address_rules(raw)
    assert parts(address) == ("Rua X", "10", "Fundos", "Centro", "Campinas", "SP", None)


def test_quadra_and_lote_are_a_complement_without_a_number() -> None:
    """Goiânia-style `Rua 15, Qd. 20, Lt. 8`: the plot is the complement, there is no house number."""
    address = normalize_address_rules("Rua 15, Qd. 20, Lt. 8, Setor Bueno, Goiânia - GO, 74210-050")
    assert parts(address) == ("Rua 15", None, "Quadra 20 Lote 8", "Setor Bueno", "Goiânia", "GO", "74210-050")


def test_conjunto_written_before_the_street_is_the_bairro() -> None:
    """`Conj. Hab. X, Rua 3, 120, Cidade`: the conjunto is the bairro, the street comes second."""
    address = normalize_address_rules("Conj. Hab. Jardim Primavera, Rua 3, 120, Teresina, PI")
    assert (address.logradouro, address.numero) == ("Rua 3", "120")
    assert (address.bairro, address.cidade) == ("Conjunto Habitacional Jardim Primavera", "Teresina")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "Sítio Boa Esperança, s/n, Zona Rural, Caruaru - PE",
            ("Sítio Boa Esperança", "S/N", None, "Zona Rural", "Caruaru", "PE", None),
        ),
        (
            "FAZENDA SANTA RITA S/N ZONA RURAL - UBERABA - MG",
            ("Fazenda Santa Rita", "S/N", None, "Zona Rural", "Uberaba", "MG", None),
        ),
        (
            "SITIO SAO JOAO ZONA RURAL SN GRAVATA PE",
            ("Sítio Sao Joao", "S/N", None, "Zona Rural", "Gravata", "PE", None),
        ),
        (
            "Chácara Recanto Verde, Zona Rural, Atibaia/SP",
            ("Chácara Recanto Verde", None, None, "Zona Rural", "Atibaia", "SP", None),
        ),
    ],
)
def test_rural_addresses_name_the_property_and_the_rural_zone(
    raw: str, expected: tuple[str | None, ...]
) -> None:
    """Sítio/Fazenda/Chácara are the logradouro type; `Zona Rural` is the bairro, commas or not."""
    assert parts(normalize_address_rules(raw)) == expected


def test_missing_uf_is_filled_from_the_cep_and_says_so() -> None:
    """The issue's example: no UF written, the CEP's Correios range gives SP and full confidence."""
    address = normalize_address_rules("Rua Tiradentes, 54; Barão Geraldo; Campinas CEP 13108-348")
    assert (address.bairro, address.cidade, address.uf, address.cep) == (
        "Barão Geraldo",
        "Campinas",
        "SP",
        "13108-348",
    )
    assert address.notes == ("uf SP inferred from cep 13108-348",)
    assert address.confidence == 1.0
    assert address.formatted.endswith("Campinas - SP, 13108-348")


def test_uf_contradicting_the_cep_is_kept_but_flagged_with_lower_confidence() -> None:
    """A written UF whose CEP is another state's: kept, confidence down by 0.3, reason in notes."""
    agreeing = normalize_address_rules("Rua Augusta 1500, Centro, Campinas, SP, 13010-100")
    address = normalize_address_rules("Rua Augusta 1500, Centro, Campinas, RJ, 13010-100")
    assert address.uf == "RJ"
    assert address.confidence == round(agreeing.confidence - 0.3, 2)
    assert address.notes == ("uf RJ contradicts cep 13010-100, which is in SP",)
    assert agreeing.notes == ()


def test_address_read_as_written_has_no_notes() -> None:
    """Notes appear only when something was inferred or doubted."""
    assert normalize_address_rules("Av. Paulista 1578, Bela Vista, São Paulo - SP, 01310-200").notes == ()


@pytest.mark.parametrize("size", [10_000, 100_000])
def test_long_input_is_cut_with_a_note_and_still_read(size: int) -> None:
    """10,000+ characters: the first MAX_INPUT_CHARS are read and the note says the rest was cut."""
    head = "Rua Augusta 1500, Consolação, São Paulo - SP, 01305-100, "
    address = normalize_address_rules(head + "x" * (size - len(head)))
    assert (address.logradouro, address.numero, address.uf, address.cep) == (
        "Rua Augusta",
        "1500",
        "SP",
        "01305-100",
    )
    assert address.notes[0] == f"input of {size} characters cut to its first {MAX_INPUT_CHARS}"


@pytest.mark.parametrize(
    "raw",
    [
        "Rua\x00 Augusta\x07 1500\x1b, Centro\u2028, Campinas\x7f - SP",
        "🏥 Rua Augusta 1500 🏠, Centro 👍🏽, Campinas - SP ❤️",
        "Rua\u200b Augusta\ufeff 1500, Centro, Campinas - SP",
    ],
)
def test_control_characters_and_emoji_are_dropped(raw: str) -> None:
    """Control characters, zero-width marks and emoji do not change what is read."""
    address = normalize_address_rules(raw)
    assert parts(address) == ("Rua Augusta", "1500", None, "Centro", "Campinas", "SP", None)
