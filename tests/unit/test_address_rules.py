"""Rule-based normalization of messy Brazilian addresses (pure domain, no I/O)."""

from __future__ import annotations

import random
import string
import time

import pytest

from src.domain.address_rules import normalize_address_rules
from src.domain.addresses import (
    CEP_PATTERN,
    UF_CODES,
    AddressSource,
    NormalizedAddress,
    format_address_line,
    validation_problems,
)

FIELDS = ("logradouro", "numero", "complemento", "bairro", "cidade", "uf", "cep")


def parts(address: NormalizedAddress) -> tuple[str | None, ...]:
    return tuple(getattr(address, name) for name in FIELDS)


# raw → (logradouro, numero, complemento, bairro, cidade, uf, cep)
EXAMPLES: list[tuple[str, tuple[str | None, ...]]] = [
    (
        "R. das Flores 123 ap 4, Centro, Sao Paulo - SP, 01310100",
        ("Rua das Flores", "123", "Apto 4", "Centro", "Sao Paulo", "SP", "01310-100"),
    ),
    (
        "av paulista, 1578 - bela vista - são paulo/sp cep 01310-200",
        ("Avenida Paulista", "1578", None, "Bela Vista", "São Paulo", "SP", "01310-200"),
    ),
    (
        "Trav. Sete de Setembro, s/n, Jardim América, Belo Horizonte, Minas Gerais",
        ("Travessa Sete de Setembro", "S/N", None, "Jardim América", "Belo Horizonte", "MG", None),
    ),
    (
        "Rod. BR-101 km 30, Itajaí SC 88300000",
        ("Rodovia BR-101", None, "Km 30", None, "Itajaí", "SC", "88300-000"),
    ),
    (
        "Estr. do Coco 1000 Lauro de Freitas BA",
        ("Estrada do Coco", "1000", None, None, "Lauro de Freitas", "BA", None),
    ),
    (
        "Pç. da Sé, 10, Sé, SP",
        ("Praça da Sé", "10", None, None, "Sé", "SP", None),
    ),
    (
        "AL. SANTOS,45,CJ 12,JARDIM PAULISTA,SAO PAULO,SP",
        ("Alameda Santos", "45", "Conjunto 12", "Jardim Paulista", "Sao Paulo", "SP", None),
    ),
]

