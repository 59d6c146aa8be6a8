"""The KYM device SDK: what firmware and the simulators use to pay through the gateway.

Provision once (the integrator's API key registers the device's CSR; the key stays on the
device), then connect over mutual TLS and send signed orders::

    from pathlib import Path
    from devices.sdk import DeviceClient, GatewayApi, Registration, provision

    state = Path("/var/lib/my-car")
    with GatewayApi("https://kym.example", integrator_api_key) as api:
        provision(state, api, Registration(owner_id="own_1", kind="car", manufacturer="ACME",
                                           model="Roadster", serial_number="SN-42"))
    # ... the owner approves the device (POST /v1/devices/{id}/approve) ...
    with DeviceClient.from_state_dir(state, "mqtt.kym.example", 8883) as car:
        car.connect()                 # mTLS, persistent session, results topic subscribed
        # orders without a final result are re-sent by themselves, byte for byte, on
        # reconnect and every `resend_after` seconds (DeviceClient(..., resend_after=10))
        order_id = car.pay("mer_parking", 350, "EUR", description="2 h parking")
        result = car.wait_for_result(order_id, timeout_s=30)   # waits past pending_approval
        print(result.status, result.reason)

Every order is journaled (the exact signed JWS, fsynced) before it is published, so a retry
after a crash re-sends the same order and can never pay twice. Every result and event is
checked against the gateway's signing certificate (itself checked against GET /v1/ca once at
start); unsigned, forged or misaddressed ones are dropped and kept in `DeviceClient.dropped`.
"""

from devices.contract import orders_topic, results_topic
from devices.sdk.api import GatewayApi, Registered, Registration, provision, refresh_trust
from devices.sdk.client import DeviceClient, PreparedOrder
from devices.sdk.errors import (
    ApiError,
    ConnectFailed,
    IdentityMissing,
    ResultTimeout,
    SdkError,
    UntrustedGatewayCertificate,
)
from devices.sdk.identity import (
    Identity,
    KeyType,
    StatePaths,
    generate_key,
    load_private_key,
    make_csr,
    save_private_key,
)
from devices.sdk.journal import Journal
from devices.sdk.messages import Event, Funding, Result

__all__ = [
    "ApiError",
    "ConnectFailed",
    "DeviceClient",
    "Event",
    "Funding",
    "GatewayApi",
    "Identity",
    "IdentityMissing",
    "Journal",
    "KeyType",
    "PreparedOrder",
    "Registered",
    "Registration",
    "Result",
    "ResultTimeout",
    "SdkError",
    "StatePaths",
    "UntrustedGatewayCertificate",
    "generate_key",
    "load_private_key",
    "make_csr",
    "orders_topic",
    "provision",
    "refresh_trust",
    "results_topic",
    "save_private_key",
]
