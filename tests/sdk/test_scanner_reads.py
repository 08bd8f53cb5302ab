"""What third-party tools read, through Microsoft's own clients (issue #11).

- Graph: an azure-identity token for https://graph.microsoft.com/.default,
  then plain HTTPS GET /v1.0/domains (and the doubled slash Graph accepts).
- azure-mgmt-resource-subscriptions: subscriptions.list_locations.
- azure-mgmt-security: pricings, assessments, settings, security contacts,
  auto-provisioning, IoT security solutions, JIT policies.
- azure-mgmt-monitor (6.0.2, the last with diagnostic settings):
  subscription and resource diagnostic settings, activity log alerts.
- azure-mgmt-storage: blob and file service properties, and that
  geo-redundancy follows the SKU.
- azure-keyvault-keys: keys, key versions and rotation policies on the data
  plane, refused (403) without a data-plane role and served with one.
"""

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys import KeyClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.resource.subscriptions import SubscriptionClient
from azure.mgmt.security import SecurityCenter
from azure.mgmt.storage import StorageManagementClient

from conftest import client_kwargs

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def low(s):
    return (s or "").lower()


def val(x):
    """An SDK enum's wire value (or the string itself)."""
    return str(getattr(x, "value", x))


def rg_of(resource_id):
    parts = resource_id.split("/")
    return parts[[p.lower() for p in parts].index("resourcegroups") + 1]


def test_graph_domains(sim, cred, tenant):
    token = cred.get_token(GRAPH_SCOPE).token
    headers = {"Authorization": f"Bearer {token}"}
    for path in ("/v1.0/domains", "/v1.0//domains"):
        r = sim.http.get(sim.url + path, headers=headers, timeout=30)
        assert r.status_code == 200, (path, r.text)
        domains = r.json()["value"]
        for d in domains:
            assert {"id", "isDefault", "isInitial", "isVerified", "authenticationType"} <= set(d), d
        initial = [d for d in domains if d["isInitial"]]
        assert [d["id"] for d in initial] == [tenant["default_domain"]]
        assert sum(d["isDefault"] for d in domains) == 1
    r = sim.http.get(sim.url + "/v1.0/users", headers=headers, timeout=30)
    assert r.status_code == 404 and "innerError" in r.json()["error"], r.text


def test_locations(sim, cred, sub):
    sc = SubscriptionClient(cred, **client_kwargs(sim))
    regions = {l.name: l for l in sc.subscriptions.list_locations(sub["subscription_id"])}
    weu = regions["westeurope"]
    assert weu.metadata.paired_region[0].name == "northeurope"
    assert weu.metadata.region_type == "Physical"
    assert any(l.metadata.region_type == "Logical" for l in regions.values())


def test_defender_lists(sim, cred, subscriptions):
    tiers = []
    for s in subscriptions:
        sid = s["subscription_id"]
        sc = SecurityCenter(cred, sid, **client_kwargs(sim))
        plans = {p.name: p for p in sc.pricings.list(scope_id=f"subscriptions/{sid}").value}
        assert {"StorageAccounts", "KeyVaults", "CloudPosture"} <= set(plans)
        tiers.append(plans["StorageAccounts"].pricing_tier)
        for p in plans.values():
            assert p.pricing_tier in ("Standard", "Free"), p
            assert (p.sub_plan is None) or p.pricing_tier == "Standard", p
        names = [x.name for x in sc.settings.list()]
        assert names == ["MCAS", "WDATP", "Sentinel"], names
        contacts = list(sc.security_contacts.list())
        assert len(contacts) <= 1
        auto = list(sc.auto_provisioning_settings.list())
        assert [a.auto_provision for a in auto][0] in ("On", "Off")
        assert list(sc.iot_security_solution.list_by_subscription()) == []
        for policy in sc.jit_network_access_policies.list():
            assert policy.virtual_machines, policy
        for a in sc.assessments.list(scope=f"/subscriptions/{sid}"):
            assert a.status.code in ("Healthy", "Unhealthy", "NotApplicable"), a
            assert low(a.resource_details.id).startswith(f"/subscriptions/{low(sid)}/")
    assert "Standard" in tiers and "Free" in tiers, tiers


