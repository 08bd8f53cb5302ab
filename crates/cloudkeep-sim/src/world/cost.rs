//! Daily cost per resource and meter, computed on the fly from the seed.
//!
//! A resource's cost on a day is its base daily rate, grown over time,
//! dipped at weekends for workloads that scale down, with ±10% noise and a
//! rare anomaly (a 4–10× day). Nothing is stored, so any number of days and
//! resources costs no memory.

use chrono::{Datelike, NaiveDate, Weekday};

use super::{Resource, mix, unit};

pub mod catalogue {
    //! Resource types the generator uses, with their names, SKUs and meters.

    #[derive(Debug)]
    pub struct Meter {
        pub service_name: &'static str,
        pub meter_category: &'static str,
        pub meter_subcategory: &'static str,
        pub meter: &'static str,
        pub share: f64,
    }

    const fn m(
        service_name: &'static str,
        meter_category: &'static str,
        meter_subcategory: &'static str,
        meter: &'static str,
        share: f64,
    ) -> Meter {
        Meter {
            service_name,
            meter_category,
            meter_subcategory,
            meter,
            share,
        }
    }

    #[derive(Debug)]
    pub struct TypeSpec {
        pub resource_type: &'static str,
        pub weight: u32,
        pub prefix: &'static str,
        pub kind: Option<&'static str>,
        pub sku: Option<(&'static str, Option<&'static str>)>,
        /// Range of the base daily cost in USD; (0, 0) for free resources.
        pub daily: (f64, f64),
        pub weekday_sensitive: bool,
        pub meters: &'static [Meter],
    }