MORE_EXAMPLES: list[tuple[str, tuple[str | None, ...]]] = [
    (
        "RUA DOS TRÊS IRMÃOS 201 APTO 12 BLOCO 3 VILA PROGREDIOR SAO PAULO SP 05615-190",
        ("Rua dos Três Irmãos", "201", "Apto 12 Bloco 3", "Vila Progredior", "Sao Paulo", "SP", "05615-190"),
    ),
    (
        "Av. Sete de Setembro, 1234/apto 56, Salvador-BA",
        ("Avenida Sete de Setembro", "1234", "Apto 56", None, "Salvador", "BA", None),
    ),
    (
        "Rua Gal. Osório 88 - Centro - Porto Alegre/RS",
        ("Rua General Osório", "88", None, "Centro", "Porto Alegre", "RS", None),
    ),
    (
        "Tv. Frei Gil 12 cs 3, Bairro: Nazaré, Belém, PA",
        ("Travessa Frei Gil", "12", "Casa 3", "Nazaré", "Belém", "PA", None),
    ),
    (
        "rua xv de novembro, nº 50, sala 3, centro, curitiba-pr",
        ("Rua XV de Novembro", "50", "Sala 3", "Centro", "Curitiba", "PR", None),
    ),
    (
        "Av. N. Sra. de Copacabana 1000 apto 501 bl B Copacabana Rio de Janeiro RJ 22020-001",
        (
            "Avenida Nossa Senhora de Copacabana",
            "1000",
            "Apto 501 Bloco B",
            "Copacabana",
            "Rio de Janeiro",
            "RJ",
            "22020-001",
        ),
    ),
    (
        "Rua Pio XII 30 fundos, Jd. Europa, Campinas, SP",
        ("Rua Pio XII", "30", "Fundos", "Jardim Europa", "Campinas", "SP", None),
    ),
    (
        "Av. Pres. Vargas, 1.500, 3º andar, Centro, Rio de Janeiro",
        ("Avenida Presidente Vargas", "1500", "3º Andar", "Centro", "Rio de Janeiro", "RJ", None),
    ),
    (
        "Rua da Paz, sem número, Vila Nova, Recife, Pernambuco",
        ("Rua da Paz", "S/N", None, "Vila Nova", "Recife", "PE", None),
    ),
    (
        "Rua Olho d'Água 12, casa 2, Bairro Centro, Natal RN",
        ("Rua Olho d'Água", "12", "Casa 2", "Centro", "Natal", "RN", None),
    ),
    (
        "Endereço: Av.Brasil,2000(fundos) - Jd.América - Rio Claro/SP - 13506-000",
        ("Avenida Brasil", "2000", "Fundos", "Jardim América", "Rio Claro", "SP", "13506-000"),
    ),
    (
        "Rua Joaquim Floriano, 466, Itaim Bibi, São Paulo, SP, 04534-002, Brasil",
        ("Rua Joaquim Floriano", "466", None, "Itaim Bibi", "São Paulo", "SP", "04534-002"),
    ),
    (
        "R Dr. Arnaldo 455 - Cerqueira César - São Paulo - SP - CEP 01246-903",
        ("Rua Doutor Arnaldo", "455", None, "Cerqueira César", "São Paulo", "SP", "01246-903"),
    ),
    (
        "Rua X, 10, Casa Verde, São Paulo, SP",
        ("Rua X", "10", None, "Casa Verde", "São Paulo", "SP", None),
    ),
    (
        "Lgo. do Machado 29, Catete, Rio de Janeiro - RJ",
        ("Largo do Machado", "29", None, "Catete", "Rio de Janeiro", "RJ", None),
    ),
    (
        "Pq. Dom Pedro II 1, Brás, São Paulo/SP",
        ("Parque Dom Pedro II", "1", None, "Brás", "São Paulo", "SP", None),
    ),
    (
        "Rua Marechal Deodoro n. 1200 sl 804 Centro Curitiba PR 80010-010",
        ("Rua Marechal Deodoro", "1200", "Sala 804", "Centro", "Curitiba", "PR", "80010-010"),
    ),
    (
        "rua 7 de setembro 45 apartamento 101 bloco c centro niterói rj",
        ("Rua 7 de Setembro", "45", "Apto 101 Bloco C", "Centro", "Niterói", "RJ", None),
    ),
    (
        "Av Brig. Faria Lima, 3477, 14º andar, Itaim Bibi, São Paulo - SP, 04538-133",
        ("Avenida Brigadeiro Faria Lima", "3477", "14º Andar", "Itaim Bibi", "São Paulo", "SP", "04538-133"),
    ),
    (
        "Avn. Boa Viagem 5000 apt. 1502, Boa Viagem, Recife - PE, 51021-000",
        ("Avenida Boa Viagem", "5000", "Apto 1502", "Boa Viagem", "Recife", "PE", "51021-000"),
    ),
    (
        "R. Sen. Pompeu, 100 - Centro, Fortaleza - Ceará",
        ("Rua Senador Pompeu", "100", None, "Centro", "Fortaleza", "CE", None),
    ),
    (
        "Rua da Consolação 222 cj12 Consolação São Paulo SP",
        ("Rua da Consolação", "222", "Conjunto 12", "Consolação", "São Paulo", "SP", None),
    ),
    (
        "Rua 25 de Março, 500, Centro, São Paulo/SP",
        ("Rua 25 de Março", "500", None, "Centro", "São Paulo", "SP", None),
    ),
    (
        "Praça XV de Novembro s/n Centro Florianópolis SC",
        ("Praça XV de Novembro", "S/N", None, "Centro", "Florianópolis", "SC", None),
    ),
    (
        "Rua X 10, Centro Histórico, Porto Alegre",
        ("Rua X", "10", None, "Centro Histórico", "Porto Alegre", None, None),
    ),
    (
        "SQS 308 Bloco C Apto 101, Asa Sul, Brasília - DF, 70355-030",
        ("SQS", "308", "Bloco C Apto 101", "Asa Sul", "Brasília", "DF", "70355-030"),
    ),
]


