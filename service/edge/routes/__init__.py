"""HTTP routes, one module per area: `openai_api` (the relayed POST routes, outside Flask),
`models` (model lists and the legacy routes of the original service), `assessment`, `status`."""
