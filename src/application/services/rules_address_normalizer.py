"""The deterministic address normalizer behind the `AddressNormalizer` port."""

from __future__ import annotations

from src.domain.address_rules import normalize_address_rules
from src.domain.addresses import NormalizedAddress


class RulesAddressNormalizer:
    """Rules only: used when no LLM is configured, and as the LLM's fallback."""

    uses_llm = False

    async def normalize(self, raw: str) -> NormalizedAddress:
        return normalize_address_rules(raw)
