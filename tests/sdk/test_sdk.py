"""Conformance: Microsoft's own Python SDKs against `cloudkeep sim`.

Every answer is checked against the scenario (`GET /_sim/scenario`) or the
control API. The throttling test runs last and uses the last subscription so
that it does not starve the others.
"""

import datetime
import math
import time

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.costmanagement import CostManagementClient
from azure.mgmt.costmanagement import models as cm_models
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.subscriptions import SubscriptionClient
from azure.mgmt.security import SecurityCenter
from azure.mgmt.storage import StorageManagementClient

from conftest import ARM_SCOPE, client_kwargs, make_credential, principal

# Built-in role definition ids (shared/AZURE.md).
ROLE_IDS = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "Security Reader": "39bc4728-0917-49c7-9d2c-d95423bc2eb4",
    "Tag Contributor": "4a9ae827-6dc8-4573-8ac7-8239d42aa03f",
    "Cost Management Reader": "72fafb9e-0641-4937-9268-a91bfd8191a3",
}
COLLECTOR_ROLES = {"Reader", "Security Reader", "Cost Management Reader", "Tag Contributor"}


def low(s):
    return (s or "").lower()


def sub_scope(sub):
    return f"/subscriptions/{sub['subscription_id']}"


def tags_of(x):
    """Tags as a dict; missing, null and [] all mean no tags."""
    return dict(x or {})


def resource_group_of(resource_id):
    parts = resource_id.split("/")
    i = [p.lower() for p in parts].index("resourcegroups")
    return parts[i + 1]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def rm(sim, cred, sub):
    return ResourceManagementClient(cred, sub["subscription_id"], **client_kwargs(sim))


@pytest.fixture(scope="module")
def all_resources(rm):
    return list(rm.resources.list(top=50))


# ---------------------------------------------------------------- tokens


def test_token_is_bearer_and_usable(sim, cred, sub):
    tok = cred.get_token(ARM_SCOPE)
    assert tok.token, "empty access token"
    now = time.time()
    assert now + 60 < tok.expires_on <= now + 24 * 3600, f"odd expiry {tok.expires_on - now:.0f}s"
    r = sim.http.get(
        f"{sim.url}/subscriptions",
        params={"api-version": "2022-12-01"},
        headers={"Authorization": f"Bearer {tok.token}"},
    )
    assert r.status_code == 200, r.text


def test_wrong_secret_is_rejected(sim, tenant):
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ClientSecretCredential

    p = principal(tenant, "collector")
    bad = ClientSecretCredential(
        tenant["tenant_id"], p["client_id"], p["client_secret"] + "x",
        authority=sim.url, disable_instance_discovery=True,
    )
    with pytest.raises(ClientAuthenticationError) as ei:
        bad.get_token(ARM_SCOPE)
    assert "AADSTS7000215" in str(ei.value), str(ei.value)


# ---------------------------------------------------------------- subscriptions


def test_subscriptions_match_scenario(sim, cred, tenant):
    sc = SubscriptionClient(cred, **client_kwargs(sim))
    got = {low(s.subscription_id): s for s in sc.subscriptions.list()}
    want = {low(s["subscription_id"]): s for s in tenant["subscriptions"]}
    assert set(got) == set(want)
    for sid, s in got.items():
        assert s.display_name == want[sid]["display_name"]
        assert low(s.id) == f"/subscriptions/{sid}"
        assert low(s.tenant_id) == low(tenant["tenant_id"])
        assert s.state == "Enabled"


def test_tenants_list(sim, cred, tenant):
    sc = SubscriptionClient(cred, **client_kwargs(sim))
    tenants = list(sc.tenants.list())
    mine = [t for t in tenants if low(t.tenant_id) == low(tenant["tenant_id"])]
    assert len(mine) == 1, [t.tenant_id for t in tenants]
    t = mine[0]
    assert low(t.id) == f"/tenants/{low(tenant['tenant_id'])}"
    assert t.display_name == tenant["display_name"]
    assert tenant["default_domain"] in (t.domains or [])
    assert t.default_domain == tenant["default_domain"]


