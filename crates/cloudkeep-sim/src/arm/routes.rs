//! The operations the simulator serves: one table of routes, each a path
//! pattern, the methods it answers, the api-versions it accepts and its
//! handler. Adding an operation is one entry here plus its handler; the
//! api-version lists at the top are the only place versions are named.
//!
//! Patterns are `/`-separated segments, matched case-insensitively:
//! a literal, `{name}` (one segment), `{name?}` (an optional last segment),
//! `{scope*}` (first: any scope, `/` when empty, for extension resources
//! such as tags at any scope) and `{rest*}` (last: one or more segments).
//! The first route that matches wins, so specific routes come first.

use axum::http::{Method, StatusCode};

use super::{
    ArmError, ArmResult, Ctx, authorization, cost, graph, locations, monitor, providers, resources,
    security,
};
use crate::throttle::Kind;

/// The api-versions an operation accepts, and how a wrong one is refused.
#[derive(Debug)]
pub struct ApiVersions {
    /// The resource type `NoRegisteredProviderFound` names.
    pub resource_type: &'static str,
    /// Accepted versions; empty accepts any well-formed date version.
    pub versions: &'static [&'static str],
    /// Microsoft.Resources and Microsoft.Authorization answer
    /// `InvalidApiVersionParameter`; resource providers answer
    /// `NoRegisteredProviderFound`.
    pub core: bool,
}

/// Microsoft.Resources' versions; `locations` exists from 2016-06-01 on.
const RESOURCE_VERSIONS: &[&str] = &[
    "2014-04-01-preview",
    "2015-01-01",
    "2015-11-01",
    "2016-02-01",
    "2016-06-01",
    "2016-07-01",
    "2016-09-01",
    "2017-05-10",
    "2017-08-01",
    "2018-02-01",
    "2018-05-01",
    "2018-06-01",
    "2018-08-01",
    "2019-03-01",
    "2019-05-01",
    "2019-05-10",
    "2019-06-01",
    "2019-07-01",
    "2019-08-01",
    "2019-10-01",
    "2019-11-01",
    "2020-01-01",
    "2020-06-01",
    "2020-08-01",
    "2020-10-01",
    "2021-01-01",
    "2021-04-01",
    "2022-01-01",
    "2022-09-01",
    "2022-12-01",
    "2023-07-01",
    "2024-03-01",
    "2024-07-01",
    "2024-11-01",
    "2025-01-01",
    "2025-03-01",
    "2025-04-01",
];

pub static RESOURCES: ApiVersions = ApiVersions {
    resource_type: "subscriptions",
    versions: RESOURCE_VERSIONS,
    core: true,
};

pub static AUTHORIZATION: ApiVersions = ApiVersions {
    resource_type: "roleAssignments",
    versions: &[
        "2015-06-01",
        "2015-07-01",
        "2017-10-01-preview",
        "2018-01-01-preview",
        "2018-07-01",
        "2018-09-01-preview",
        "2020-03-01-preview",
        "2020-04-01-preview",
        "2020-08-01-preview",
        "2020-10-01-preview",
        "2022-01-01-preview",
        "2022-04-01",
        "2022-05-01-preview",
    ],
    core: true,
};

pub static COST_MANAGEMENT: ApiVersions = ApiVersions {
    resource_type: "query",
    versions: &[
        "2019-01-01",
        "2019-10-01",
        "2019-11-01",
        "2020-06-01",
        "2020-12-01-preview",
        "2021-10-01",
        "2022-10-01",
        "2023-03-01",
        "2023-04-01-preview",
        "2023-07-01-preview",
        "2023-08-01",
        "2023-09-01",
        "2023-11-01",
        "2024-08-01",
        "2025-03-01",
    ],
    core: false,
};

pub static SECURE_SCORES: ApiVersions = ApiVersions {
    resource_type: "secureScores",
    versions: &["2020-01-01", "2020-01-01-preview"],
    core: false,
};

