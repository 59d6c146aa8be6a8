"""`kym demo`: a small fleet paying through a gateway, a script first, then free play.

run     run_demo: seeds the fleet, steps it, plays the owners, prints the summary
script  the scripted scenarios, what each order became (Story), the owners' desk
events  the owners' event streams (SSE, resumed with Last-Event-ID), which the desk decides from
view    a line per result as it arrives, the live balances, the summary's tables
"""
