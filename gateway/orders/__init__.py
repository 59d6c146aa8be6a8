"""Orders: what devices (over MQTT) and merchants (over HTTP) ask the gateway to do with money.

intake       step 1: decode, verify the signature, validate the schema (`Checked`, `KeyRing`)
batch        one transaction's working set: locked senders, their state, what to write
cache        a worker's copies of certificates, owners' settings, rules, mandates (`StateCache`)
decide       `decide_messages`: a worker's batch in one transaction; one `match` on the type
payments     pay and hold: device, rules, funds, consent, then the money
adjustments  capture, void and refund by the payee
merchants    a merchant's capture, void or refund over HTTP
approvals    the owner's decision on a waiting order, and its expiry
holds        holds nobody resolved in time
store        SQL: orders and results, the outbox, spend counters and payment scopes
"""