@pytest.mark.parametrize(("raw", "expected"), EXAMPLES)
def test_brief_examples_are_split_into_their_parts(raw: str, expected: tuple[str | None, ...]) -> None:
    """Each address from the brief comes out with the expected street, number, places, UF and CEP."""
    assert parts(normalize_address_rules(raw)) == expected


@pytest.mark.parametrize(("raw", "expected"), MORE_EXAMPLES)
def test_messy_real_world_addresses_are_split_into_their_parts(
    raw: str, expected: tuple[str | None, ...]
) -> None:
    """Upper-case, comma-less, abbreviated and labelled addresses still come out structured."""
    assert parts(normalize_address_rules(raw)) == expected


@pytest.mark.parametrize(("raw", "_expected"), EXAMPLES + MORE_EXAMPLES)
def test_formatted_line_and_source_follow_the_model_helpers(raw: str, _expected: object) -> None:
    """`formatted` is exactly `format_address_line` of the result, and the source is RULES."""
    address = normalize_address_rules(raw)
    assert address.formatted == format_address_line(address)
    assert address.source is AddressSource.RULES


def test_full_example_formats_in_correios_order() -> None:
    """The formatted line reads street, number, complement - bairro, cidade - UF, CEP."""
    address = normalize_address_rules("R. das Flores 123 ap 4, Centro, Sao Paulo - SP, 01310100")
    assert address.formatted == "Rua das Flores, 123, Apto 4 - Centro, Sao Paulo - SP, 01310-100"


@pytest.mark.parametrize(
    ("raw", "logradouro"),
    [
        ("R. Augusta 10", "Rua Augusta"),
        ("R Augusta 10", "Rua Augusta"),
        ("rua augusta 10", "Rua Augusta"),
        ("Av. Atlântica 10", "Avenida Atlântica"),
        ("AV ATLÂNTICA 10", "Avenida Atlântica"),
        ("Avn Atlântica 10", "Avenida Atlântica"),
        ("avenida atlântica 10", "Avenida Atlântica"),
        ("Trav. do Ouvidor 10", "Travessa do Ouvidor"),
        ("Tv. do Ouvidor 10", "Travessa do Ouvidor"),
        ("Al. Jaú 10", "Alameda Jaú"),
        ("Rod. Anhanguera 10", "Rodovia Anhanguera"),
        ("Estr. das Lágrimas 10", "Estrada das Lágrimas"),
        ("Est. das Lágrimas 10", "Estrada das Lágrimas"),
        ("Pç. da Liberdade 10", "Praça da Liberdade"),
        ("Pça. da Liberdade 10", "Praça da Liberdade"),
        ("Pc. da Liberdade 10", "Praça da Liberdade"),
        ("Praça da Liberdade 10", "Praça da Liberdade"),
        ("PRACA DA LIBERDADE 10", "Praça da Liberdade"),
        ("Lgo. do Arouche 10", "Largo do Arouche"),
        ("Vl. Olímpia 10", "Vila Olímpia"),
        ("Pq. do Ibirapuera 10", "Parque do Ibirapuera"),
        ("Bc. do Pinto 10", "Beco do Pinto"),
        ("Lad. da Misericórdia 10", "Ladeira da Misericórdia"),
    ],
)
def test_street_types_are_expanded(raw: str, logradouro: str) -> None:
    """Abbreviated street types become the full word, the rest is title-cased with accents kept."""
    assert normalize_address_rules(raw).logradouro == logradouro


