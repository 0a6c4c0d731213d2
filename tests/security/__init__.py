"""Security tests: the API fuzzed from its own OpenAPI schema, and no personal data outside the store."""
