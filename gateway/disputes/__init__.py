"""Disputes (contract section 9): the payer's owner contests a payment, the payee answers, the
admin decides contested ones, and silence resolves it for the owner.

rules      pure: what may be disputed, until when, for how much, which step may follow which
store      SQL: the disputes table
service    the use cases, each one transaction with its refund, audit entries and events
"""
