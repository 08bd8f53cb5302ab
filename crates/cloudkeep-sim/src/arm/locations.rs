//! `GET /subscriptions/{s}/locations`: Azure's regions with their
//! metadata, zone mappings per subscription, and the logical geographies.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ArmResult, Ctx};
use crate::server::json;

/// A region: name, display name, geography, geography group, latitude,
/// longitude, physical location, paired region, availability zones.
struct Region(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
);

const REGIONS: &[Region] = &[
    Region(
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
    Region(
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
    Region(
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
    Region(
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
    Region(
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
    Region(
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
    Region(
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
    Region(
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
    Region(
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
    Region(
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
    Region(
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
    Region(
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
    Region(
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
    Region(
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
    Region(
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
    Region(
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
        .map(
            |Region(
                name,
                display,
                geography,
                group,
                latitude,
                longitude,
                physical,
                paired,
                zones,
            )| {
                let mut v = json!({
                    "id": loc_id(name),
                    "name": name,
                    "type": "Region",
                    "displayName": display,
                    "regionalDisplayName": format!("({}) {}", group, display),
                    "metadata": {
                        "regionType": "Physical",
                        "regionCategory": if *zones { "Recommended" } else { "Other" },
                        "geography": geography,
                        "geographyGroup": group,
                        "longitude": longitude,
                        "latitude": latitude,
                        "physicalLocation": physical,
                        "pairedRegion": [{ "name": paired, "id": loc_id(paired) }],
                    },
                });
                if *zones {
                    // Logical zones map to physical ones differently per subscription.
                    let shift = (crate::world::hash_str(0, &format!("{sub}{}", name)) % 3) as usize;
                    v["availabilityZoneMappings"] = json!(
                        (0..3)
                            .map(|i| json!({
                                "logicalZone": (i + 1).to_string(),
                                "physicalZone": format!("{}-az{}", name, (i + shift) % 3 + 1),
                            }))
                            .collect::<Vec<_>>()
                    );
                }
                v
            },
        )
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
