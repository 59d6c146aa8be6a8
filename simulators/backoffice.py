"""The people around the devices, over the HTTP API: the admin, owners and merchants.

Written against the contract (sections 2, 4 and 5) and nothing else, like any integrator's
back office. Every call raises `devices.sdk.ApiError` with the contract's code when refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devices.sdk import GatewayApi


@dataclass(frozen=True)
class Balance:
    """A wallet as GET .../wallet shows it; `available` is the balance less open holds
    (a merchant's wallet holds nothing back, and its answer has no `available`)."""

    balance_minor: int
    available_minor: int

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> Balance:
        balance = int(answer["balance"])
        return cls(balance, int(answer.get("available", balance)))


class Admin:
    """Creates owners, integrators and merchants with the admin token."""

    def __init__(self, api_url: str, admin_token: str) -> None:
        self.api = GatewayApi(api_url, admin_token)

    def create_owner(self, name: str, timezone: str = "Europe/Berlin") -> dict[str, Any]:
        return self._create("owners", {"name": name, "timezone": timezone})

    def create_integrator(self, name: str) -> dict[str, Any]:
        return self._create("integrators", {"name": name})

    def create_merchant(self, name: str, category: str, currency: str = "EUR") -> dict[str, Any]:
        return self._create("merchants", {"name": name, "category": category, "currency": currency})

    def close(self) -> None:
        self.api.close()

    def _create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self.api.request("POST", f"/v1/{kind}", body, expect=201)
        return answer


class Owner:
    """An owner: consents to devices, sets their rules and mandates, funds and approves."""

    def __init__(self, api_url: str, owner_id: str, api_key: str) -> None:
        self.id, self.api_key = owner_id, api_key
        self.api = GatewayApi(api_url, api_key)

    def approve_device(self, device_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/devices/{device_id}/approve")

    def set_rules(self, device_id: str, rules: dict[str, Any]) -> dict[str, Any]:
        """PUT the rules (`{"currency": "EUR"}` alone lets every payment within them through)."""
        return self._call("PUT", f"/v1/devices/{device_id}/rules", rules)

    def add_mandate(self, device_id: str, mandate: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/v1/devices/{device_id}/mandates", mandate, expect=201)

    def top_up(
        self, device_id: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> dict[str, Any]:
        body = {"amount": amount_minor, "currency": currency, "idempotency_key": idempotency_key}
        return self._call("POST", f"/v1/devices/{device_id}/wallet/top-ups", body, expect=201)

    def wallet(self, device_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/devices/{device_id}/wallet")

    def pending_approvals(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._call("GET", "/v1/approvals?status=pending")["items"]
        return items

    def decide(
        self, approval_id: str, approve: bool, instalments: int | None = None
    ) -> dict[str, Any]:
        """Approve or decline; approving an instalment offer names one of its counts."""
        body: dict[str, Any] = {"decision": "approve" if approve else "decline"}
        if instalments is not None:
            body["instalments"] = instalments
        return self._call("POST", f"/v1/approvals/{approval_id}", body)

    def add_funding_source(self, source: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/owners/me/funding-sources", source, expect=201)

    def funding_sources(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._call("GET", "/v1/owners/me/funding-sources")["items"]
        return items

    def top_up_source(
        self, source_id: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> dict[str, Any]:
        body = {"amount": amount_minor, "currency": currency, "idempotency_key": idempotency_key}
        return self._call("POST", f"/v1/funding-sources/{source_id}/top-ups", body, expect=201)

    def set_instalment_policy(self, policy: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", "/v1/owners/me/instalment-policy", policy)

    def instalment_plans(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._call("GET", "/v1/owners/me/instalment-plans")["items"]
        return items

    def close(self) -> None:
        self.api.close()

    def _call(self, method: str, path: str, body: Any = None, expect: int = 200) -> dict[str, Any]:
        answer: dict[str, Any] = self.api.request(method, path, body, expect=expect)
        return answer


class Merchant:
    """A merchant reading its wallet and payments."""

    def __init__(self, api_url: str, merchant_id: str, api_key: str, category: str) -> None:
        self.id, self.category = merchant_id, category
        self.api = GatewayApi(api_url, api_key)

    def wallet(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.api.request("GET", "/v1/merchants/me/wallet")
        return answer

    def close(self) -> None:
        self.api.close()