pub static STORAGE: ApiVersions = ApiVersions {
    resource_type: "storageAccounts",
    versions: &[
        "2019-06-01",
        "2021-01-01",
        "2021-02-01",
        "2021-04-01",
        "2021-06-01",
        "2021-08-01",
        "2021-09-01",
        "2022-05-01",
        "2022-09-01",
        "2023-01-01",
        "2023-04-01",
        "2023-05-01",
        "2024-01-01",
        "2025-01-01",
        "2025-06-01",
        "2025-08-01",
        "2026-01-01",
        "2026-04-01",
        "2026-09-01",
    ],
    core: false,
};

pub static KEY_VAULT: ApiVersions = ApiVersions {
    resource_type: "vaults",
    versions: &[
        "2019-09-01",
        "2020-04-01-preview",
        "2021-04-01-preview",
        "2021-06-01-preview",
        "2021-10-01",
        "2021-11-01-preview",
        "2022-02-01-preview",
        "2022-07-01",
        "2022-11-01",
        "2023-02-01",
        "2023-07-01",
        "2023-08-01-preview",
        "2024-04-01-preview",
        "2024-11-01",
        "2024-12-01-preview",
        "2025-05-01",
        "2026-02-01",
        "2026-05-15",
    ],
    core: false,
};

pub static MANAGEMENT_PARTNER: ApiVersions = ApiVersions {
    resource_type: "partners",
    versions: &["2018-02-01"],
    core: false,
};

pub static RESOURCE_GRAPH: ApiVersions = ApiVersions {
    resource_type: "resources",
    versions: &[
        "2019-04-01",
        "2020-04-01-preview",
        "2021-03-01",
        "2022-10-01",
        "2024-04-01",
    ],
    core: false,
};

/// `GET /subscriptions/{s}/locations`: from 2016-06-01 (the fifth) on.
pub static LOCATIONS: ApiVersions = ApiVersions {
    resource_type: "locations",
    versions: RESOURCE_VERSIONS.split_at(4).1,
    core: true,
};

pub static PRICINGS: ApiVersions = ApiVersions {
    resource_type: "pricings",
    versions: &[
        "2017-08-01-preview",
        "2018-06-01",
        "2022-03-01",
        "2023-01-01",
        "2024-01-01",
    ],
    core: false,
};

pub static ASSESSMENTS: ApiVersions = ApiVersions {
    resource_type: "assessments",
    versions: &["2019-01-01-preview", "2020-01-01", "2021-06-01"],
    core: false,
};

pub static SECURITY_SETTINGS: ApiVersions = ApiVersions {
    resource_type: "settings",
    versions: &[
        "2017-08-01-preview",
        "2019-01-01",
        "2021-06-01",
        "2021-07-01",
        "2022-05-01",
    ],
    core: false,
};

pub static SECURITY_CONTACTS: ApiVersions = ApiVersions {
    resource_type: "securityContacts",
    versions: &[
        "2017-08-01-preview",
        "2020-01-01-preview",
        "2023-12-01-preview",
    ],
    core: false,
};

pub static AUTO_PROVISIONING: ApiVersions = ApiVersions {
    resource_type: "autoProvisioningSettings",
    versions: &["2017-08-01-preview"],
    core: false,
};

pub static IOT_SOLUTIONS: ApiVersions = ApiVersions {
    resource_type: "iotSecuritySolutions",
    versions: &["2017-08-01-preview", "2019-08-01"],
    core: false,
};

pub static JIT_POLICIES: ApiVersions = ApiVersions {
    resource_type: "locations/jitNetworkAccessPolicies",
    versions: &["2015-06-01-preview", "2020-01-01"],
    core: false,
};

pub static DIAGNOSTIC_SETTINGS: ApiVersions = ApiVersions {
    resource_type: "diagnosticSettings",
    versions: &[
        "2016-09-01",
        "2017-05-01-preview",
        "2020-01-01-preview",
        "2021-05-01-preview",
    ],
    core: false,
};

pub static ACTIVITY_LOG_ALERTS: ApiVersions = ApiVersions {
    resource_type: "activityLogAlerts",
    versions: &["2017-04-01", "2020-10-01", "2023-01-01-preview"],
    core: false,
};

/// A resource read through its own provider: any well-formed version.
pub static ANY_PROVIDER: ApiVersions = ApiVersions {
    resource_type: "resources",
    versions: &[],
    core: false,
};

/// HTTP methods a route answers, as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Methods(u8);