@pytest.mark.parametrize(
    ("raw", "logradouro"),
    [
        ("Rua dos Andradas 10", "Rua dos Andradas"),
        ("RUA DA PAZ E DO AMOR 10", "Rua da Paz e do Amor"),
        ("rua sete de setembro 10", "Rua Sete de Setembro"),
        ("Rua E, 5", "Rua E"),
        ("Rua A, 5", "Rua A"),
        ("Rua Dom Pedro II, 1000", "Rua Dom Pedro II"),
        ("Av. Dr. Cardoso de Melo 1000", "Avenida Doutor Cardoso de Melo"),
        ("Rua Prof. Artur Ramos 10", "Rua Professor Artur Ramos"),
        ("Rua Cel. Oscar Porto 10", "Rua Coronel Oscar Porto"),
        ("Rua Sta. Ifigênia 10", "Rua Santa Ifigênia"),
        ("Rua do Pé 10", "Rua do Pé"),
        ("Rua Gal Costa 10", "Rua Gal Costa"),
        ("Rod. SP-330 km 12", "Rodovia SP-330"),
        ("Rua Guarda-Mor 10", "Rua Guarda-Mor"),
        ("Rua Sao Joao 10", "Rua Sao Joao"),
        ("Rua São João 10", "Rua São João"),
    ],
)
def test_names_are_title_cased_with_small_words_lower_case(raw: str, logradouro: str) -> None:
    """Connectors stay lower-case, codes and Roman numerals upper-case, and no accent is invented."""
    assert normalize_address_rules(raw).logradouro == logradouro


@pytest.mark.parametrize(
    ("raw", "numero"),
    [
        ("Rua X, 123", "123"),
        ("Rua X 123", "123"),
        ("Rua X, nº 123", "123"),
        ("Rua X n. 123", "123"),
        ("Rua X nº123", "123"),
        ("Rua X, numero 123", "123"),
        ("Rua X, número 123", "123"),
        ("Rua X, 1.578", "1578"),
        ("Rua X, 12A", "12A"),
        ("Rua X, 12-b", "12B"),
        ("Rua X, s/n", "S/N"),
        ("Rua X, S/N", "S/N"),
        ("Rua X, s/nº", "S/N"),
        ("Rua X, SN", "S/N"),
        ("Rua X s.n.", "S/N"),
        ("Rua X, sem número", "S/N"),
        ("Rua X, sem numero", "S/N"),
        ("Rua 25 de Março 500", "500"),
        ("Rua 10, 200", "200"),
    ],
)
def test_house_number_is_read_in_its_many_spellings(raw: str, numero: str) -> None:
    """Digits (with an optional letter) or S/N, whatever the marker before them."""
    assert normalize_address_rules(raw).numero == numero


def test_number_that_is_part_of_the_street_name_stays_in_the_name() -> None:
    """`Rua 25 de Março` keeps 25 in its name and has no number of its own."""
    address = normalize_address_rules("Rua 25 de Março, Centro, São Paulo, SP")
    assert address.logradouro == "Rua 25 de Março"
    assert address.numero is None


@pytest.mark.parametrize(
    ("raw", "complemento"),
    [
        ("Rua X 10 ap 4", "Apto 4"),
        ("Rua X 10 ap. 4", "Apto 4"),
        ("Rua X 10 apto 42", "Apto 42"),
        ("Rua X 10 apartamento 101", "Apto 101"),
        ("Rua X 10 apt 7", "Apto 7"),
        ("Rua X 10 ap4", "Apto 4"),
        ("Rua X 10 bl B", "Bloco B"),
        ("Rua X 10 bloco b", "Bloco B"),
        ("Rua X 10 cj 12", "Conjunto 12"),
        ("Rua X 10 conj. 12", "Conjunto 12"),
        ("Rua X 10 sala 3", "Sala 3"),
        ("Rua X 10 sl 3", "Sala 3"),
        ("Rua X 10 casa 2", "Casa 2"),
        ("Rua X 10 casa", "Casa"),
        ("Rua X 10 fundos", "Fundos"),
        ("Rua X 10 loja 1", "Loja 1"),
        ("Rua X 10, 3º andar", "3º Andar"),
        ("Rua X 10 apto 12 bloco 3", "Apto 12 Bloco 3"),
        ("Rua X, 10, ap 4, bl C", "Apto 4 Bloco C"),
        ("Rod. X km 30,5", "Km 30.5"),
        ("Rua X 10 ap nº 4", "Apto 4"),
    ],
)
def test_complements_are_spelled_out(raw: str, complemento: str) -> None:
    """Apartment, block, set, room, house, floor, km… come out with a full label and their id."""
    assert normalize_address_rules(raw).complemento == complemento


