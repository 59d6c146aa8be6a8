"""How many event streams (`GET /v1/events/stream`) each party holds open, and the cap on them.

An open stream costs the gateway for as long as it lasts: a read of the events table every
`stream.POLL_S`, a check of its credential every `stream.RECHECK_S` (each on a thread of the
pool that every synchronous route shares), and a connection. A party is refused one more than
MAX_STREAMS_PER_PARTY with 409 `too_many_streams`: the refusal is about the party's current
state (the streams it already holds), not about the request or its rate, and it lifts as soon
as one of them ends, which is what the contract's 409 says ("a conflict with the current
state"); a 429 would also tell a client to retry the same request later, while here the client
has to close a stream first, and 409 is the status every keyed operation already documents.

The count is per process: the slots live in the HTTP app (`create_app`), and `kym serve`
serves its API from one process, so the cap holds per `kym serve`. Several `kym serve`
processes sharing a database (behind a load balancer) each admit MAX_STREAMS_PER_PARTY, so a
party may hold that many times the number of processes in all. A slot is taken after the
caller is authenticated and authorised (401 and 403 come first) and given back when the
response ends however it ends (`stream.event_stream`): the client goes away, the credential is
withdrawn, the database fails, or the server stops (its tasks are cancelled).
"""

from __future__ import annotations

import threading

from gateway.errors import Conflict
from gateway.parties import Party

# Ten covers the console open in a few tabs (each tab holds one) and a few integrations
# listening at once, and bounds what one party can make the gateway do: 20 reads a second,
# instead of one key opening streams until the threads or the connections run out.
MAX_STREAMS_PER_PARTY = 10


class Slot:
    """One open stream's place; `release` gives it back (once, however often it is called)."""

    def __init__(self, slots: StreamSlots, party_id: str) -> None:
        self._slots, self._party_id = slots, party_id
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._slots.give_back(self._party_id)


class StreamSlots:
    """The open streams of each party in this process (routes take them in threads, the event
    loop gives them back: a lock keeps the counts)."""

    def __init__(self, cap: int = MAX_STREAMS_PER_PARTY) -> None:
        self.cap = cap
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, party: Party) -> Slot:
        """A slot for one more of the party's streams; 409 `too_many_streams` at the cap."""
        with self._lock:
            count = self._open.get(party.id, 0)
            if count >= self.cap:
                raise Conflict(
                    f"{party.described} may have at most {self.cap} event streams open at once, "
                    f"and you have {count}: close one (or wait for one to end), then open "
                    "this one again",
                    reason="too_many_streams",
                )
            self._open[party.id] = count + 1
        return Slot(self, party.id)

    def give_back(self, party_id: str) -> None:
        with self._lock:
            count = self._open.get(party_id, 0) - 1
            assert count >= 0, f"a stream slot of {party_id} given back twice"
            if count:
                self._open[party_id] = count
            else:
                self._open.pop(party_id, None)

    def open_for(self, party_id: str) -> int:
        """How many streams the party holds open in this process now."""
        with self._lock:
            return self._open.get(party_id, 0)
