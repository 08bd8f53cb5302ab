//! Anomaly stories on both backends: the daily usage series the detector
//! reads (usage only, dense, from the first day of cost), first days of
//! usage per service and region, contributors ranked by their share of a
//! change, incidents stored once however often found, listed, filtered and
//! paged within one organisation, and top movers.

use chrono::{Duration, NaiveDate};
use cloudkeep_domain::ConnectionId;
use cloudkeep_domain::anomaly::{
    AnomalySettings, Direction, IncidentKind, MoverDimension, MoverPeriod, detect,
};
use cloudkeep_store::{
    Backfill, ContributorKind, CostLine, IncidentFilter, MeterInfo, NewIncident, OrgScope,
    PageRequest, SpendPull, Store, UsageSeries,
};
use cloudkeep_testkit::{TestStore, both_backends};

use super::{connect, keyfile, org};

fn meter(service: &str, name: &str, category: &str) -> MeterInfo {
    MeterInfo {
        meter: name.into(),
        service_name: Some(service.into()),
        charge_category: category.into(),
        pricing_category: Some("Standard".into()),
        commitment_status: None,
        charge_type: category.into(),
    }
}

fn start() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 8, 3).expect("date")
}

/// Each series read alone equals the one read with all of them; an
/// unknown service has none.
async fn each_alone_is_the_same(
    store: &Store,
    scope: &OrgScope,
    windows: &[(NaiveDate, &[UsageSeries])],
    to: NaiveDate,
) {
    for (from, all) in windows {
        for s in *all {
            let one = store
                .spend_usage_series_of(scope, *from, to, &s.subscription.to_uppercase(), &s.service)
                .await
                .expect("one series");
            assert_eq!(one.as_ref(), Some(s), "from {from}");
        }
    }
    let (from, all) = windows[0];
    let none = store
        .spend_usage_series_of(scope, from, to, &all[0].subscription, "No Such Service")
        .await
        .expect("none");
    assert_eq!(none, None);
}