impl Methods {
    pub const GET: Methods = Methods(1);
    pub const PUT: Methods = Methods(2);
    pub const PATCH: Methods = Methods(4);
    pub const DELETE: Methods = Methods(8);
    pub const POST: Methods = Methods(16);

    pub const fn or(self, other: Methods) -> Methods {
        Methods(self.0 | other.0)
    }

    fn allows(self, m: &Method) -> bool {
        let bit = match *m {
            Method::GET | Method::HEAD => Self::GET,
            Method::PUT => Self::PUT,
            Method::PATCH => Self::PATCH,
            Method::DELETE => Self::DELETE,
            Method::POST => Self::POST,
            _ => return false,
        };
        self.0 & bit.0 != 0
    }
}

const GET: Methods = Methods::GET;
const WRITES: Methods = Methods::GET
    .or(Methods::PUT)
    .or(Methods::PATCH)
    .or(Methods::DELETE);
const GET_PUT_DELETE: Methods = Methods::GET.or(Methods::PUT).or(Methods::DELETE);
const POST: Methods = Methods::POST;

pub type Handler = fn(&Ctx) -> ArmResult;

/// One operation: where it lives, how it is called, what answers it.
pub struct Route {
    pub pattern: &'static str,
    pub methods: Methods,
    pub versions: &'static ApiVersions,
    pub handler: Handler,
    /// A POST that reads (a query): throttled as a read, as ARM counts it.
    pub query: bool,
    /// Only under a subscription (`{scope*}` must name one).
    pub in_subscription: bool,
    /// A further condition on the captured parameters.
    pub guard: Option<fn(&Params) -> bool>,
}

const fn route(
    pattern: &'static str,
    methods: Methods,
    versions: &'static ApiVersions,
    handler: Handler,
) -> Route {
    Route {
        pattern,
        methods,
        versions,
        handler,
        query: false,
        in_subscription: false,
        guard: None,
    }
}

impl Route {
    const fn query(mut self) -> Route {
        self.query = true;
        self
    }

    const fn in_subscription(mut self) -> Route {
        self.in_subscription = true;
        self
    }

    const fn guard(mut self, g: fn(&Params) -> bool) -> Route {
        self.guard = Some(g);
        self
    }

    /// Reads and writes as ARM's throttling counts them.
    pub fn kind(&self, method: &Method) -> Kind {
        match *method {
            Method::GET | Method::HEAD => Kind::Read,
            Method::POST if self.query => Kind::Read,
            Method::DELETE => Kind::Delete,
            _ => Kind::Write,
        }
    }
}

/// A resource id under a resource group: a provider, then type/name pairs.
fn is_resource_id(p: &Params) -> bool {
    p.get("rest")
        .is_some_and(|r| r.split('/').count() % 2 == 1 && r.split('/').count() >= 3)
}

