"""Evidence (contract section 9): what the gateway records when it decides a payment, the
bundle it hands out about one, and an offline verifier for such bundles.

consent     pure: the consent payload, `rules_sha256`, the `kym-consent` JWS
record      hooks in the decision's batch: the consent, and what each outbox row is about
bundle      the bundle's parts, read from the store, and who may have one
verify      offline: every check `kym evidence verify` makes, naming each that fails
"""