    pub static TYPES: &[TypeSpec] = &[
        TypeSpec {
            resource_type: "Microsoft.Compute/virtualMachines",
            weight: 14,
            prefix: "vm",
            kind: None,
            sku: None,
            daily: (1.5, 22.0),
            weekday_sensitive: true,
            meters: &[
                m(
                    "Virtual Machines",
                    "Virtual Machines",
                    "Dv5/DSv5 Series",
                    "D4s v5",
                    0.9,
                ),
                m(
                    "Bandwidth",
                    "Bandwidth",
                    "Rtn Preference: MGN",
                    "Standard Data Transfer Out",
                    0.1,
                ),
            ],
        },
        TypeSpec {
            resource_type: "Microsoft.Compute/disks",
            weight: 14,
            prefix: "disk",
            kind: None,
            sku: Some(("Premium_LRS", Some("Premium"))),
            daily: (0.15, 4.0),
            weekday_sensitive: false,
            meters: &[m(
                "Storage",
                "Storage",
                "Premium SSD Managed Disks",
                "P10 LRS Disk",
                1.0,
            )],
        },
        TypeSpec {
            resource_type: "Microsoft.Network/networkInterfaces",
            weight: 12,
            prefix: "nic",
            kind: None,
            sku: None,
            daily: (0.0, 0.0),
            weekday_sensitive: false,
            meters: &[],
        },
        TypeSpec {
            resource_type: "Microsoft.Network/publicIPAddresses",
            weight: 5,
            prefix: "pip",
            kind: None,
            sku: Some(("Standard", Some("Regional"))),
            daily: (0.1, 0.13),
            weekday_sensitive: false,
            meters: &[m(
                "Virtual Network",
                "Virtual Network",
                "IP Addresses",
                "Standard IPv4 Static Public IP",
                1.0,
            )],
        },
        TypeSpec {
            resource_type: "Microsoft.Network/virtualNetworks",
            weight: 4,
            prefix: "vnet",
            kind: None,
            sku: None,
            daily: (0.0, 0.4),
            weekday_sensitive: false,
            meters: &[m(
                "Virtual Network",
                "Virtual Network",
                "Peering",
                "Intra-Region Ingress",
                1.0,
            )],
        },
        TypeSpec {
            resource_type: "Microsoft.Network/networkSecurityGroups",
            weight: 6,
            prefix: "nsg",
            kind: None,
            sku: None,
            daily: (0.0, 0.0),
            weekday_sensitive: false,
            meters: &[],
        },
        TypeSpec {
            resource_type: "Microsoft.Storage/storageAccounts",
            weight: 9,
            prefix: "st",
            kind: Some("StorageV2"),
            sku: Some(("Standard_LRS", Some("Standard"))),
            daily: (0.2, 14.0),
            weekday_sensitive: false,
            meters: &[
                m(
                    "Storage",
                    "Storage",
                    "General Block Blob v2",
                    "Hot LRS Data Stored",
                    0.7,
                ),
                m(
                    "Storage",
                    "Storage",
                    "General Block Blob v2",
                    "All Other Operations",
                    0.3,
                ),
            ],
        },
        TypeSpec {
            resource_type: "Microsoft.KeyVault/vaults",
            weight: 4,
            prefix: "kv",
            kind: None,
            sku: None,
            daily: (0.01, 0.6),
            weekday_sensitive: false,
            meters: &[m("Key Vault", "Key Vault", "", "Operations", 1.0)],
        },
        TypeSpec {
            resource_type: "Microsoft.Sql/servers",
            weight: 3,
            prefix: "sql",
            kind: Some("v12.0"),
            sku: None,
            daily: (0.0, 0.0),
            weekday_sensitive: false,
            meters: &[],
        },
        TypeSpec {
            resource_type: "Microsoft.Sql/servers/databases",
            weight: 4,
            prefix: "sql",
            kind: Some("v12.0,user,vcore"),
            sku: Some(("GP_Gen5", Some("GeneralPurpose"))),
            daily: (4.0, 60.0),
            weekday_sensitive: false,
            meters: &[
                m(
                    "SQL Database",
                    "SQL Database",
                    "General Purpose - Compute Gen5",
                    "vCore",
                    0.85,
                ),
                m(
                    "SQL Database",
                    "SQL Database",
                    "General Purpose - Storage",
                    "Data Stored",
                    0.15,
                ),
            ],
        },
        TypeSpec {
            resource_type: "Microsoft.Web/serverFarms",
            weight: 3,
            prefix: "asp",
            kind: Some("app"),
            sku: Some(("P1v3", Some("PremiumV3"))),
            daily: (2.5, 12.0),
            weekday_sensitive: false,
            meters: &[m(
                "Azure App Service",
                "Azure App Service",
                "Premium v3 Plan",
                "P1 v3 App",
                1.0,
            )],
        },
        TypeSpec {
            resource_type: "Microsoft.Web/sites",
            weight: 5,
            prefix: "app",
            kind: Some("app,linux"),
            sku: None,
            daily: (0.0, 0.0),
            weekday_sensitive: false,
            meters: &[],
        },
        TypeSpec {
            resource_type: "Microsoft.ContainerService/managedClusters",
            weight: 1,
            prefix: "aks",
            kind: None,
            sku: Some(("Base", Some("Standard"))),
            daily: (2.4, 2.4),
            weekday_sensitive: false,
            meters: &[m(
                "Azure Kubernetes Service",
                "Azure Kubernetes Service",
                "Standard",
                "Standard Uptime SLA",
                1.0,
            )],
        },
        TypeSpec {
            resource_type: "Microsoft.Insights/components",
            weight: 4,
            prefix: "appi",
            kind: Some("web"),
            sku: None,
            daily: (0.1, 6.0),
            weekday_sensitive: true,
            meters: &[m(
                "Log Analytics",
                "Log Analytics",
                "",
                "Analytics Logs Data Ingestion",
                1.0,
            )],
        },
        TypeSpec {
            resource_type: "Microsoft.OperationalInsights/workspaces",
            weight: 2,
            prefix: "log",
            kind: None,
            sku: None,
            daily: (1.0, 25.0),
            weekday_sensitive: true,
            meters: &[
                m(
                    "Log Analytics",
                    "Log Analytics",
                    "",
                    "Pay-as-you-go Data Ingestion",
                    0.9,
                ),
                m("Log Analytics", "Log Analytics", "", "Data Retention", 0.1),
            ],
        },
        TypeSpec {
            resource_type: "Microsoft.DocumentDB/databaseAccounts",
            weight: 2,
            prefix: "cosmos",
            kind: Some("GlobalDocumentDB"),
            sku: None,
            daily: (0.8, 30.0),
            weekday_sensitive: false,
            meters: &[
                m("Azure Cosmos DB", "Azure Cosmos DB", "", "100 RU/s", 0.8),
                m("Azure Cosmos DB", "Azure Cosmos DB", "", "Data Stored", 0.2),
            ],
        },
        TypeSpec {
            resource_type: "Microsoft.Cache/Redis",
            weight: 1,
            prefix: "redis",
            kind: None,
            sku: None,
            daily: (1.3, 9.0),
            weekday_sensitive: false,
            meters: &[m(
                "Redis Cache",
                "Redis Cache",
                "Standard",
                "C1 Cache Instance",
                1.0,
            )],
        },
        TypeSpec {
            resource_type: "Microsoft.Network/loadBalancers",
            weight: 2,
            prefix: "lb",
            kind: None,
            sku: Some(("Standard", Some("Regional"))),
            daily: (0.6, 1.2),
            weekday_sensitive: false,
            meters: &[
                m(
                    "Load Balancer",
                    "Load Balancer",
                    "",
                    "Standard Overage LB Rules and Outbound Rules",
                    0.7,
                ),
                m(
                    "Load Balancer",
                    "Load Balancer",
                    "",
                    "Standard Data Processed",
                    0.3,
                ),
            ],
        },
        TypeSpec {
            resource_type: "Microsoft.Network/applicationGateways",
            weight: 1,
            prefix: "agw",
            kind: None,
            sku: None,
            daily: (6.0, 12.0),
            weekday_sensitive: false,
            meters: &[
                m(
                    "Application Gateway",
                    "Application Gateway",
                    "",
                    "Standard_v2 Fixed Cost",
                    0.6,
                ),
                m(
                    "Application Gateway",
                    "Application Gateway",
                    "",
                    "Standard_v2 Capacity Units",
                    0.4,
                ),
            ],
        },
        TypeSpec {
            resource_type: "Microsoft.ManagedIdentity/userAssignedIdentities",
            weight: 3,
            prefix: "id",
            kind: None,
            sku: None,
            daily: (0.0, 0.0),
            weekday_sensitive: false,
            meters: &[],
        },
        TypeSpec {
            resource_type: "Microsoft.Network/networkWatchers",
            weight: 0,
            prefix: "NetworkWatcher",
            kind: None,
            sku: None,
            daily: (0.0, 0.0),
            weekday_sensitive: false,
            meters: &[],
        },
    ];