async fn incidents_are_found_explained_and_stored_once(b: TestStore) {
    let store = &b.store;
    let (scope, _) = org(store, "anomalies@example.com").await;
    let (_dir, keys) = keyfile();
    let conn: ConnectionId = connect(store, &scope, &keys, "s3cret", "SUB-A").await;
    let sub = store
        .connection(&scope, conn)
        .await
        .expect("conn")
        .subscriptions[0]
        .clone();
    let db1 =
        "/subscriptions/sub-a/resourcegroups/data/providers/microsoft.sql/servers/s/databases/db1";
    let db2 =
        "/subscriptions/sub-a/resourcegroups/data/providers/microsoft.sql/servers/s/databases/db2";
    let vm =
        "/subscriptions/sub-a/resourcegroups/web/providers/microsoft.compute/virtualmachines/vm1";
    let days = 90;
    let to = start() + Duration::days(days - 1);
    let mut lines = Vec::new();
    for i in 0..days {
        let day = start() + Duration::days(i);
        let wobble = 1.0 + ((i * 37 % 11) as f64 - 5.0) / 100.0;
        // db1 spikes 6x on days 80-82; db2 is steady.
        let spike = if (80..=82).contains(&i) { 6.0 } else { 1.0 };
        for (id, m, cost) in [
            (db1, "vCore", 40.0 * wobble * spike),
            (db2, "vCore", 20.0 * wobble),
            (db1, "Storage", 2.0),
        ] {
            lines.push(CostLine {
                day,
                resource_id: Some(id.into()),
                meter: meter("SQL Database", m, "Usage"),
                billed: cost,
                effective: cost,
            });
        }
        // Virtual machines begin on day 60; a purchase is never usage.
        if i >= 60 {
            lines.push(CostLine {
                day,
                resource_id: Some(vm.into()),
                meter: meter("Virtual Machines", "D4s v5", "Usage"),
                billed: 10.0,
                effective: 10.0,
            });
        }
        if i == 81 {
            lines.push(CostLine {
                day,
                resource_id: None,
                meter: meter("SQL Database", "Reserved", "Purchase"),
                billed: 5000.0,
                effective: 5000.0,
            });
        }
    }
    let pull = SpendPull {
        from: start(),
        to,
        currency: "EUR".into(),
        lines,
        totals: Vec::new(),
    };
    let position = Backfill {
        start_month: start(),
        next_month: None,
        months_done: 1,
        months_total: 1,
        pulled_through: Some(to),
    };
    store
        .record_spend_pull(&scope, &sub, &pull, &position)
        .await
        .expect("pull");

    // The series: usage only, from the first day of cost.
    let series = store
        .spend_usage_series(&scope, start(), to)
        .await
        .expect("series");
    assert_eq!(series.len(), 2, "{series:?}");
    // One series alone (an incident's page) is the same series, over the
    // window and over one that starts after the series' first day: as it
    // comes (SQL while the projection builds), then from the projection
    // once it stands for the revision.
    let later = start() + chrono::Duration::days(10);
    let later_series = store
        .spend_usage_series(&scope, later, to)
        .await
        .expect("later series");
    assert_eq!(later_series.len(), 2);
    let windows = [(start(), &series[..]), (later, &later_series[..])];
    each_alone_is_the_same(store, &scope, &windows, to).await;
    store.spend_columns_warm(&scope).await.expect("projection");
    each_alone_is_the_same(store, &scope, &windows, to).await;
    // All series and the first days from the projection are SQL's (an
    // instance with no projection reads SQL).
    let sql_only = Store::open(&b.url)
        .await
        .expect("another instance")
        .with_spend_column_rows(0);
    for from in [start(), later, to - Duration::days(3)] {
        let projected = store
            .spend_usage_series(&scope, from, to)
            .await
            .expect("projected");
        let read = sql_only
            .spend_usage_series(&scope, from, to)
            .await
            .expect("sql");
        assert_eq!(projected, read, "from {from}");
        assert!(!read.is_empty());
    }
    let first_days = |mut f: Vec<cloudkeep_store::FirstUsage>| {
        f.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        f
    };
    assert_eq!(
        first_days(store.spend_first_usage(&scope).await.expect("projected")),
        first_days(sql_only.spend_first_usage(&scope).await.expect("sql")),
    );
    let sql = series
        .iter()
        .find(|s| s.service == "SQL Database")
        .expect("sql");
    assert_eq!(sql.start, start());
    assert_eq!(sql.values.len(), days as usize);
    assert_eq!(sql.currency, "EUR");
    assert!(
        (sql.values[81]
            - (240.0 * (1.0 + ((81 * 37 % 11) as f64 - 5.0) / 100.0)
                + 20.0 * (1.0 + ((81 * 37 % 11) as f64 - 5.0) / 100.0)
                + 2.0))
            .abs()
            < 1e-6
    );
    let vms = series
        .iter()
        .find(|s| s.service == "Virtual Machines")
        .expect("vm");
    assert_eq!(vms.start, start() + Duration::days(60));

    // First days: the VMs' service is new 60 days in; regions are unknown here.
    let firsts = store.spend_first_usage(&scope).await.expect("firsts");
    let vm_first = firsts
        .iter()
        .find(|f| f.kind == IncidentKind::NewService && f.subject == "Virtual Machines")
        .expect("vm first");
    assert_eq!(vm_first.first_day, start() + Duration::days(60));
    assert_eq!(vm_first.subscription_first_day, start());

    // The detector finds the spike; db1's vCore explains it.
    let episodes = detect(sql.start, &sql.values, &AnomalySettings::default());
    assert_eq!(episodes.len(), 1, "{episodes:?}");
    let e = &episodes[0];
    assert_eq!(e.first_day, start() + Duration::days(80));
    assert_eq!(e.last_day, start() + Duration::days(82));
    let contributors = store
        .spend_contributors(
            &scope,
            IncidentKind::Anomaly,
            &sql.subscription,
            &sql.service,
            (e.first_day, e.last_day),
            e.delta(),
        )
        .await
        .expect("contributors");
    let first = &contributors[0];
    assert_eq!(first.kind, ContributorKind::Resource);
    assert_eq!(first.item, db1);
    assert_eq!(first.name.as_deref(), Some("db1"));
    assert!(first.share > 0.95 && first.share < 1.05, "{first:?}");
    let meter = contributors
        .iter()
        .find(|c| c.kind == ContributorKind::Meter)
        .expect("a meter");
    assert_eq!(meter.item, "vCore");
    // The contributors from the projection are SQL's, for a change and for
    // new usage.
    let vm_week = (vm_first.first_day, vm_first.first_day + Duration::days(6));
    for (kind, subject, (first_day, last_day), delta) in [
        (
            IncidentKind::Anomaly,
            "SQL Database",
            (e.first_day, e.last_day),
            e.delta(),
        ),
        (IncidentKind::NewService, "Virtual Machines", vm_week, 70.0),
    ] {
        let [projected, read] = [store, &sql_only].map(|s| {
            s.spend_contributors(
                &scope,
                kind,
                &sql.subscription,
                subject,
                (first_day, last_day),
                delta,
            )
        });
        let (projected, read) = (
            projected.await.expect("projected"),
            read.await.expect("sql"),
        );
        assert!(!read.is_empty(), "{subject}");
        assert_eq!(projected.len(), read.len(), "{projected:?} {read:?}");
        for (p, r) in projected.iter().zip(&read) {
            assert_eq!((p.kind, &p.item, &p.name), (r.kind, &r.item, &r.name));
            // Summed in another order.
            assert!((p.expected - r.expected).abs() < 1e-9 && (p.actual - r.actual).abs() < 1e-9);
        }
    }
    sql_only.close().await;

    let new = NewIncident {
        kind: IncidentKind::Anomaly,
        subscription: sql.subscription.clone(),
        subscription_name: sql.subscription_name.clone(),
        subject: sql.service.clone(),
        direction: e.direction,
        first_day: e.first_day,
        last_day: e.first_day,
        expected: e.expected,
        actual: e.actual,
        max_z: Some(e.max_z),
        ended: false,
        currency: sql.currency.clone(),
        contributors: contributors.clone(),
    };
    let (stored, created) = store.record_incident(&scope, &new).await.expect("record");
    assert!(created);
    assert_eq!(stored.direction, Direction::Up);
    assert_eq!(
        stored.resources().next().map(|c| c.item.as_str()),
        Some(db1)
    );
    // Found again, longer and ended: the same incident, updated.
    let again = NewIncident {
        last_day: e.last_day,
        ended: true,
        ..new.clone()
    };
    let (updated, created) = store.record_incident(&scope, &again).await.expect("again");
    assert!(!created);
    assert_eq!(updated.id, stored.id);
    assert_eq!(updated.last_day, e.last_day);
    assert!(updated.ended);
    assert_eq!(updated.contributors.len(), contributors.len());
    assert!(
        store
            .open_incidents(&scope, IncidentKind::Anomaly)
            .await
            .expect("open")
            .is_empty()
    );

    // A second incident (new usage), then lists filtered and paged.
    let vm_new = NewIncident {
        kind: IncidentKind::NewService,
        subject: "Virtual Machines".into(),
        first_day: vm_first.first_day,
        last_day: vm_first.first_day,
        expected: 0.0,
        actual: 10.0,
        max_z: None,
        contributors: Vec::new(),
        ended: false,
        ..new.clone()
    };
    store
        .record_incident(&scope, &vm_new)
        .await
        .expect("new usage");
    let all = store
        .incidents(&scope, &IncidentFilter::default(), &PageRequest::first(1))
        .await
        .expect("list");
    assert_eq!(all.items.len(), 1);
    assert_eq!(all.items[0].kind, IncidentKind::Anomaly, "latest first");
    let rest = store
        .incidents(
            &scope,
            &IncidentFilter::default(),
            &PageRequest {
                after: all.next.clone(),
                limit: 1,
            },
        )
        .await
        .expect("page 2");
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].kind, IncidentKind::NewService);
    assert!(rest.next.is_none());
    let scope_ref = &scope;
    let only = |filter: IncidentFilter| async move {
        store
            .incidents(scope_ref, &filter, &PageRequest::default())
            .await
            .expect("list")
            .items
            .len()
    };
    assert_eq!(
        only(IncidentFilter {
            kind: Some(IncidentKind::NewService),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        only(IncidentFilter {
            subscription: Some("SUB-A".into()),
            from: Some(start() + Duration::days(82)),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        only(IncidentFilter {
            subscription: Some("sub-b".into()),
            ..Default::default()
        })
        .await,
        0
    );
    // Another organisation sees none of it.
    let (other, _) = org(store, "other@example.com").await;
    assert!(
        store
            .incidents(&other, &IncidentFilter::default(), &PageRequest::default())
            .await
            .expect("other")
            .items
            .is_empty()
    );
    assert!(store.incident(&other, stored.id).await.is_err());

    // Movers: the spike's week against the week before, by resource.
    let movers = store
        .spend_movers(
            &scope,
            MoverPeriod::Week,
            MoverDimension::Resource,
            start() + Duration::days(83),
            3,
        )
        .await
        .expect("movers");
    // (All cost moves: the purchase too.)
    let top = movers
        .movers
        .iter()
        .find(|m| m.key.as_deref() == Some(db1))
        .expect("db1 moved");
    assert!(top.change() > 500.0, "{top:?}");
    assert_eq!(movers.current.1 - movers.current.0, Duration::days(6));
}

both_backends!(incidents_are_found_explained_and_stored_once);
