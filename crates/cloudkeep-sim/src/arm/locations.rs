//! `GET /subscriptions/{s}/locations`: Azure's regions with their
//! metadata, zone mappings per subscription, and the logical geographies.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ArmResult, Ctx};
use crate::server::json;

struct Region {
    name: &'static str,
    display: &'static str,
    geography: &'static str,
    group: &'static str,
    latitude: &'static str,
    longitude: &'static str,
    physical: &'static str,
    paired: &'static str,
    zones: bool,
}

#[allow(clippy::too_many_arguments)]
const fn region(
    name: &'static str,
    display: &'static str,
    geography: &'static str,
    group: &'static str,
    latitude: &'static str,
    longitude: &'static str,
    physical: &'static str,
    paired: &'static str,
    zones: bool,
) -> Region {
    Region {
        name,
        display,
        geography,
        group,
        latitude,
        longitude,
        physical,
        paired,
        zones,
    }
}

const REGIONS: &[Region] = &[
    region(
        "eastus",
        "East US",
        "United States",
        "US",
        "37.3719",
        "-79.8164",
        "Virginia",
        "westus",
        true,
    ),
    region(
        "eastus2",
        "East US 2",
        "United States",
        "US",
        "36.6681",
        "-78.3889",
        "Virginia",
        "centralus",
        true,
    ),
    region(
        "centralus",
        "Central US",
        "United States",
        "US",
        "41.5908",
        "-93.6208",
        "Iowa",
        "eastus2",
        true,
    ),
    region(
        "westus",
        "West US",
        "United States",
        "US",
        "37.783",
        "-122.417",
        "California",
        "eastus",
        false,
    ),
    region(
        "westus2",
        "West US 2",
        "United States",
        "US",
        "47.233",
        "-119.852",
        "Washington",
        "westcentralus",
        true,
    ),
    region(
        "westus3",
        "West US 3",
        "United States",
        "US",
        "33.448376",
        "-112.074036",
        "Phoenix",
        "eastus",
        true,
    ),
    region(
        "westcentralus",
        "West Central US",
        "United States",
        "US",
        "40.890",
        "-110.234",
        "Wyoming",
        "westus2",
        false,
    ),
    region(
        "northeurope",
        "North Europe",
        "Europe",
        "Europe",
        "53.3478",
        "-6.2597",
        "Ireland",
        "westeurope",
        true,
    ),
    region(
        "westeurope",
        "West Europe",
        "Europe",
        "Europe",
        "52.3667",
        "4.9",
        "Netherlands",
        "northeurope",
        true,
    ),
    region(
        "uksouth",
        "UK South",
        "United Kingdom",
        "Europe",
        "50.941",
        "-0.799",
        "London",
        "ukwest",
        true,
    ),
    region(
        "ukwest",
        "UK West",
        "United Kingdom",
        "Europe",
        "53.427",
        "-3.084",
        "Cardiff",
        "uksouth",
        false,
    ),
    region(
        "francecentral",
        "France Central",
        "France",
        "Europe",
        "46.3772",
        "2.3730",
        "Paris",
        "francesouth",
        true,
    ),
    region(
        "germanywestcentral",
        "Germany West Central",
        "Germany",
        "Europe",
        "50.110924",
        "8.682127",
        "Frankfurt",
        "germanynorth",
        true,
    ),
    region(
        "swedencentral",
        "Sweden Central",
        "Sweden",
        "Europe",
        "60.67488",
        "17.14127",
        "Gävle",
        "swedensouth",
        true,
    ),
    region(
        "japaneast",
        "Japan East",
        "Japan",
        "Asia Pacific",
        "35.68",
        "139.77",
        "Tokyo, Saitama",
        "japanwest",
        true,
    ),
    region(
        "australiaeast",
        "Australia East",
        "Australia",
        "Asia Pacific",
        "-33.86",
        "151.2094",
        "New South Wales",
        "australiasoutheast",
        true,
    ),
];

pub fn locations(ctx: &Ctx) -> ArmResult {
    let sub = ctx.p("sub");
    let world = ctx.st.world();
    ctx.authorize(
        &world,
        "Microsoft.Resources/subscriptions/locations/read",
        &format!("/subscriptions/{sub}"),
    )?;
    let sub = world
        .subscription(sub)
        .map(|s| s.id.clone())
        .unwrap_or_else(|| sub.to_string());
    let loc_id = |n: &str| format!("/subscriptions/{sub}/locations/{n}");
    let mut value: Vec<Value> = REGIONS
        .iter()
        .map(|r| {
            let mut v = json!({
                "id": loc_id(r.name),
                "name": r.name,
                "type": "Region",
                "displayName": r.display,
                "regionalDisplayName": format!("({}) {}", r.group, r.display),
                "metadata": {
                    "regionType": "Physical",
                    "regionCategory": if r.zones { "Recommended" } else { "Other" },
                    "geography": r.geography,
                    "geographyGroup": r.group,
                    "longitude": r.longitude,
                    "latitude": r.latitude,
                    "physicalLocation": r.physical,
                    "pairedRegion": [{ "name": r.paired, "id": loc_id(r.paired) }],
                },
            });
            if r.zones {
                // Logical zones map to physical ones differently per subscription.
                let shift = (crate::world::hash_str(0, &format!("{sub}{}", r.name)) % 3) as usize;
                v["availabilityZoneMappings"] = json!(
                    (0..3)
                        .map(|i| json!({
                            "logicalZone": (i + 1).to_string(),
                            "physicalZone": format!("{}-az{}", r.name, (i + shift) % 3 + 1),
                        }))
                        .collect::<Vec<_>>()
                );
            }
            v
        })
        .collect();
    for (name, display) in [("europe", "Europe"), ("unitedstates", "United States")] {
        value.push(json!({
            "id": loc_id(name),
            "name": name,
            "type": "Region",
            "displayName": display,
            "regionalDisplayName": display,
            "metadata": { "regionType": "Logical", "regionCategory": "Other", "geography": display, "geographyGroup": display },
        }));
    }
    Ok(json(StatusCode::OK, &json!({ "value": value })))
}