/// Every ARM operation, most specific first.
pub static ROUTES: &[Route] = &[
    // Extension resources, at any scope.
    route(
        "{scope*}/providers/Microsoft.Resources/tags/default",
        WRITES,
        &RESOURCES,
        resources::tags,
    )
    .in_subscription(),
    route(
        "{scope*}/providers/Microsoft.Authorization/roleAssignments/{name?}",
        GET_PUT_DELETE,
        &AUTHORIZATION,
        authorization::role_assignments,
    ),
    route(
        "{scope*}/providers/Microsoft.Authorization/roleDefinitions/{id?}",
        GET,
        &AUTHORIZATION,
        authorization::role_definitions,
    ),
    route(
        "{scope*}/providers/Microsoft.CostManagement/query",
        POST,
        &COST_MANAGEMENT,
        cost::query,
    )
    .in_subscription()
    .query(),
    route(
        "{scope*}/providers/Microsoft.Insights/diagnosticSettings/{name?}",
        GET,
        &DIAGNOSTIC_SETTINGS,
        monitor::diagnostic_settings,
    )
    .in_subscription(),
    // Tenant-level providers.
    route(
        "providers/Microsoft.ManagementPartner/partners/{id?}",
        WRITES,
        &MANAGEMENT_PARTNER,
        providers::partner,
    ),
    route(
        "providers/Microsoft.ResourceGraph/resources",
        POST,
        &RESOURCE_GRAPH,
        graph::query,
    )
    .query(),
    // Microsoft.Resources.
    route(
        "subscriptions",
        GET,
        &RESOURCES,
        resources::list_subscriptions,
    ),
    route("tenants", GET, &RESOURCES, resources::list_tenants),
    route(
        "subscriptions/{sub}/operationresults/{id}",
        GET,
        &RESOURCES,
        resources::operation_result,
    ),
    route(
        "subscriptions/{sub}",
        GET,
        &RESOURCES,
        resources::get_subscription,
    ),
    route(
        "subscriptions/{sub}/resourcegroups/{rg?}",
        GET,
        &RESOURCES,
        resources::resource_groups,
    ),
    route(
        "subscriptions/{sub}/locations",
        GET,
        &LOCATIONS,
        locations::locations,
    ),
    route(
        "subscriptions/{sub}/resources",
        GET,
        &RESOURCES,
        resources::list_resources,
    ),
    route(
        "subscriptions/{sub}/resourceGroups/{rg}/resources",
        GET,
        &RESOURCES,
        resources::list_resources,
    ),
    // Microsoft.Security.
    route(
        "subscriptions/{sub}/providers/Microsoft.Security/secureScores/{name?}",
        GET,
        &SECURE_SCORES,
        providers::secure_scores,
    ),
    route(
        "subscriptions/{sub}/providers/Microsoft.Security/secureScoreControls",
        GET,
        &SECURE_SCORES,
        providers::secure_score_controls,
    ),
    route(
        "subscriptions/{sub}/providers/Microsoft.Security/secureScores/{score}/secureScoreControls",
        GET,
        &SECURE_SCORES,
        providers::secure_score_controls,
    ),
    route(
        "subscriptions/{sub}/providers/Microsoft.Security/pricings/{name?}",
        GET,
        &PRICINGS,
        security::pricings,
    ),
    route(
        "subscriptions/{sub}/providers/Microsoft.Security/assessments",
        GET,
        &ASSESSMENTS,
        security::assessments,
    ),
    route(
        "subscriptions/{sub}/providers/Microsoft.Security/settings/{name?}",
        GET,
        &SECURITY_SETTINGS,
        security::settings,
    ),
    route(
        "subscriptions/{sub}/providers/Microsoft.Security/securityContacts/{name?}",
        GET,
        &SECURITY_CONTACTS,
        security::security_contacts,
    ),
    route(
        "subscriptions/{sub}/providers/Microsoft.Security/autoProvisioningSettings/{name?}",
        GET,
        &AUTO_PROVISIONING,
        security::auto_provisioning,
    ),
    route(
        "subscriptions/{sub}/providers/Microsoft.Security/iotSecuritySolutions",
        GET,
        &IOT_SOLUTIONS,
        security::iot_security_solutions,
    ),
    route(
        "subscriptions/{sub}/providers/Microsoft.Security/jitNetworkAccessPolicies",
        GET,
        &JIT_POLICIES,
        security::jit_policies,
    ),
    // Microsoft.Insights.
    route(
        "subscriptions/{sub}/providers/Microsoft.Insights/activityLogAlerts",
        GET,
        &ACTIVITY_LOG_ALERTS,
        monitor::activity_log_alerts,
    ),
    route(
        "subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Insights/activityLogAlerts/{name?}",
        GET,
        &ACTIVITY_LOG_ALERTS,
        monitor::activity_log_alerts,
    ),
    // Microsoft.Storage.
    route(
        "subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{name}/blobServices/{svc?}",
        GET,
        &STORAGE,
        providers::blob_services,
    ),
    route(
        "subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{name}/fileServices/{svc?}",
        GET,
        &STORAGE,
        providers::file_services,
    ),
    route(
        "subscriptions/{sub}/providers/Microsoft.Storage/storageAccounts",
        GET,
        &STORAGE,
        providers::storage_accounts,
    ),
    route(
        "subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{name?}",
        GET,
        &STORAGE,
        providers::storage_accounts,
    ),
    // Microsoft.KeyVault.
    route(
        "subscriptions/{sub}/providers/Microsoft.KeyVault/vaults",
        GET,
        &KEY_VAULT,
        providers::vaults,
    ),
    route(
        "subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name?}",
        GET,
        &KEY_VAULT,
        providers::vaults,
    ),
    route(
        "subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}/keys/{key?}",
        GET,
        &KEY_VAULT,
        providers::vault_keys,
    ),
    route(
        "subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}/secrets/{secret?}",
        GET,
        &KEY_VAULT,
        providers::vault_secrets,
    ),
    // Any other resource, read through its provider.
    route(
        "subscriptions/{sub}/resourceGroups/{rg}/providers/{rest*}",
        GET,
        &ANY_PROVIDER,
        resources::get_resource,
    )
    .guard(is_resource_id),
];

