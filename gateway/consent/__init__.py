"""Consent: what an owner allows their devices to pay, and the owner's say on each payment.

rules     the pure rules engine (step 3 of the decision) and the rules' JSON form
periods   calendar periods in the owner's timezone, as counter keys
mandates  standing consents, and whether an order needs the owner's approval (step 5)
store     SQL: rules, mandates and approvals
service   the owner's use cases over HTTP: rules, mandates, the approvals list
"""