    /// Meter used for the monthly reservation purchase in actual cost.
    pub static RESERVATION_PURCHASE: Meter = m(
        "Virtual Machines",
        "Virtual Machines",
        "Reservation-Base VM",
        "D4s v5 Reserved 1 Year",
        1.0,
    );

    /// Meter of a subscription's Marketplace SaaS plan (no resource).
    pub static MARKETPLACE: Meter = m(
        "SendGrid",
        "SaaS",
        "SendGrid Email Delivery",
        "Pro 100K",
        1.0,
    );

    pub fn by_type(resource_type: &str) -> Option<&'static TypeSpec> {
        TYPES
            .iter()
            .find(|t| t.resource_type.eq_ignore_ascii_case(resource_type))
    }

    /// The meters of a resource type (none for free types and unknown ones).
    pub fn meters(resource_type: &str) -> &'static [Meter] {
        by_type(resource_type).map(|t| t.meters).unwrap_or(&[])
    }

    /// Builds an ARM id from a resource group scope, a type such as
    /// `Microsoft.Sql/servers/databases` and a name such as `srv/db`.
    pub fn resource_id(rg_scope: &str, resource_type: &str, name: &str) -> String {
        let mut parts = resource_type.split('/');
        let namespace = parts.next().unwrap_or(resource_type);
        let mut id = format!("{rg_scope}/providers/{namespace}");
        let mut names = name.split('/');
        for t in parts {
            id.push('/');
            id.push_str(t);
            id.push('/');
            id.push_str(names.next().unwrap_or(""));
        }
        id
    }
}

/// Reservation-covered usage is billed at this share of the pay-as-you-go
/// rate, spread daily in amortised cost.
pub const RESERVATION_RATE: f64 = 0.62;

/// Days since a fixed epoch, for growth curves and noise.
fn day_number(date: NaiveDate) -> i64 {
    date.num_days_from_ce() as i64
}

/// The pay-as-you-go cost of a resource on a day (before meters split it),
/// or `None` when it did not exist that day.
pub fn resource_day_cost(r: &Resource, date: NaiveDate) -> Option<f64> {
    if r.cost.daily <= 0.0 || date < r.created.date_naive() || r.deleted.is_some_and(|d| date > d) {
        return None;
    }
    let d = day_number(date);
    let h = mix(r.cost_seed ^ (d as u64).wrapping_mul(0x9e37_79b9));
    let years = (d - 739_000) as f64 / 365.0;
    let growth = (1.0 + r.cost.growth_per_year).max(0.1).powf(years);
    let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
    let dip = if weekend {
        1.0 - r.cost.weekend_dip
    } else {
        1.0
    };
    let noise = 0.9 + 0.2 * unit(h);
    let anomaly = if mix(h) % 1000 < 3 {
        4.0 + 6.0 * unit(mix(h ^ 7))
    } else {
        1.0
    };
    Some(r.cost.daily * growth * dip * noise * anomaly)
}

/// One cost line: a resource's meter on a day, in both cost views, in
/// micro-dollars so that any grouping of lines adds up exactly.
#[derive(Debug, Clone, Copy)]
pub struct CostLine {
    pub meter: &'static catalogue::Meter,
    pub actual: i64,
    pub amortized: i64,
    pub pricing_model: &'static str,
}

/// Dollars to the micro-dollars lines are kept in.
pub fn micros(usd: f64) -> i64 {
    (usd * 1e6).round() as i64
}

/// The reserved meter of a resource: its reservation pays for it.
pub fn is_reserved(r: &Resource, meter: &catalogue::Meter) -> bool {
    r.cost.reserved && meter.meter_category == "Virtual Machines"
}