/// What a pattern captured from a path.
#[derive(Debug, Clone, Default)]
pub struct Params {
    segs: Vec<String>,
    /// (name, value, index of the segment after the capture)
    caps: Vec<(&'static str, String, usize)>,
}

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.caps
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, v, _)| v.as_str())
    }

    /// The path up to and including a capture, as the client spelled it
    /// (a vault's id from its keys' path).
    pub fn upto(&self, name: &str) -> String {
        let end = self
            .caps
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, e)| *e)
            .unwrap_or(0);
        join(&self.segs[..end])
    }

    /// The whole path, normalised (no trailing or doubled slashes).
    pub fn path(&self) -> String {
        join(&self.segs)
    }

    /// The subscription the call is tenant-checked and throttled under.
    pub fn subscription(&self) -> Option<&str> {
        self.get("sub")
            .or_else(|| self.get("scope").and_then(super::subscription_of))
    }
}

fn join(segs: &[String]) -> String {
    if segs.is_empty() {
        "/".to_string()
    } else {
        format!("/{}", segs.join("/"))
    }
}

/// Matches pattern tokens against path segments, with backtracking for
/// the `*` captures.
fn matches(
    pattern: &[&'static str],
    segs: &[String],
    at: usize,
    caps: &mut Vec<(&'static str, String, usize)>,
) -> bool {
    let Some((tok, rest)) = pattern.split_first() else {
        return at == segs.len();
    };
    let name = tok
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .map(|t| t.trim_end_matches(['?', '*']));
    match name {
        None => {
            segs.get(at).is_some_and(|s| s.eq_ignore_ascii_case(tok))
                && matches(rest, segs, at + 1, caps)
        }
        Some(n) if tok.ends_with("*}") => {
            // A leading `{scope*}` may be empty (the root scope, a path);
            // a trailing `{rest*}` takes at least one segment.
            let min = usize::from(rest.is_empty());
            for end in (at + min)..=segs.len() {
                let value = if rest.is_empty() {
                    segs[at..end].join("/")
                } else {
                    join(&segs[at..end])
                };
                caps.push((n, value, end));
                if matches(rest, segs, end, caps) {
                    return true;
                }
                caps.pop();
            }
            false
        }
        Some(_) if tok.ends_with("?}") && at == segs.len() && rest.is_empty() => true,
        Some(n) => match segs.get(at) {
            Some(s) => {
                caps.push((n, s.clone(), at + 1));
                if matches(rest, segs, at + 1, caps) {
                    return true;
                }
                caps.pop();
                false
            }
            None => false,
        },
    }
}

/// Resolves a path to its route, or ARM's 404 for a path nothing serves.
pub fn resolve(path: &str) -> Result<(&'static Route, Params), ArmError> {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for r in ROUTES {
        let pattern: Vec<&'static str> = r.pattern.split('/').collect();
        let mut caps = Vec::new();
        if !matches(&pattern, &segs, 0, &mut caps) {
            continue;
        }
        let params = Params {
            segs: segs.clone(),
            caps,
        };
        if r.guard.is_some_and(|g| !g(&params)) {
            continue;
        }
        if r.in_subscription && params.subscription().is_none() {
            return Err(unknown_path(path));
        }
        return Ok((r, params));
    }
    Err(unknown_path(path))
}

pub fn unknown_path(path: &str) -> ArmError {
    ArmError::not_found(
        "NotFound",
        format!("No HTTP resource was found that matches the request URI '{path}'."),
    )
}

pub fn method_not_allowed(method: &Method) -> ArmError {
    ArmError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("The requested resource does not support http method '{method}'."),
    )
}