def test_no_access_principal_sees_no_subscriptions(sim, tenant):
    cred = make_credential(sim, tenant, "no-access")
    sc = SubscriptionClient(cred, **client_kwargs(sim))
    assert list(sc.subscriptions.list()) == []


# ---------------------------------------------------------------- resources


def test_resources_page_and_count(rm, sub):
    pages = [list(p) for p in rm.resources.list(top=50).by_page()]
    items = [r for p in pages for r in p]
    assert len(items) == sub["resource_count"]
    assert all(len(p) <= 50 for p in pages), [len(p) for p in pages]
    assert len(pages) >= math.ceil(sub["resource_count"] / 50), [len(p) for p in pages]
    ids = [low(r.id) for r in items]
    assert len(set(ids)) == len(ids), "duplicate resources across pages"
    prefix = f"/subscriptions/{low(sub['subscription_id'])}/resourcegroups/"
    for r in items:
        assert low(r.id).startswith(prefix), r.id
        assert r.name and r.type and r.location, r.id
        # Child resources are named "parent/child" (e.g. servers/databases).
        assert low(r.id).endswith("/" + low(r.name).split("/")[-1]), (r.id, r.name)


def test_resource_groups(rm, sub, all_resources):
    groups = list(rm.resource_groups.list())
    assert len(groups) == sub["resource_group_count"]
    names = {low(g.name) for g in groups}
    for g in groups:
        assert low(g.id) == f"/subscriptions/{low(sub['subscription_id'])}/resourcegroups/{low(g.name)}"
        assert g.location
    for r in all_resources:
        assert low(resource_group_of(r.id)) in names, r.id


# ---------------------------------------------------------------- tags


def test_tags_read_merge_delete_and_out_of_band(sim, rm, all_resources, collector):
    res = all_resources[0]
    rid = res.id
    before = tags_of(res.tags)

    got = rm.tags.get_at_scope(rid)
    assert tags_of(got.properties.tags) == before
    assert low(got.id) == low(rid + "/providers/Microsoft.Resources/tags/default")

    seq = sim.last_seq()
    merged = rm.tags.begin_update_at_scope(
        rid, {"operation": "Merge", "properties": {"tags": {"ck-sdk": "merged", "ck-sdk-2": "two"}}}
    ).result()
    want = dict(before, **{"ck-sdk": "merged", "ck-sdk-2": "two"})
    assert tags_of(merged.properties.tags) == want
    assert tags_of(rm.tags.get_at_scope(rid).properties.tags) == want

    # The simulator's request log saw the PATCH, by the collector, answered 2xx.
    log = sim.requests_since(seq)
    patches = [e for e in log if e["method"] == "PATCH" and low(e["path"]).endswith("/providers/microsoft.resources/tags/default")]
    assert patches, log
    assert 200 <= patches[-1]["status"] < 300
    who = {collector["object_id"], collector["client_id"], collector["display_name"], collector["key"]}
    assert patches[-1]["principal"] in who, patches[-1]

    deleted = rm.tags.begin_update_at_scope(
        rid, {"operation": "Delete", "properties": {"tags": {"ck-sdk-2": "two"}}}
    ).result()
    want.pop("ck-sdk-2")
    assert tags_of(deleted.properties.tags) == want
    assert tags_of(rm.tags.get_at_scope(rid).properties.tags) == want

    # A fresh list shows the same tags on the resource.
    listed = {low(r.id): r for r in rm.resources.list(top=50)}
    assert tags_of(listed[low(rid)].tags) == want

    # Out of band (as in the portal), seen through the SDK.
    sim.post("/_sim/tags", {"resource_id": rid, "operation": "Merge", "tags": {"ck-portal": "yes"}})
    want["ck-portal"] = "yes"
    assert tags_of(rm.tags.get_at_scope(rid).properties.tags) == want
    sim.post("/_sim/tags", {"resource_id": rid, "operation": "Delete", "tags": {"ck-portal": "yes"}})
    want.pop("ck-portal")
    assert tags_of(rm.tags.get_at_scope(rid).properties.tags) == want

    # Back to how it was.
    sim.post("/_sim/tags", {"resource_id": rid, "operation": "Replace", "tags": before})
    assert tags_of(rm.tags.get_at_scope(rid).properties.tags) == before


