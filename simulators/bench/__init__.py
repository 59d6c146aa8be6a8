"""`kym bench`: payments per second through a real gateway, broker and database.

    run     run_bench: starts `kym serve` in a child process on a temp dir, runs the load
    load    the load generator: SDK devices, pre-signed orders, sent flat out or at a rate
    report  the numbers of a run and how they are shown

The devices are device-SDK clients (`devices.sdk`), like any firmware: mutual TLS, journaled
orders, every result's signature verified. The gateway runs in its own process, so that the
load generator does not share its interpreter.
"""
