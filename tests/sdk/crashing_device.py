"""A device process for the crash test: connects, sends one pay, says which, then hangs.

python -m tests.sdk.crashing_device STATE_DIR BROKER_PORT
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from devices.sdk import DeviceClient


def main() -> None:
    state_dir, port = Path(sys.argv[1]), int(sys.argv[2])
    device = DeviceClient.from_state_dir(state_dir, "127.0.0.1", port)
    device.connect()
    order_id = device.pay("mer_fuel", 4242, "EUR", description="before the crash")
    print(order_id, flush=True)
    time.sleep(3600)  # the test kills us here, SIGKILL: no cleanup of any kind


if __name__ == "__main__":
    main()