def test_reader_only_cannot_write_tags(sim, tenant, sub, all_resources, rm):
    rid = all_resources[0].id
    before = tags_of(rm.tags.get_at_scope(rid).properties.tags)
    cred = make_credential(sim, tenant, "reader-only")
    ro = ResourceManagementClient(cred, sub["subscription_id"], **client_kwargs(sim))
    # Reading is allowed.
    assert tags_of(ro.tags.get_at_scope(rid).properties.tags) == before
    with pytest.raises(HttpResponseError) as ei:
        ro.tags.begin_update_at_scope(
            rid, {"operation": "Merge", "properties": {"tags": {"ck-denied": "x"}}}
        ).result()
    e = ei.value
    assert e.status_code == 403, (e.status_code, str(e))
    assert e.error is not None and e.error.code == "AuthorizationFailed", str(e)
    assert tags_of(rm.tags.get_at_scope(rid).properties.tags) == before


# ---------------------------------------------------------------- cost


def _query_all_pages(cm, scope, body):
    """query.usage for the first page, then POST the same body to each nextLink."""
    first = cm.query.usage(scope, body)
    assert first is not None, "query answered 204 (no content)"
    columns = [c.name for c in first.properties.columns]
    pages = [first.properties.rows or []]
    next_link = first.properties.next_link
    wire_body = body.as_dict()  # the same JSON query.usage sent
    seen = set()
    while next_link:
        assert next_link not in seen, f"nextLink loops: {next_link}"
        seen.add(next_link)
        assert next_link.startswith("https://"), next_link
        resp = cm.send_request(HttpRequest("POST", next_link, json=wire_body))
        assert resp.status_code == 200, f"POST {next_link}: {resp.status_code} {resp.text()[:500]}"
        page = resp.json()["properties"]
        assert [c["name"] for c in page["columns"]] == columns, "columns differ between pages"
        pages.append(page.get("rows") or [])
        next_link = page.get("nextLink")
    return columns, pages


def _col(columns, *names):
    lowered = [c.lower() for c in columns]
    for n in names:
        if n.lower() in lowered:
            return lowered.index(n.lower())
    pytest.fail(f"none of {names} in columns {columns}")


def test_cost_query_pages(sim, cred, sub, scenario):
    cm = CostManagementClient(cred, **client_kwargs(sim))
    today = datetime.date.fromisoformat(scenario["today"])
    start = today - datetime.timedelta(days=30)
    end = today - datetime.timedelta(days=1)
    utc = datetime.timezone.utc
    period = cm_models.QueryTimePeriod(
        from_property=datetime.datetime(start.year, start.month, start.day, tzinfo=utc),
        to=datetime.datetime(end.year, end.month, end.day, 23, 59, 59, tzinfo=utc),
    )
    agg = {"totalCost": cm_models.QueryAggregation(name="Cost", function="Sum")}
    grouped = cm_models.QueryDefinition(
        type="ActualCost", timeframe="Custom", time_period=period,
        dataset=cm_models.QueryDataset(
            granularity="Daily", aggregation=agg,
            grouping=[cm_models.QueryGrouping(type="Dimension", name="ResourceId")],
        ),
    )
    scope = sub_scope(sub)
    columns, pages = _query_all_pages(cm, scope, grouped)
    assert len(pages) > 1, f"expected several pages, got {len(pages)} ({[len(p) for p in pages]} rows)"
    assert all(pages[:-1]), "an empty page before the last (allowed by Azure, but not expected here)"
    rows = [r for p in pages for r in p]
    i_cost = _col(columns, "Cost", "PreTaxCost", "totalCost")
    i_date = _col(columns, "UsageDate")
    i_rid = _col(columns, "ResourceId")

    lo, hi = int(start.strftime("%Y%m%d")), int(end.strftime("%Y%m%d"))
    keys = set()
    per_day = {}
    for r in rows:
        assert len(r) == len(columns), (columns, r)
        cost, day, rid = r[i_cost], r[i_date], r[i_rid]
        assert isinstance(cost, (int, float)) and cost >= 0, r
        assert isinstance(day, int) and lo <= day <= hi, r
        # Charges without a resource (support, marketplace) carry "" as in Azure.
        assert rid == "" or low(rid).startswith(sub_scope(sub).lower() + "/"), r
        assert (day, low(rid)) not in keys, f"row repeated across pages: {r}"
        keys.add((day, low(rid)))
        per_day[day] = per_day.get(day, 0.0) + cost
    total = sum(per_day.values())
    assert total > 0
    assert len(per_day) > 1
    assert len({k[1] for k in keys if k[1]}) > 1

    # The same period without grouping gives the same daily totals.
    flat = cm_models.QueryDefinition(
        type="ActualCost", timeframe="Custom", time_period=period,
        dataset=cm_models.QueryDataset(granularity="Daily", aggregation=agg),
    )
    fcols, fpages = _query_all_pages(cm, scope, flat)
    f_cost, f_date = _col(fcols, "Cost", "PreTaxCost", "totalCost"), _col(fcols, "UsageDate")
    flat_days = {}
    for r in (r for p in fpages for r in p):
        flat_days[r[f_date]] = flat_days.get(r[f_date], 0.0) + r[f_cost]
    assert set(flat_days) == set(per_day)
    for day, v in flat_days.items():
        assert math.isclose(v, per_day[day], rel_tol=1e-6, abs_tol=1e-6), (day, v, per_day[day])


