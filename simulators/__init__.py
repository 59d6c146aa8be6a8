"""Simulated devices, each built only on the device SDK (`devices.sdk`), like any firmware.

base        SimDevice: step(now) / act(now), a seeded RNG, results and events queued
car         Car: holds at pumps and chargers, pays parking and tolls, insurance (mandate)
stations    FuelPump, EvCharger: capture what was dispensed, void, refund
household   Fridge (large orders wait for approval), SmartMeter (monthly, mandate)
misbehaving MisbehavingDevice: replays, conflicts, forgeries, stale, over limit, garbage
backoffice  Admin, Owner, Merchant over the HTTP API
fleet       seed_fleet: parties, devices, rules, mandates, top-ups; connected simulators
metrics     Recorder and Summary: counts by status and reason, latency percentiles
population  run_population: an open-loop (fixed arrival rate) run; `python -m` runs it
"""