/// The reservation's daily amortised cost for a resource: a month's
/// purchase spread evenly over the month's days.
pub fn reservation_daily(r: &Resource) -> f64 {
    let share: f64 = catalogue::meters(&r.resource_type)
        .iter()
        .filter(|m| is_reserved(r, m))
        .map(|m| m.share)
        .sum();
    r.cost.daily * share * RESERVATION_RATE
}

/// The share of a reservation used on a day (the rest is
/// `UnusedReservation` in amortised cost).
pub fn reservation_utilisation(r: &Resource, date: NaiveDate) -> f64 {
    let h = mix(r.cost_seed ^ 0x7e5e ^ (day_number(date) as u64));
    0.8 + 0.2 * unit(h)
}

fn in_life(r: &Resource, date: NaiveDate) -> bool {
    date >= r.created.date_naive() && r.deleted.is_none_or(|d| date <= d)
}

/// Cost lines of a resource on a day, `factor` applied (cost events).
pub fn resource_day_lines(r: &Resource, date: NaiveDate, factor: f64, out: &mut Vec<CostLine>) {
    let total = resource_day_cost(r, date);
    for meter in catalogue::meters(&r.resource_type) {
        if is_reserved(r, meter) {
            // Covered by the reservation: nothing in actual cost, the used
            // part of the reservation's daily share in amortised cost.
            if in_life(r, date) && r.cost.daily > 0.0 {
                let used = reservation_daily(r) * reservation_utilisation(r, date);
                out.push(CostLine {
                    meter,
                    actual: 0,
                    amortized: micros(used * factor),
                    pricing_model: "Reservation",
                });
            }
            continue;
        }
        if let Some(total) = total {
            let payg = micros(total * meter.share * factor);
            out.push(CostLine {
                meter,
                actual: payg,
                amortized: payg,
                pricing_model: "OnDemand",
            });
        }
    }
}

/// The reservation's unused part on a day, in amortised cost.
pub fn reservation_unused(r: &Resource, date: NaiveDate) -> Option<i64> {
    (r.cost.reserved && r.cost.daily > 0.0 && in_life(r, date))
        .then(|| micros(reservation_daily(r) * (1.0 - reservation_utilisation(r, date))))
}

fn days_in_month(date: NaiveDate) -> u32 {
    match date.month() {
        2 if date.leap_year() => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The monthly reservation purchase a resource causes in actual cost, on
/// the first of each month: the month's amortised reservation, paid up
/// front, so a month's purchase equals its amortised used and unused parts.
pub fn reservation_purchase(r: &Resource, date: NaiveDate) -> Option<i64> {
    if !r.cost.reserved || r.cost.daily <= 0.0 || date.day() != 1 || !in_life(r, date) {
        return None;
    }
    let month: i64 = (0..days_in_month(date))
        .map(|d| date + chrono::Duration::days(i64::from(d)))
        .map(|day| {
            micros(reservation_daily(r) * reservation_utilisation(r, day))
                + micros(reservation_daily(r) * (1.0 - reservation_utilisation(r, day)))
        })
        .sum();
    Some(month)
}

/// A subscription's charges with no resource (a Marketplace SaaS plan
/// billed daily), as Cost Management shows them with an empty ResourceId.
pub fn unassigned_day(seed: u64, subscription_id: &str, date: NaiveDate) -> i64 {
    let h = mix(super::hash_str(seed, subscription_id) ^ day_number(date) as u64);
    micros(3.2 + 0.4 * unit(h))
}

/// A change to cost a test or the demo made: a spike on a resource, a
/// restated day of a subscription, or the first charge of a new resource.
#[derive(Debug, Clone)]
pub struct CostEvent {
    pub id: String,
    pub kind: EventKind,
    /// The resource (spike, new charge) or subscription (restatement).
    pub scope: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub factor: f64,
    pub note: String,
    pub created: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Spike,
    Restatement,
    NewCharge,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Spike => "spike",
            EventKind::Restatement => "restatement",
            EventKind::NewCharge => "new_charge",
        }
    }
}

/// The cost events touching one resource, for `factor_on`.
pub fn events_for<'e>(events: &'e [CostEvent], r: &Resource) -> Vec<&'e CostEvent> {
    events
        .iter()
        .filter(|e| e.kind != EventKind::NewCharge)
        .filter(|e| super::scope_contains(&e.scope, &r.id))
        .collect()
}

/// The factor a resource's cost on a day is multiplied by.
pub fn factor_on(events: &[&CostEvent], date: NaiveDate) -> f64 {
    events
        .iter()
        .filter(|e| e.from <= date && date <= e.to)
        .map(|e| e.factor)
        .product()
}