# ---------------------------------------------------------------- role assignments


def _role_guid(role_definition_id):
    return low(role_definition_id.rstrip("/").split("/")[-1])


def test_role_assignments(sim, cred, sub, tenant, collector):
    assert {r["role"] for r in collector["roles"]} >= COLLECTOR_ROLES
    for r in collector["roles"]:
        if r["role"] in ROLE_IDS:
            assert low(r["role_definition_id"]).endswith(ROLE_IDS[r["role"]]), r

    am = AuthorizationManagementClient(cred, sub["subscription_id"], **client_kwargs(sim))
    scope = sub_scope(sub)
    listed = list(am.role_assignments.list_for_subscription(filter="atScope()"))
    assert listed
    for a in listed:
        assert low(a.id).startswith(low(a.scope).rstrip("/") + "/providers/microsoft.authorization/roleassignments/"), a.id
        assert "/providers/microsoft.authorization/roledefinitions/" in low(a.role_definition_id), a.role_definition_id
        # atScope(): assignments at this scope or above it, none below.
        assert low(scope).startswith(low(a.scope).rstrip("/")), a.scope

    def pairs(assignments):
        return {(low(a.principal_id), _role_guid(a.role_definition_id)) for a in assignments}

    got = pairs(listed)
    # Every principal's assignments at (or above) this subscription, per the scenario.
    want = set()
    for p in tenant.get("service_principals", []) + tenant.get("users", []):
        for r in p.get("roles", []):
            if low(scope).startswith(low(r["scope"]).rstrip("/")) or r["scope"] == "/":
                want.add((low(p["object_id"]), low(r["role_definition_id"]).split("/")[-1]))
    assert want <= got, f"missing: {want - got}"

    mine = {g for (pid, g) in got if pid == low(collector["object_id"])}
    assert mine >= {ROLE_IDS[n] for n in COLLECTOR_ROLES}, mine
    for a in listed:
        if low(a.principal_id) == low(collector["object_id"]):
            assert a.principal_type == "ServicePrincipal", a.principal_type

    # list_for_scope at the subscription gives the same set.
    by_scope = list(am.role_assignments.list_for_scope(scope, filter="atScope()"))
    assert pairs(by_scope) == got

    # principalId filter returns only the collector's.
    only = list(am.role_assignments.list_for_scope(scope, filter=f"principalId eq '{collector['object_id']}'"))
    assert only and all(low(a.principal_id) == low(collector["object_id"]) for a in only)
    assert {_role_guid(a.role_definition_id) for a in only} >= {ROLE_IDS[n] for n in COLLECTOR_ROLES}


