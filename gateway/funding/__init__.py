"""Funding (contract section 8): an owner's funding sources, automatic top-ups and instalments.

plan     pure: a source's `available`, the draw order, and how much each source moves
store    SQL: the sources' terms joined with their ledger balances
service  the owner's use cases over HTTP: create, list, top up
auto     steps 4 and 6 of a pay or hold: plan the draws, then move them with the payment
check    `kym ledger check`'s invariants for sources (and, through plan_check, for plans)
policy   the owner's instalment policy (stored and shown)
instalments  pure: fees, totals, instalment amounts, offer options, schedules
offers   pure: whether a pay gets an instalment offer, its options, agreed in advance or not
conversion  step 4's offer and the credit line paying a plan, inside the decision
plans    `open_plan` (the line lends the amount, the fee goes to the fee account) and the list
plan_store  SQL: plans and their instalments, claimed and marked by collections
dues     pure: which sources cover a collection, a plan's status, the daily retry
collect  due instalments for the housekeeper, and early repayment, whole or not at all
plan_check  `kym ledger check`'s invariants for plans, lines and fee accounts
"""
