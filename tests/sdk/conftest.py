"""Fixtures for running Microsoft's Python SDKs against `cloudkeep sim`.

The simulator's URL comes from SIM_URL and its CA from REQUESTS_CA_BUNDLE
(tests/sdk/run.sh sets both). Scenario facts come from the control API
(`/_sim/...`, no authentication), never from constants in the tests.
"""

import os
from urllib.parse import urlparse

import pytest
import requests
import urllib3.util.connection
from azure.identity import ClientSecretCredential

ARM_SCOPE = "https://management.azure.com/.default"


class Sim:
    """Plain HTTPS access to the simulator's control API."""

    def __init__(self, url, ca):
        self.url = url.rstrip("/")
        self.ca = ca
        self.http = requests.Session()
        self.http.verify = ca

    def get(self, path, **kw):
        r = self.http.get(self.url + path, timeout=30, **kw)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:500]}"
        return r.json()

    def post(self, path, body=None, expect=(200, 201, 204)):
        r = self.http.post(self.url + path, json=body, timeout=30)
        assert r.status_code in expect, f"POST {path} {body}: {r.status_code} {r.text[:500]}"
        return r.json() if r.content else None

    def scenario(self):
        return self.get("/_sim/scenario")

    def requests_since(self, seq):
        return self.get("/_sim/requests", params={"since": seq})

    def last_seq(self):
        log = self.requests_since(0)
        return max((e["seq"] for e in log), default=0)


@pytest.fixture(scope="session")
def sim():
    url = os.environ.get("SIM_URL")
    ca = os.environ.get("REQUESTS_CA_BUNDLE")
    if not url or not ca:
        pytest.fail("SIM_URL and REQUESTS_CA_BUNDLE must be set (run tests/sdk/run.sh)")
    s = Sim(url, ca)
    # Start from the seeded scenario: no faults, empty log, full buckets.
    s.post("/_sim/reset")
    return s


@pytest.fixture(scope="session")
def scenario(sim):
    return sim.scenario()


@pytest.fixture(scope="session")
def tenant(scenario):
    """The customer tenant that holds the standard principals."""
    for t in scenario["tenants"]:
        if any(p["key"] == "collector" for p in t.get("service_principals", [])):
            return t
    pytest.fail("no tenant in the scenario has a service principal with key 'collector'")


def principal(tenant, key):
    for p in tenant.get("service_principals", []):
        if p["key"] == key:
            return p
    pytest.fail(f"no service principal with key {key!r} in tenant {tenant['tenant_id']}")


@pytest.fixture(scope="session")
def subscriptions(tenant):
    subs = tenant["subscriptions"]
    assert subs, "the tenant has no subscriptions"
    return subs


@pytest.fixture(scope="session")
def sub(subscriptions):
    """The subscription most tests use (the throttling test uses the last one)."""
    return subscriptions[0]


def make_credential(sim, tenant, key):
    p = principal(tenant, key)
    return ClientSecretCredential(
        tenant["tenant_id"],
        p["client_id"],
        p["client_secret"],
        authority=sim.url,
        disable_instance_discovery=True,
    )


@pytest.fixture(scope="session")
def collector(tenant):
    return principal(tenant, "collector")


@pytest.fixture(scope="session")
def cred(sim, tenant):
    return make_credential(sim, tenant, "collector")


def client_kwargs(sim, **extra):
    kw = {"base_url": sim.url, "credential_scopes": [ARM_SCOPE]}
    kw.update(extra)
    return kw


@pytest.fixture(scope="session")
def vault_dns(sim):
    """Resolves `*.vault.azure.net` to the simulator, as `curl --resolve`
    would: the SDK keeps its real vault URL (the challenge check compares
    host names), only the TCP connection goes to the simulator's address.
    urllib3 looks `create_connection` up on its module at every connect."""
    target = urlparse(sim.url)
    original = urllib3.util.connection.create_connection

    def resolve(address, *args, **kwargs):
        host, port = address
        if host.lower().endswith(".vault.azure.net"):
            address = (target.hostname, target.port)
        return original(address, *args, **kwargs)

    urllib3.util.connection.create_connection = resolve
    yield
    urllib3.util.connection.create_connection = original