@pytest.mark.parametrize(
    ("raw", "uf"),
    [
        ("Rua X 10, Campinas, SP", "SP"),
        ("Rua X 10, Campinas, sp", "SP"),
        ("Rua X 10, Campinas/SP", "SP"),
        ("Rua X 10, Campinas-SP", "SP"),
        ("Rua X 10, Campinas - SP", "SP"),
        ("Rua X 10, Campinas (SP)", "SP"),
        ("Rua X 10, Campinas, S.P.", "SP"),
        ("Rua X 10 Campinas SP", "SP"),
        ("Rua X 10, Campinas, São Paulo", "SP"),
        ("Rua X 10, Manaus, Amazonas", "AM"),
        ("Rua X 10, Goiânia, Goiás", "GO"),
        ("Rua X 10, Goiânia, Goias", "GO"),
        ("Rua X 10, Vitória, Espírito Santo", "ES"),
        ("Rua X 10, Porto Alegre, RIO GRANDE DO SUL", "RS"),
        ("Rua X 10, Natal, Rio Grande do Norte", "RN"),
        ("Rua X 10, Brasília, Distrito Federal", "DF"),
        ("Rua X 10, São Luís, Maranhão", "MA"),
        ("Rua X 10 Lauro de Freitas Bahia", "BA"),
    ],
)
def test_uf_comes_from_a_code_or_a_state_name(raw: str, uf: str) -> None:
    """Two-letter codes in any case and state names with or without accents give the UF."""
    assert normalize_address_rules(raw).uf == uf


@pytest.mark.parametrize(
    "raw",
    [
        "Rua Bahia",
        "Rua Bahia 10",
        "Av. Rio Grande do Sul",
        "Rua Sergipe, 10",
        "Rua da Se",
        "Rua X 10, Jardim Paraná",
        "Rua X 10, Vila Bahia",
    ],
)
def test_state_names_inside_the_street_are_not_taken_as_the_uf(raw: str) -> None:
    """A street or bairro named after a state keeps its name and yields no UF."""
    address = normalize_address_rules(raw)
    assert address.uf is None
    assert address.logradouro is not None
    assert raw.split()[-1] in address.formatted


@pytest.mark.parametrize(
    ("raw", "places"),
    [
        ("Av. Paulista 1578, São Paulo", (None, "São Paulo", "SP")),
        ("Av. Paulista 1578, Bela Vista, São Paulo", ("Bela Vista", "São Paulo", "SP")),
        ("Rua X 10, Vila Mariana, São Paulo", ("Vila Mariana", "São Paulo", "SP")),
        ("Rua X 10, Centro, Rio de Janeiro", ("Centro", "Rio de Janeiro", "RJ")),
        ("Rua X 10, Copacabana, Rio de Janeiro", ("Copacabana", "Rio de Janeiro", "RJ")),
        ("Rua X 10, Centro, Campinas, São Paulo", ("Centro", "Campinas", "SP")),
        ("Rua X 10, Centro, Campinas, SP", ("Centro", "Campinas", "SP")),
    ],
)
def test_state_named_like_its_capital_is_the_city_unless_two_places_precede_it(
    raw: str, places: tuple[str | None, ...]
) -> None:
    """`São Paulo`/`Rio de Janeiro` at the end also name the city, unless bairro and city come before."""
    address = normalize_address_rules(raw)
    assert (address.bairro, address.cidade, address.uf) == places


def test_state_name_repeated_after_its_code_is_dropped() -> None:
    """`Belo Horizonte, Minas Gerais, MG` does not turn Minas Gerais into the city."""
    address = normalize_address_rules("Rua X 10, Savassi, Belo Horizonte, Minas Gerais, MG")
    assert (address.bairro, address.cidade, address.uf) == ("Savassi", "Belo Horizonte", "MG")


@pytest.mark.parametrize(
    ("raw", "cep"),
    [
        ("Rua X 10, Campinas, SP, 13010100", "13010-100"),
        ("Rua X 10, Campinas, SP, 13010-100", "13010-100"),
        ("Rua X 10, Campinas, SP, 13.010-100", "13010-100"),
        ("Rua X 10, Campinas, SP, CEP: 13010-100", "13010-100"),
        ("Rua X 10, Campinas, SP, cep 13010 100", "13010-100"),
        ("CEP 13010-100 Rua X 10, Campinas, SP", "13010-100"),
        ("Rua X 10, Campinas, SP, CEP 1301", None),
        ("Rua X 10, tel 99999-8888, Campinas", None),
    ],
)
def test_cep_is_found_anywhere_and_formatted(raw: str, cep: str | None) -> None:
    """A CEP in any spelling or position becomes `00000-000`; malformed ones are dropped."""
    address = normalize_address_rules(raw)
    assert address.cep == cep
    assert address.cidade == "Campinas"