def test_monitor_diagnostic_settings_and_alerts(sim, cred, subscriptions):
    per_sub = []
    for s in subscriptions:
        sid = s["subscription_id"]
        mon = MonitorManagementClient(cred, sid, **client_kwargs(sim))
        settings = list(mon.subscription_diagnostic_settings.list())
        per_sub.append(len(settings))
        for d in settings:
            assert d.workspace_id and d.logs, d
        alerts = list(mon.activity_log_alerts.list_by_subscription_id())
        for a in alerts:
            assert a.condition.all_of and a.enabled in (True, False), a
        kv = KeyVaultManagementClient(cred, sid, **client_kwargs(sim))
        for v in kv.vaults.list_by_subscription():
            for d in mon.diagnostic_settings.list(resource_uri=v.id):
                assert d.logs and d.workspace_id, d
    assert 0 in per_sub and max(per_sub) >= 1, per_sub


def test_blob_and_file_services(sim, cred, sub):
    st = StorageManagementClient(cred, sub["subscription_id"], **client_kwargs(sim))
    accounts = list(st.storage_accounts.list())
    assert accounts
    for a in accounts:
        assert a.private_endpoint_connections is not None
        assert (a.secondary_location is not None) == ("GRS" in a.sku.name), (a.name, a.sku.name)
        rg = rg_of(a.id)
        blob = st.blob_services.get_service_properties(rg, a.name)
        assert blob.delete_retention_policy is not None and blob.delete_retention_policy.enabled in (True, False)
        assert blob.container_delete_retention_policy is not None
        files = st.file_services.get_service_properties(rg, a.name)
        assert files.share_delete_retention_policy is not None


def test_key_vault_data_plane(sim, cred, tenant, subscriptions, collector, vault_dns):
    vaults = []
    for s in subscriptions:
        kv = KeyVaultManagementClient(cred, s["subscription_id"], **client_kwargs(sim))
        vaults += list(kv.vaults.list_by_subscription())
    vault = next(
        v for v in vaults
        if v.properties.enable_rbac_authorization and v.properties.public_network_access != "Disabled"
    )
    client = KeyClient(vault_url=f"https://{vault.name}.vault.azure.net", credential=cred)
    with pytest.raises(HttpResponseError) as ei:
        list(client.list_properties_of_keys())
    assert ei.value.status_code == 403, str(ei.value)

    grant = {"principal_id": collector["object_id"], "role": "Key Vault Reader", "scope": vault.id}
    sim.post("/_sim/role-assignments", grant)
    try:
        keys = list(client.list_properties_of_keys())
        sid = vault.id.split("/")[2]
        kvm = KeyVaultManagementClient(cred, sid, **client_kwargs(sim))
        arm_keys = {k.name: k for k in kvm.keys.list(rg_of(vault.id), vault.name)}
        assert {k.name for k in keys} == set(arm_keys)
        for k in keys:
            versions = list(client.list_properties_of_key_versions(k.name))
            current = arm_keys[k.name].properties.key_uri_with_version.rsplit("/", 1)[-1]
            assert current in {v.version for v in versions}
            policy = client.get_key_rotation_policy(k.name)
            actions = [val(a.action) for a in policy.lifetime_actions]
            assert set(actions) <= {"Rotate", "Notify"}, actions
            arm_policy = arm_keys[k.name].properties.rotation_policy
            if arm_policy is not None and arm_policy.lifetime_actions:
                # ARM spells the actions lower-case, the data plane capitalised.
                arm_actions = [val(a.action.type) for a in arm_policy.lifetime_actions]
                assert set(arm_actions) <= {"rotate", "notify"}, arm_actions
                assert [a.lower() for a in actions] == arm_actions
    finally:
        r = sim.http.delete(sim.url + "/_sim/role-assignments", json=grant, timeout=30)
        assert r.status_code == 200, r.text