impl Route {
    pub fn allows(&self, method: &Method) -> bool {
        self.methods.allows(method)
    }
}

fn well_formed_version(v: &str) -> bool {
    let date = v.strip_suffix("-preview").unwrap_or(v);
    date.len() == 10 && chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok()
}

/// Checks the `api-version` against the route's list, answering ARM's errors.
pub fn check_api_version(versions: &ApiVersions, given: Option<&str>) -> Result<String, ArmError> {
    let Some(v) = given.filter(|v| !v.is_empty()) else {
        return Err(ArmError::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    let known = versions.versions;
    if known.is_empty() && well_formed_version(v) || known.iter().any(|k| k.eq_ignore_ascii_case(v))
    {
        return Ok(v.to_string());
    }
    let list = if known.is_empty() {
        "2025-04-01".to_string()
    } else {
        known.join(", ")
    };
    if versions.core {
        return Err(ArmError::bad_request(
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{v}' is invalid. The supported versions are '{list}'. The supported locations are ''."
            ),
        ));
    }
    Err(ArmError::bad_request(
        "NoRegisteredProviderFound",
        format!(
            "No registered resource provider found for location 'global' and API version '{v}' for type '{}'. The supported api-versions are '{list}'. The supported locations are ', eastus, westeurope, northeurope, westus2'.",
            versions.resource_type
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(path: &str) -> Option<(&'static str, Params)> {
        resolve(path).ok().map(|(r, p)| (r.pattern, p))
    }

    #[test]
    fn resolves_paths() {
        let s = "/subscriptions/abc";
        assert_eq!(
            resolved("/subscriptions").map(|(p, _)| p),
            Some("subscriptions")
        );
        let (pattern, p) = resolved(&format!("{s}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm/providers/Microsoft.Resources/tags/default")).expect("tags");
        assert!(pattern.ends_with("tags/default"));
        assert_eq!(
            p.get("scope"),
            Some(
                "/subscriptions/abc/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm"
            )
        );
        assert_eq!(p.subscription(), Some("abc"));
        let (_, p) =
            resolved("/providers/Microsoft.Authorization/roleAssignments").expect("root scope");
        assert_eq!((p.get("scope"), p.get("name")), (Some("/"), None));
        let (pattern, p) = resolved(&format!(
            "{s}/resourceGroups/rg/providers/Microsoft.Sql/servers/a/databases/b"
        ))
        .expect("generic");
        assert!(pattern.ends_with("{rest*}"));
        assert_eq!(
            p.path(),
            format!("{s}/resourceGroups/rg/providers/Microsoft.Sql/servers/a/databases/b")
        );
        assert!(
            resolve(&format!(
                "{s}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines"
            ))
            .is_err()
        );
        let (_, p) = resolved(&format!(
            "{s}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v/keys/k"
        ))
        .expect("keys");
        assert!(p.upto("vault").ends_with("/vaults/v"));
        assert_eq!(p.get("key"), Some("k"));
        assert!(resolve("/nonsense/path").is_err());
        // Tags need a subscription in their scope.
        assert!(resolve("/providers/Microsoft.Resources/tags/default").is_err());
    }

    /// `docs/simulator.md` lists every operation with its api-versions.
    #[test]
    fn the_documentation_lists_every_route_and_version() {
        let doc = include_str!("../../../../docs/simulator.md");
        for r in ROUTES {
            assert!(
                doc.contains(&format!("| `{}` |", r.pattern)),
                "docs/simulator.md does not list {}",
                r.pattern
            );
            let row = doc
                .lines()
                .find(|l| {
                    l.starts_with("| `")
                        && r.versions.versions.first().is_some_and(|v| l.contains(v))
                        && r.versions.versions.iter().all(|v| l.contains(v))
                })
                .map(|_| ());
            assert!(
                r.versions.versions.is_empty() || row.is_some(),
                "docs/simulator.md has no row with {}'s versions",
                r.pattern
            );
        }
    }

    #[test]
    fn every_route_names_versions_that_are_dates() {
        for r in ROUTES {
            for v in r.versions.versions {
                assert!(well_formed_version(v), "{}: {v}", r.pattern);
            }
        }
    }
}
