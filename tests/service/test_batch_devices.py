"""The batch's device lock (`gateway.orders.batch.lock_senders`, on the DBAPI cursor) reads the
same Device values as `devices.store.lock_devices` (through Core), on SQLite and PostgreSQL,
read at once or queued in a pipeline and read after it."""

from __future__ import annotations

from sqlalchemy import Connection

from devices import store as device_store
from gateway.orders import batch
from tests.support.world import World
from wallet.prepared import pipelined


def test_the_cursors_device_lock_reads_what_core_reads(world: World) -> None:
    car = world.device("car", category="maintenance")
    pump = world.device("pump")
    assert car.act("suspend").status_code == 200
    ids = {car.id, pump.id, "dev_0000000000000000"}  # the last one is nobody

    def both(conn: Connection) -> None:
        cursors = batch.lock_senders(conn, {car.id}, ids - {car.id}, None)()
        core = device_store.lock_devices(conn, ids, lock={car.id})
        assert cursors == core
        with pipelined(conn):  # PostgreSQL: queued, read once the block has ended
            later = batch.lock_senders(conn, {car.id}, ids - {car.id}, None)
        assert later() == core
        assert set(cursors) == {car.id, pump.id}
        assert cursors[car.id].category == "maintenance" and cursors[pump.id].category is None
        assert cursors[car.id].status.value == "suspended"
        assert cursors[car.id].created_at.tzinfo is not None
        assert isinstance(cursors[car.id].attested, bool)

    world.ctx.db.run(both)
