"""Events for owners and merchants (contract section 7), delivered by webhooks and a stream.

envelope    pure: the event types, who gets which, the envelope and each event's data
collect     the events a decision transaction caused, read off its batch, written with it
thresholds  limit.nearly_reached and wallet.low_balance, from the same batch
store       SQL: the events outbox, webhooks, attempts still due and the delivery log
webhooks    add, list and delete webhooks; their delivery logs
ssrf        which webhook URLs may be reached (http(s) only; public addresses only)
delivery    the webhook delivery worker (a thread of `kym serve`, apart from the order path)
stream      the Server-Sent Events stream, reading the events table (every worker's events)
slots       how many streams each party holds open in this process, and the cap on them
metrics     the Prometheus metrics of `GET /metrics`
"""