@pytest.mark.parametrize(
    ("raw", "bairro"),
    [
        ("Rua X 10, Jd. Europa, Campinas, SP", "Jardim Europa"),
        ("Rua X 10, jd das Flores, Campinas, SP", "Jardim das Flores"),
        ("Rua X 10, Vl. Mariana, São Paulo, SP", "Vila Mariana"),
        ("Rua X 10, Pq. São Lucas, São Paulo, SP", "Parque São Lucas"),
        ("Rua X 10, Res. Alphaville, Barueri, SP", "Residencial Alphaville"),
        ("Rua X 10, Bairro: Boa Vista, Recife, PE", "Boa Vista"),
        ("Rua X 10, Jd. Europa", "Jardim Europa"),
        ("Rua X 10, Centro", "Centro"),
    ],
)
def test_bairro_prefixes_are_expanded(raw: str, bairro: str) -> None:
    """Jd./Vl./Pq./Res. open a bairro and are spelled out; a `Bairro:` label is dropped."""
    assert normalize_address_rules(raw).bairro == bairro


def test_extra_places_before_the_bairro_are_kept_in_the_complement() -> None:
    """A reference point written between number and bairro is not lost."""
    address = normalize_address_rules("Rua X, 10, perto do mercado, Centro, Campinas, SP")
    assert (address.bairro, address.cidade) == ("Centro", "Campinas")
    assert address.complemento == "Perto do Mercado"


def test_no_street_only_places_gives_no_logradouro() -> None:
    """`Centro, Campinas - SP` names places, not a street."""
    address = normalize_address_rules("Centro, Campinas - SP")
    assert parts(address) == (None, None, None, "Centro", "Campinas", "SP", None)


def test_complements_without_a_street_are_not_a_street() -> None:
    """`Quadra 5 Lote 10` is a complement, not a logradouro called Quadra."""
    address = normalize_address_rules("Quadra 5 Lote 10, Setor Sul, Goiânia GO 74083-010")
    assert address.logradouro is None
    assert address.complemento == "Quadra 5 Lote 10"
    assert (address.bairro, address.cidade, address.uf) == ("Setor Sul", "Goiânia", "GO")


def test_confidence_is_high_for_a_complete_address() -> None:
    """Street, number, city, UF and CEP together give a high confidence."""
    address = normalize_address_rules("Av. Paulista 1578, São Paulo, SP, 01310-200")
    assert address.confidence >= 0.9


def test_confidence_is_low_for_a_street_alone() -> None:
    """Only a street name is a weak result."""
    assert 0 < normalize_address_rules("Rua Augusta").confidence <= 0.3
    assert normalize_address_rules("Augusta").confidence < normalize_address_rules("Rua Augusta").confidence


def test_confidence_grows_as_parts_are_added() -> None:
    """Each part found raises the confidence."""
    steps = [
        "Rua Augusta",
        "Rua Augusta, 1500",
        "Rua Augusta, 1500, Campinas",
        "Rua Augusta, 1500, Campinas, SP",
        "Rua Augusta, 1500, Campinas, SP, 13010-100",
        "Rua Augusta, 1500, Centro, Campinas, SP, 13010-100",
    ]
    scores = [normalize_address_rules(raw).confidence for raw in steps]
    assert scores == sorted(scores)
    assert len(set(scores)) == len(scores)
    assert scores[-1] == 1.0


@pytest.mark.parametrize(("raw", "_expected"), EXAMPLES + MORE_EXAMPLES)
def test_structured_examples_pass_the_model_validation(raw: str, _expected: object) -> None:
    """Results with a street and a city satisfy `validation_problems` (CEP and UF well-formed)."""
    address = normalize_address_rules(raw)
    problems = validation_problems(address)
    if address.logradouro and address.cidade:
        assert problems == []
    else:
        assert problems