def test_role_assignment_added_out_of_band(sim, cred, sub, tenant):
    ro = principal(tenant, "reader-only")
    scope = sub_scope(sub)
    body = {"principal_id": ro["object_id"], "role": "Contributor", "scope": scope}
    sim.post("/_sim/role-assignments", body)
    try:
        am = AuthorizationManagementClient(cred, sub["subscription_id"], **client_kwargs(sim))
        got = list(am.role_assignments.list_for_scope(scope, filter=f"principalId eq '{ro['object_id']}'"))
        assert ROLE_IDS["Contributor"] in {_role_guid(a.role_definition_id) for a in got}
    finally:
        r = sim.http.delete(sim.url + "/_sim/role-assignments", json=body, timeout=30)
        assert r.status_code in (200, 204), r.text
    got = list(am.role_assignments.list_for_scope(scope, filter=f"principalId eq '{ro['object_id']}'"))
    assert ROLE_IDS["Contributor"] not in {_role_guid(a.role_definition_id) for a in got}


# ---------------------------------------------------------------- secure score


def test_secure_scores(sim, cred, sub):
    sc = SecurityCenter(cred, sub["subscription_id"], **client_kwargs(sim))
    scores = list(sc.secure_scores.list())
    assert scores
    names = {s.name for s in scores}
    assert "ascScore" in names, names
    for s in scores:
        assert s.max is not None and s.max > 0, s
        assert s.current is not None and 0 <= s.current <= s.max, s
        assert s.percentage is not None and 0 <= s.percentage <= 1, s
        assert math.isclose(s.percentage, s.current / s.max, abs_tol=0.01), s
    controls = list(sc.secure_score_controls.list())
    assert controls
    for c in controls:
        assert c.display_name, c
        assert c.max is not None and c.current is not None and 0 <= c.current <= c.max, c
        for n in (c.healthy_resource_count, c.unhealthy_resource_count, c.not_applicable_resource_count):
            assert n is None or n >= 0, c


# ---------------------------------------------------------------- storage


def test_storage_accounts(sim, cred, sub, all_resources):
    st = StorageManagementClient(cred, sub["subscription_id"], **client_kwargs(sim))
    accounts = list(st.storage_accounts.list())
    expected = {low(r.id) for r in all_resources if low(r.type) == "microsoft.storage/storageaccounts"}
    assert {low(a.id) for a in accounts} == expected
    assert accounts, "no storage accounts in the subscription"
    for a in accounts:
        assert a.location and a.name
        assert a.allow_blob_public_access in (None, True, False)
        assert a.minimum_tls_version in (None, "TLS1_0", "TLS1_1", "TLS1_2", "TLS1_3"), a.minimum_tls_version
        assert a.public_network_access in (None, "Enabled", "Disabled", "SecuredByPerimeter")

    # Flip anonymous blob access out of band and see it through the SDK.
    a = accounts[0]
    was = bool(a.allow_blob_public_access)
    sim.post("/_sim/storage/public-access", {"account_id": a.id, "allow_blob_public_access": not was})
    try:
        now = {low(x.id): x for x in st.storage_accounts.list()}[low(a.id)]
        assert bool(now.allow_blob_public_access) is (not was)
    finally:
        sim.post("/_sim/storage/public-access", {"account_id": a.id, "allow_blob_public_access": was})
    now = {low(x.id): x for x in st.storage_accounts.list()}[low(a.id)]
    assert bool(now.allow_blob_public_access) is was


# ---------------------------------------------------------------- key vaults


