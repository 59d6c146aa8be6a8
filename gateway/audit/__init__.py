"""The audit trail as a transparency log in the style of Certificate Transparency (RFC 9162).

log      pure Merkle tree: leaf and node hashes, frontier appends, proofs and their checks
entries  pure entry content and its RFC 8785 canonical bytes
heads    pure signed tree heads (JWS, typ `kym-tree-head`)
store    SQL: entries, stored nodes, the anchor row (size, root, frontier), signed heads
verify   `kym audit verify`: the whole log from its rows up
service  use cases: sign heads (housekeeper), serve heads and proofs, verify
"""