@pytest.mark.parametrize("raw", [None, "", "   ", "\n\t", "!!!", ",,,", "- / -", "CEP"])
def test_empty_input_gives_an_empty_address_with_zero_confidence(raw: str | None) -> None:
    """Nothing to read means no parts, an empty line and confidence 0."""
    address = normalize_address_rules(raw)
    assert parts(address) == (None,) * len(FIELDS)
    assert address.formatted == ""
    assert address.confidence == 0.0


@pytest.mark.parametrize(
    "raw",
    [
        "asdfghjkl",
        "12345",
        "ap 4",
        "???? ¿¿¿ ¡¡¡",
        "😀 rua 🏠 10",
        "Rua \x00\u200b\ufeff X 10",
        "Ｒｕａ Ｘ １０",
        "ул. Ленина, 10",
        "شارع 10",
    ],
)
def test_garbage_and_unicode_give_low_confidence_without_raising(raw: str) -> None:
    """Unreadable text is returned with a low confidence instead of an exception."""
    address = normalize_address_rules(raw)
    assert address.confidence <= 0.5
    assert address.uf is None
    assert address.cep is None


def test_full_width_and_invisible_characters_are_normalized() -> None:
    """Full-width letters/digits and zero-width characters read like plain text."""
    assert normalize_address_rules("Ｒ. Ａｕｇｕｓｔａ １０").logradouro == "Rua Augusta"
    assert normalize_address_rules("Rua\u200b Augusta, 1\u200b0").numero == "10"


@pytest.mark.parametrize(
    "raw",
    ["a" * 100_000, "Rua X, " * 20_000, "1 " * 50_000, "casa " * 10_000, "sp/" * 30_000, "-" * 50_000],
)
def test_very_long_input_is_cut_and_handled_quickly(raw: str) -> None:
    """Huge strings are cut to a bounded prefix, so one call stays fast."""
    started = time.perf_counter()
    address = normalize_address_rules(raw)
    assert time.perf_counter() - started < 0.5
    assert len(address.formatted) <= 1_000


def test_same_input_gives_the_same_result() -> None:
    """The normalizer is deterministic."""
    raw = "av paulista, 1578 - bela vista - são paulo/sp cep 01310-200"
    assert normalize_address_rules(raw) == normalize_address_rules(raw)


def test_random_strings_never_raise_and_keep_invariants() -> None:
    """Fuzz: random characters and shuffled address words never raise and stay well-formed."""
    rng = random.Random(20260701)
    alphabet = string.printable + "áéíóúãõâêôçÁÉÍÓÚÃÕÇºª°–—\u200b\u00a0\ufeff😀ﬁ①٣"
    words = [
        "rua", "R.", "av", "Av.", "nº", "s/n", "ap", "apto", "bl", "cj", "km", "SP", "rj", "bahia",
        "são paulo", "rio de janeiro", "cep", "01310-100", "12345678", "-", ",", "/", "jd.", "centro",
        "casa", "fundos", "andar", "3º", "sem", "número", "123", "de", "da", "Brasil", "bairro", "(", ")",
    ]  # fmt: skip
    for index in range(3000):
        if index % 2:
            raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        else:
            raw = rng.choice([" ", ",", " - ", "/"]).join(
                rng.choice(words) for _ in range(rng.randint(0, 14))
            )
        address = normalize_address_rules(raw)
        assert 0.0 <= address.confidence <= 1.0
        assert address.uf is None or address.uf in UF_CODES
        assert address.cep is None or CEP_PATTERN.match(address.cep)
        assert address.formatted == format_address_line(address)
        assert address == normalize_address_rules(raw)


def test_fifty_thousand_calls_stay_reasonably_fast() -> None:
    """A batch of 5,000 messy addresses takes well under the time an LLM would need for one."""
    samples = [raw for raw, _ in EXAMPLES + MORE_EXAMPLES]
    started = time.perf_counter()
    for index in range(5_000):
        normalize_address_rules(samples[index % len(samples)])
    assert time.perf_counter() - started < 10.0