def test_key_vaults_keys_and_secrets(sim, cred, subscriptions):
    vaults_seen = 0
    keys_seen = []
    with_rotation = []
    for s in subscriptions:
        kv = KeyVaultManagementClient(cred, s["subscription_id"], **client_kwargs(sim))
        rm = ResourceManagementClient(cred, s["subscription_id"], **client_kwargs(sim))
        expected = {low(r.id) for r in rm.resources.list(top=50) if low(r.type) == "microsoft.keyvault/vaults"}
        vaults = list(kv.vaults.list_by_subscription())
        assert {low(v.id) for v in vaults} == expected
        # vaults.list() goes through the generic resource list with
        # $filter=resourceType eq 'Microsoft.KeyVault/vaults' and api-version 2015-11-01.
        generic = list(kv.vaults.list())
        assert {low(v.id) for v in generic} == expected
        assert all(low(v.type) == "microsoft.keyvault/vaults" for v in generic)
        for v in vaults:
            vaults_seen += 1
            assert v.properties is not None and v.properties.tenant_id, v.id
            rg = resource_group_of(v.id)
            keys = list(kv.keys.list(rg, v.name))
            for k in keys:
                assert low(k.id).startswith(low(v.id) + "/keys/"), k.id
                assert k.properties is not None
                assert k.properties.key_uri, k.id
                attrs = k.properties.attributes
                assert attrs is not None and attrs.created is not None, k.id
                keys_seen.append((kv, rg, v.name, k))
                rp = k.properties.rotation_policy
                if rp is not None and rp.lifetime_actions:
                    with_rotation.append(k)
            for sec in kv.secrets.list(rg, v.name):
                assert low(sec.id).startswith(low(v.id) + "/secrets/"), sec.id
                assert sec.properties is not None
                sa = sec.properties.attributes
                if sa is not None:
                    _ = (sa.expires, sa.created, sa.updated, sa.enabled)  # must deserialise
    assert vaults_seen, "no key vaults in any subscription"
    assert keys_seen, "no keys in any vault"
    assert with_rotation, "no key has a rotation policy (api-version 2026-05-15 exposes rotationPolicy)"

    # Rotate a key out of band: the SDK sees a new version.
    kv, rg, vname, k = keys_seen[0]
    before = k.properties.key_uri_with_version
    sim.post("/_sim/keys/rotate", {"key_id": k.id})
    after = {low(x.id): x for x in kv.keys.list(rg, vname)}[low(k.id)]
    assert after.properties.key_uri_with_version != before


# ---------------------------------------------------------------- throttling (last)


def test_throttling_reads(sim, cred, subscriptions):
    s = subscriptions[-1]
    token = cred.get_token(ARM_SCOPE).token
    url = f"{sim.url}/subscriptions/{s['subscription_id']}/resourcegroups"
    params = {"api-version": "2025-04-01"}
    http = requests.Session()
    http.verify = sim.ca
    http.headers["Authorization"] = f"Bearer {token}"
    remaining = []
    throttled = None
    deadline = time.monotonic() + 120
    for _ in range(2000):
        r = http.get(url, params=params, timeout=30)
        if r.status_code == 429:
            throttled = r
            break
        assert r.status_code == 200, r.text
        h = r.headers.get("x-ms-ratelimit-remaining-subscription-reads")
        assert h is not None, "no x-ms-ratelimit-remaining-subscription-reads header"
        remaining.append(int(h))
        assert time.monotonic() < deadline, "no 429 within 120 s"
    assert throttled is not None, f"no 429 after {len(remaining)} reads"
    # The bucket holds 250 and the header says what is left: no 429 before that ran out.
    assert 0 <= remaining[0] < 250, remaining[0]
    assert len(remaining) >= remaining[0], f"429 after {len(remaining)} reads, header said {remaining[0]} left"
    assert remaining[-1] <= 5, f"429 while the header still said {remaining[-1]} left"
    ra = throttled.headers.get("Retry-After")
    assert ra is not None and ra.isdigit() and int(ra) >= 1, throttled.headers
    assert throttled.json()["error"]["code"] == "SubscriptionRequestsThrottled", throttled.text

    # The SDK, with retries off, surfaces the 429 and its Retry-After.
    rm = ResourceManagementClient(cred, s["subscription_id"], **client_kwargs(sim, retry_total=0))
    err = None
    for _ in range(200):
        try:
            list(rm.resource_groups.list())
        except HttpResponseError as e:
            err = e
            break
    assert err is not None, "SDK never saw a 429"
    assert err.status_code == 429, str(err)
    assert err.response.headers.get("Retry-After"), dict(err.response.headers)
    assert err.error is not None and err.error.code == "SubscriptionRequestsThrottled"
