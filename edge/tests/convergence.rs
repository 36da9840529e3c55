//! Two sites and the reference cloud converge (docs/architecture.md: P4, Data
//! model).
//!
//! Site A's wall clock is an hour ahead, site B's an hour behind. Each
//! site ingests its own sensor's readings; A also ingests a shared sensor's
//! readings, which both sites follow. Then, three times over, both sites
//! lose their link (sync-svc stops), and while they are apart each amends its
//! own readings, both amend the shared readings, and the cloud amends
//! readings of all three kinds; the sites come back in a different order each
//! time (A first, B first, both at once).
//!
//! After every round, every replica of every reading holds the identical
//! version, and it is the version the rule picks from the set of all versions
//! written (an oracle computed here from what each writer answered, not read
//! back from any replica). The audit logs hold every conflict; no version
//! went back and forth (the cloud saw no duplicate, each site stored every
//! pulled version exactly once and pushed only what it wrote). Run under
//! each of the three rules, on both store backends.
//!
//! Clocks that cannot be poisoned: a version stamped at the latest time a
//! clock may read, pushed to the cloud and pulled by a site, is stored and
//! flagged everywhere while both clocks stay within the bound, and the
//! reading is amended twice at the site and twice in the cloud; a site whose
//! wall clock is a day ahead delivers every reading and converges.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use edge_cloud_link::CloudClient;
use edge_cloud_link::contract::{self, AmendmentRequest, VersionRecord};
use edge_proto::v1 as pb;
use edge_testkit::StoreClients;
use edge_testkit::{Backend, InProcessCloud, TestDatabase, eventually, on_both_backends};
use edge_versioning::{CLOUD_SITE_ID, History, Hlc, OffsetClock, Policy, Stamp, Version};
use sync_svc::SyncConfig;

use common::reading;
use common::site::{Site, TOKEN, quick_sync, token_of};

const DEADLINE: Duration = Duration::from_secs(120);
const HOUR_US: i64 = 3_600_000_000;
const SHARED: &str = "shared/1";
/// Readings per sensor.
const READINGS: usize = 6;

/// Which site comes back first.
#[derive(Debug, Clone, Copy)]
enum Order {
    AThenB,
    BThenA,
    Together,
}

/// Who wrote a version, for the test's own books.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Writer {
    A,
    B,
    Cloud,
    /// A site whose clock reads the end of time, pushing straight to the
    /// cloud.
    Broken,
}

/// One version written, by whom and in which round (0 before the first).
#[derive(Debug, Clone)]
struct Written {
    version: Version,
    writer: Writer,
    round: usize,
}

/// Every version written of every reading, as the writers answered.
#[derive(Default)]
struct Ledger {
    versions: HashMap<String, Vec<Written>>,
    /// The round being played.
    round: usize,
}

impl Ledger {
    fn record(&mut self, writer: Writer, reading_id: &str, version: Version) {
        let versions = self.versions.entry(reading_id.to_owned()).or_default();
        assert!(
            !versions.iter().any(|w| w.version.stamp == version.stamp),
            "{writer:?} wrote a stamp twice: {}",
            version.stamp
        );
        versions.push(Written {
            version,
            writer,
            round: self.round,
        });
    }

    /// The version the rule picks from every version written, leaving out
    /// what `pending` wrote this round (a site that has not pushed yet).
    fn winner(&self, reading_id: &str, policy: Policy, pending: Option<Writer>) -> Stamp {
        let versions: Vec<Version> = self.versions[reading_id]
            .iter()
            .filter(|w| Some(w.writer) != pending || w.round != self.round)
            .map(|w| w.version.clone())
            .collect();
        History::new(versions, policy)
            .winner()
            .map(|v| v.stamp.clone())
            .unwrap_or_else(|| panic!("no version of {reading_id}"))
    }

    /// Who wrote `reading_id` this round.
    fn round_writers(&self, reading_id: &str) -> BTreeSet<Writer> {
        self.versions[reading_id]
            .iter()
            .filter(|w| w.round == self.round && w.version.base.is_some())
            .map(|w| w.writer)
            .collect()
    }

    /// Versions `writer` wrote.
    fn written_by(&self, writer: Writer) -> u64 {
        self.versions
            .values()
            .flatten()
            .filter(|w| w.writer == writer)
            .count() as u64
    }

    /// Versions of `reading_ids` written by anyone but `writer` (leaving
    /// out what `pending` wrote this round).
    fn foreign_versions<'a>(
        &self,
        reading_ids: impl Iterator<Item = &'a String>,
        writer: Writer,
        pending: Option<Writer>,
    ) -> u64 {
        reading_ids
            .flat_map(|id| &self.versions[id])
            .filter(|w| w.writer != writer)
            .filter(|w| Some(w.writer) != pending || w.round != self.round)
            .count() as u64
    }
}

fn stamp_of_pb(stamp: Option<&pb::VersionStamp>) -> Stamp {
    let stamp = stamp.expect("a version stamp");
    let hlc = stamp.hlc.expect("an HLC");
    Stamp::new(
        Hlc {
            physical_ms: hlc.physical_ms,
            logical: u16::try_from(hlc.logical).expect("logical fits"),
        },
        stamp.site_id.clone(),
    )
}

fn stamp_of_contract(stamp: &contract::VersionStamp) -> Stamp {
    Stamp::new(
        Hlc {
            physical_ms: stamp.hlc.physical_ms,
            logical: u16::try_from(stamp.hlc.logical).expect("logical fits"),
        },
        stamp.site_id.clone(),
    )
}

/// One site of the test, with what it holds and how it syncs.
struct TestSite {
    site: Site,
    writer: Writer,
    config: SyncConfig,
    /// Reading ids this site holds (its own and the shared sensor's).
    holds: BTreeSet<String>,
    own: Vec<String>,
    /// Versions received from the feed by earlier sync-svc runs.
    pulled_before: u64,
}

impl TestSite {
    async fn start(
        db: &TestDatabase,
        cloud: &InProcessCloud,
        site_id: &str,
        offset_us: i64,
        writer: Writer,
        policy: Policy,
    ) -> TestSite {
        let mut config = SyncConfig {
            shared_sensors: vec![SHARED.to_owned()],
            conflict_policy: Some(policy),
            ..quick_sync(&cloud.url)
        };
        config.link.cloud_token = Some(token_of(site_id));
        let site_id = site_id.to_owned();
        let site = Site::start_clocked(
            db,
            config.clone(),
            Arc::new(OffsetClock { offset_us }),
            |store| store.site_id = Some(site_id),
        )
        .await;
        TestSite {
            site,
            writer,
            config,
            holds: BTreeSet::new(),
            own: Vec::new(),
            pulled_before: 0,
        }
    }

    fn store(&self) -> StoreClients {
        self.site.mesh.store_client.clone()
    }

    async fn ingest(&mut self, sensor: &str) -> Vec<String> {
        let readings: Vec<pb::Reading> = (0..READINGS)
            .map(|i| reading(sensor, 10.0 + i as f64))
            .collect();
        let ids: Vec<String> = readings.iter().map(|r| r.id.clone()).collect();
        self.site
            .mesh
            .ingest_client
            .ingest(pb::IngestRequest { readings })
            .await
            .expect("ingest");
        self.holds.extend(ids.iter().cloned());
        ids
    }

    /// Every reading the site holds, by id.
    async fn current(&self) -> HashMap<String, pb::StoredReading> {
        common::query_all(&mut self.store())
            .await
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect()
    }

    async fn disconnect(&mut self) {
        self.pulled_before += self.site.status().await.pulled_since_start;
        self.site.disconnect().await;
    }

    async fn reconnect(&mut self) {
        self.site.reconnect(&self.config).await;
    }

    /// Amends `reading_id` here (offline), recording the new version on top
    /// of the one the site held.
    async fn amend(
        &self,
        ledger: &mut Ledger,
        held: &mut HashMap<String, pb::StoredReading>,
        reading_id: &str,
        request: pb::AmendRequest,
    ) {
        let base = stamp_of_pb(held[reading_id].version.as_ref());
        let amended = self
            .store()
            .operations
            .amend(pb::AmendRequest {
                reading_id: reading_id.to_owned(),
                ..request
            })
            .await
            .expect("amend")
            .into_inner()
            .reading
            .expect("the amended reading");
        let stamp = stamp_of_pb(amended.version.as_ref());
        assert_eq!(stamp.site_id, self.site.site_id);
        assert!(stamp.hlc > base.hlc, "an amendment's HLC passes its base");
        ledger.record(
            self.writer,
            reading_id,
            Version {
                stamp,
                base: Some(base),
            },
        );
        held.insert(reading_id.to_owned(), amended);
    }
}

/// A client of the cloud's public API, as the data team would use it.
fn cloud_client(cloud: &InProcessCloud) -> CloudClient {
    cloud_client_as(cloud, edge_testkit::TEST_SITE_ID)
}

/// A client of the cloud's public API with `site`'s token.
fn cloud_client_as(cloud: &InProcessCloud, site: &str) -> CloudClient {
    let mut config = quick_sync(&cloud.url);
    config.link.cloud_token = Some(cloud.site_token(site));
    config
        .link
        .client(config.client_use())
        .expect("cloud client")
        .expect("a cloud URL")
}

/// Records the first version of each reading `site` originated, as it
/// holds them.
fn record_first_versions(
    ledger: &mut Ledger,
    site: &TestSite,
    held: &HashMap<String, pb::StoredReading>,
) {
    for (id, r) in held {
        if r.site_id == site.site.site_id {
            let stamp = stamp_of_pb(r.version.as_ref());
            ledger.record(site.writer, id, Version { stamp, base: None });
        }
    }
}

/// An amendment of a site: new temperature, quality and note.
fn site_amendment(temperature: f64, quality: pb::Quality, note: &str) -> pb::AmendRequest {
    pb::AmendRequest {
        temperature_celsius: Some(temperature),
        quality: quality as i32,
        note: Some(note.to_owned()),
        ..Default::default()
    }
}

/// Amends `reading_id` in the cloud, recording the version it made.
async fn cloud_amend(cloud: &CloudClient, ledger: &mut Ledger, reading_id: &str, temperature: f64) {
    let state = cloud
        .amend(
            reading_id,
            &AmendmentRequest {
                temperature_celsius: Some(temperature),
                quality: Some(contract::Quality::Suspect),
                note: Some(format!("calibration {temperature}")),
                ..Default::default()
            },
        )
        .await
        .expect("the cloud amends");
    let made = &state.current;
    assert_eq!(made.version.site_id, CLOUD_SITE_ID);
    assert!(
        made.written_by
            .as_deref()
            .is_some_and(|by| by.starts_with("site:")),
        "the cloud records which site's token asked: {made:?}"
    );
    ledger.record(
        Writer::Cloud,
        reading_id,
        Version {
            stamp: stamp_of_contract(&made.version),
            base: made.base.as_ref().map(stamp_of_contract),
        },
    );
}

/// Waits until the cloud and every site hold, for every reading they hold,
/// the version the rule picks from everything written; every site has
/// pushed all it wrote, stored every version written elsewhere of what it
/// holds, and reported receiving at least that many from the feed.
async fn converged(
    cloud: &InProcessCloud,
    sites: &[&TestSite],
    ledger: &Ledger,
    policy: Policy,
    pending: Option<Writer>,
    what: &str,
) -> HashMap<String, VersionRecord> {
    eventually(DEADLINE, what, || async {
        for site in sites {
            let stats = site.site.stats().await;
            let foreign = ledger.foreign_versions(site.holds.iter(), site.writer, pending);
            let received = site.pulled_before + site.site.status().await.pulled_since_start;
            if stats.unsynced_versions > 0 || stats.remote_versions != foreign || received < foreign
            {
                return None;
            }
        }
        let current: HashMap<String, VersionRecord> = cloud
            .admin
            .all_current(None)
            .await
            .ok()?
            .into_iter()
            .map(|v| (v.reading_id.clone(), v))
            .collect();
        for id in ledger.versions.keys() {
            let winner = ledger.winner(id, policy, pending);
            if stamp_of_contract(&current.get(id)?.version) != winner {
                return None;
            }
        }
        for site in sites {
            let held = site.current().await;
            for id in &site.holds {
                let reading = held.get(id)?;
                if stamp_of_pb(reading.version.as_ref()) != ledger.winner(id, policy, pending) {
                    return None;
                }
            }
        }
        Some(current)
    })
    .await
}

/// The values of the current version are the same everywhere (not only
/// its stamp).
async fn assert_same_values(site: &TestSite, current: &HashMap<String, VersionRecord>) {
    let held = site.current().await;
    for id in &site.holds {
        let here = &held[id];
        let cloud = &current[id];
        let quality = sync_svc::convert::quality_to_pb(cloud.quality);
        assert_eq!(
            (
                here.temperature_celsius,
                here.humidity_percent,
                here.quality,
                here.note.as_str(),
                here.sensor_id.as_str(),
                here.seq,
                here.written_by.as_str(),
            ),
            (
                cloud.temperature_celsius,
                cloud.humidity_percent,
                quality as i32,
                cloud.note.as_deref().unwrap_or(""),
                cloud.sensor_id.as_str(),
                cloud.seq,
                cloud.written_by.as_deref().unwrap_or(""),
            ),
            "{} holds other values of {id} than the cloud",
            site.site.site_id
        );
    }
}

async fn site_conflicts(site: &TestSite) -> Vec<pb::ConflictEntry> {
    site.store()
        .operations
        .list_conflicts(pb::ListConflictsRequest {
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .expect("conflicts")
        .into_inner()
        .conflicts
}

async fn two_sites_and_the_cloud_converge(db: &TestDatabase, policy: Policy) {
    let backend = if db.url.is_some() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let db_b = TestDatabase::new(backend)
        .await
        .expect("a second database of the same backend");
    let cloud = InProcessCloud::builder(TOKEN).policy(policy).start().await;
    let client = cloud_client(&cloud);
    let mut a = TestSite::start(db, &cloud, "site-a", HOUR_US, Writer::A, policy).await;
    let mut b = TestSite::start(&db_b, &cloud, "site-b", -HOUR_US, Writer::B, policy).await;

    // Connected: each site's readings reach the cloud, and B follows the
    // shared sensor's readings, which A originated.
    let mut ledger = Ledger::default();
    a.own = a.ingest("a/1").await;
    let shared = a.ingest(SHARED).await;
    b.own = b.ingest("b/1").await;
    b.holds.extend(shared.iter().cloned());
    for site in [&a, &b] {
        let held = eventually(DEADLINE, "the site to hold its readings", || async {
            let held = site.current().await;
            site.holds
                .iter()
                .filter(|id| !shared.contains(id) || site.writer == Writer::A)
                .all(|id| held.contains_key(id))
                .then_some(held)
        })
        .await;
        record_first_versions(&mut ledger, site, &held);
    }
    let current = converged(&cloud, &[&a, &b], &ledger, policy, None, "the first sync").await;
    assert_same_values(&b, &current).await;

    let orders = [Order::AThenB, Order::BThenA, Order::Together];
    for (round, order) in orders.into_iter().enumerate() {
        ledger.round = round + 1;
        a.disconnect().await;
        b.disconnect().await;
        let r = round as f64 * 100.0;
        let mut held_a = a.current().await;
        let mut held_b = b.current().await;
        // A: its own readings 0..4 (reading `round` twice), shared 0..3.
        for i in 0..4 {
            let id = a.own[i].clone();
            let req = site_amendment(r + 30.0 + i as f64, pb::Quality::Bad, "pump A faulty");
            a.amend(&mut ledger, &mut held_a, &id, req).await;
        }
        let id = a.own[round].clone();
        let req = site_amendment(r + 39.5, pb::Quality::Suspect, "A: second look");
        a.amend(&mut ledger, &mut held_a, &id, req).await;
        for id in shared.iter().take(3) {
            let req = site_amendment(r + 31.0, pb::Quality::Suspect, "A: shared drift");
            a.amend(&mut ledger, &mut held_a, id, req).await;
        }
        // B: its own readings 0..4, shared 1..5 (shared 1 and 2 also by A).
        for i in 0..4 {
            let id = b.own[i].clone();
            let req = site_amendment(r + 50.0 + i as f64, pb::Quality::Bad, "pump B faulty");
            b.amend(&mut ledger, &mut held_b, &id, req).await;
        }
        for id in shared.iter().skip(1).take(4) {
            let req = site_amendment(r + 51.0, pb::Quality::Bad, "B: shared drift");
            b.amend(&mut ledger, &mut held_b, id, req).await;
        }
        // The cloud: readings 2..6 of each kind (shared 2 by all three).
        for id in a.own[2..].iter().chain(&b.own[2..]).chain(&shared[2..]) {
            cloud_amend(&client, &mut ledger, id, r + 70.0).await;
        }

        match order {
            Order::AThenB => {
                a.reconnect().await;
                converged(&cloud, &[&a], &ledger, policy, Some(Writer::B), "A alone").await;
                b.reconnect().await;
            }
            Order::BThenA => {
                b.reconnect().await;
                converged(&cloud, &[&b], &ledger, policy, Some(Writer::A), "B alone").await;
                a.reconnect().await;
            }
            Order::Together => {
                a.reconnect().await;
                b.reconnect().await;
            }
        }
        let what = format!("round {round} ({order:?}) to converge under {policy}");
        let current = converged(&cloud, &[&a, &b], &ledger, policy, None, &what).await;
        assert_same_values(&a, &current).await;
        assert_same_values(&b, &current).await;

        // Every reading written concurrently by two sides this round is in
        // the cloud's audit log, and in the log of each site that amended it.
        let cloud_log = cloud
            .admin
            .all_conflicts(None)
            .await
            .expect("cloud conflicts");
        let a_log = site_conflicts(&a).await;
        let b_log = site_conflicts(&b).await;
        for id in ledger.versions.keys() {
            let writers = ledger.round_writers(id);
            if writers.len() < 2 {
                continue;
            }
            assert!(
                cloud_log.iter().any(|c| &c.reading_id == id),
                "round {round}: the cloud's audit log misses {id} ({writers:?})"
            );
            for (site, log) in [(&a, &a_log), (&b, &b_log)] {
                if writers.contains(&site.writer) {
                    assert!(
                        log.iter().any(|c| &c.reading_id == id),
                        "round {round}: {}'s audit log misses {id} ({writers:?})",
                        site.site.site_id
                    );
                }
            }
        }
        for c in &cloud_log {
            assert_eq!(c.policy, policy.as_str());
        }
        for c in a_log.iter().chain(&b_log) {
            assert_eq!(c.policy, policy.as_str());
            assert!(c.winner == "local" || c.winner == "remote", "{c:?}");
            // Every version here was written by a known identity (a
            // gateway, an operator, a site token asking the cloud), and
            // the log names both.
            assert!(
                !c.local_written_by.is_empty() && !c.remote_written_by.is_empty(),
                "{c:?}"
            );
        }
    }

    // Nothing went back and forth: the cloud stored every site version once
    // and saw no duplicate; each site pushed only what it wrote, and stored
    // each version it pulled exactly once (none of its own came back).
    let stats = cloud.admin.stats().await.expect("cloud stats");
    let site_written = ledger.written_by(Writer::A) + ledger.written_by(Writer::B);
    assert_eq!(stats.versions_duplicate, 0, "{stats:?}");
    assert_eq!(stats.versions_accepted, site_written, "{stats:?}");
    assert_eq!(stats.amendments, ledger.written_by(Writer::Cloud));
    for site in [&mut a, &mut b] {
        let s = site.site.stats().await;
        let wrote = ledger.written_by(site.writer);
        let foreign = ledger.foreign_versions(site.holds.iter(), site.writer, None);
        assert_eq!(s.synced_versions, wrote, "{}: {s:?}", site.site.site_id);
        assert_eq!(s.remote_versions, foreign, "{}: {s:?}", site.site.site_id);
        assert_eq!(s.total_versions, wrote + foreign);
        let coverage = cloud
            .admin
            .coverage(
                &cloud.url,
                &site.site.site_id,
                &token_of(&site.site.site_id),
            )
            .await
            .expect("coverage");
        assert_eq!(coverage.versions, wrote, "{coverage:?}");
        site.disconnect().await;
        assert_eq!(
            site.pulled_before, foreign,
            "{} received a version from the feed twice (or one of its own)",
            site.site.site_id
        );
    }

    a.site.stop().await;
    b.site.stop().await;
    cloud.stop().await;
    db_b.cleanup().await;
}

async fn lww(db: &TestDatabase) {
    two_sites_and_the_cloud_converge(db, Policy::Lww).await;
}

async fn cloud_wins(db: &TestDatabase) {
    two_sites_and_the_cloud_converge(db, Policy::CloudWins).await;
}

async fn edge_wins(db: &TestDatabase) {
    two_sites_and_the_cloud_converge(db, Policy::EdgeWins).await;
}

on_both_backends!(lww);
on_both_backends!(cloud_wins);
on_both_backends!(edge_wins);

/// A site configured for `cloud-wins` in an `lww` deployment says so (status,
/// log) and resolves by `lww`, the rule the cloud announces: otherwise the
/// replicas would disagree.
#[tokio::test]
async fn a_site_that_disagrees_about_the_rule_follows_the_cloud() {
    let db = TestDatabase::new(Backend::Sqlite)
        .await
        .expect("SQLite fixture");
    let cloud = InProcessCloud::builder(TOKEN)
        .policy(Policy::Lww)
        .start()
        .await;
    let client = cloud_client(&cloud);
    let mut site =
        TestSite::start(&db, &cloud, "site-a", HOUR_US, Writer::A, Policy::CloudWins).await;
    let ids = site.ingest("a/1").await;
    let mut ledger = Ledger::default();
    let held = eventually(DEADLINE, "the readings stored", || async {
        let held = site.current().await;
        (held.len() == ids.len()).then_some(held)
    })
    .await;
    record_first_versions(&mut ledger, &site, &held);
    converged(
        &cloud,
        &[&site],
        &ledger,
        Policy::Lww,
        None,
        "the first sync",
    )
    .await;
    let status = site.site.status().await;
    assert_eq!(status.conflict_policy, "lww");
    assert!(status.conflict_policy_mismatch, "{status:?}");

    // The site (an hour ahead) and the cloud amend the same reading apart:
    // under lww the site's version wins, under cloud-wins the cloud's would.
    ledger.round = 1;
    site.disconnect().await;
    let mut held = site.current().await;
    let req = site_amendment(41.0, pb::Quality::Bad, "site");
    site.amend(&mut ledger, &mut held, &ids[0], req).await;
    cloud_amend(&client, &mut ledger, &ids[0], 42.0).await;
    site.reconnect().await;
    converged(
        &cloud,
        &[&site],
        &ledger,
        Policy::Lww,
        None,
        "lww to settle it",
    )
    .await;
    let current = site.current().await;
    assert_eq!(current[&ids[0]].temperature_celsius, 41.0);
    assert_ne!(
        ledger.winner(&ids[0], Policy::CloudWins, None),
        ledger.winner(&ids[0], Policy::Lww, None),
        "the two rules must disagree here for the test to mean anything"
    );

    site.site.stop().await;
    cloud.stop().await;
    db.cleanup().await;
}

/// The latest time a clock may read: the largest physical part a reading's
/// first version may carry ("near the clock's limit").
const TOP_MS: u64 = (1 << 47) - 1 - (1 << 32);
/// The default clock-skew bound, which the cloud announces.
const BOUND_MS: u64 = 3_600_000;
const DAY_US: i64 = 24 * HOUR_US;
const BROKEN_SITE: &str = "ship-x";

fn wall_ms(offset_us: i64) -> u64 {
    use edge_versioning::WallClock as _;
    ((edge_versioning::SystemClock.now_us() + offset_us) / 1_000) as u64
}

/// The site's clock as its stats show it.
async fn clock_ms(site: &TestSite) -> u64 {
    site.site.stats().await.hlc.expect("an HLC").physical_ms
}

/// The cloud's clock, as its next amendment of a reading stamped in the
/// past shows it: amends `reading_id` and records the version.
async fn cloud_clock_ms(cloud: &CloudClient, ledger: &mut Ledger, reading_id: &str) -> u64 {
    cloud_amend(cloud, ledger, reading_id, 1.5).await;
    ledger.versions[reading_id]
        .last()
        .expect("recorded")
        .version
        .stamp
        .hlc
        .physical_ms
}

/// Flagged (stamped beyond the bound when it arrived) at the site.
fn flagged(reading: &pb::StoredReading) -> bool {
    reading.version_clock_ahead.is_some()
}

async fn clocks_cannot_be_poisoned_and_data_is_never_refused(db: &TestDatabase) {
    let backend = if db.url.is_some() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let db_c = TestDatabase::new(backend)
        .await
        .expect("a second database of the same backend");
    let policy = Policy::Lww;
    let cloud = InProcessCloud::builder(TOKEN)
        .policy(policy)
        .site(BROKEN_SITE)
        .start()
        .await;
    let client = cloud_client(&cloud);
    let mut a = TestSite::start(db, &cloud, "site-a", 0, Writer::A, policy).await;
    // Site C's wall clock runs a day fast.
    let mut c = TestSite::start(&db_c, &cloud, "site-c", DAY_US, Writer::B, policy).await;

    let mut ledger = Ledger::default();
    a.own = a.ingest("a/1").await;
    let shared = a.ingest(SHARED).await;
    c.own = c.ingest("c/1").await;
    // Both follow the shared sensor, which A's readings are of.
    c.holds.extend(shared.iter().cloned());
    for site in [&a, &c] {
        let held = eventually(DEADLINE, "the site to hold its readings", || async {
            let held = site.current().await;
            site.holds
                .iter()
                .filter(|id| !shared.contains(id) || site.writer == Writer::A)
                .all(|id| held.contains_key(id))
                .then_some(held)
        })
        .await;
        record_first_versions(&mut ledger, site, &held);
    }
    converged(&cloud, &[&a, &c], &ledger, policy, None, "the first sync").await;

    // Every reading of the day-fast site was delivered and is flagged at the
    // cloud, which did not follow its clock.
    let coverage = cloud
        .admin
        .coverage(&cloud.url, "site-c", &token_of("site-c"))
        .await
        .expect("coverage");
    assert_eq!(
        (coverage.held_seqs, coverage.highest_contiguous_seq),
        (READINGS as u64, READINGS as u64),
        "{coverage:?}"
    );
    let flagged_at_cloud: BTreeSet<String> = cloud
        .admin
        .all_clock_ahead()
        .await
        .expect("flagged versions")
        .into_iter()
        .map(|v| v.reading_id)
        .collect();
    assert!(
        c.own.iter().all(|id| flagged_at_cloud.contains(id)),
        "a day ahead is beyond the bound: {flagged_at_cloud:?}"
    );
    let cloud_ms = cloud_clock_ms(&client, &mut ledger, &a.own[5]).await;
    assert!(
        cloud_ms <= wall_ms(0) + BOUND_MS,
        "the cloud's clock followed site C"
    );

    // A broken site pushes versions stamped at the latest time a clock may
    // read, counter full: an amendment of one of A's readings and a first
    // version of a shared sensor's reading. The cloud stores both.
    let top = contract::VersionStamp {
        hlc: contract::Hlc {
            physical_ms: TOP_MS,
            logical: 65_535,
        },
        site_id: BROKEN_SITE.into(),
    };
    let poisoned = a.own[0].clone();
    let held_by_cloud = client
        .reading(&poisoned)
        .await
        .expect("A's reading")
        .current;
    let amendment = VersionRecord {
        version: top.clone(),
        base: Some(held_by_cloud.version.clone()),
        temperature_celsius: 66.0,
        ..held_by_cloud.clone()
    };
    let foreign = VersionRecord {
        reading_id: uuid::Uuid::now_v7().to_string(),
        origin_site_id: BROKEN_SITE.into(),
        seq: 1,
        sensor_id: SHARED.into(),
        version: top.clone(),
        base: None,
        ..held_by_cloud
    };
    let pushed = cloud_client_as(&cloud, BROKEN_SITE)
        .push(
            BROKEN_SITE,
            "from-the-end-of-time",
            &contract::PushBatch {
                versions: vec![amendment.clone(), foreign.clone()],
            },
        )
        .await
        .expect("the push is answered");
    assert!(
        pushed
            .results
            .iter()
            .all(|r| r.status == contract::VersionStatus::Accepted),
        "never refused for its clock: {pushed:?}"
    );
    for record in [&amendment, &foreign] {
        ledger.record(
            Writer::Broken,
            &record.reading_id,
            Version {
                stamp: stamp_of_contract(&record.version),
                base: record.base.as_ref().map(stamp_of_contract),
            },
        );
    }
    a.holds.insert(foreign.reading_id.clone());
    c.holds.insert(foreign.reading_id.clone());
    converged(
        &cloud,
        &[&a, &c],
        &ledger,
        policy,
        None,
        "A to pull the far-ahead versions",
    )
    .await;

    // Stored and flagged at both; both clocks stayed within the bound.
    let held = a.current().await;
    assert!(flagged(&held[&poisoned]) && flagged(&held[&foreign.reading_id]));
    assert!(flagged(&c.current().await[&foreign.reading_id]));
    assert_eq!(held[&poisoned].temperature_celsius, 66.0);
    assert!(a.site.stats().await.clock_ahead_versions >= 2);
    assert!(
        clock_ms(&a).await <= wall_ms(0) + BOUND_MS,
        "A's clock was dragged"
    );
    let flagged_at_cloud: BTreeSet<String> = cloud
        .admin
        .all_clock_ahead()
        .await
        .expect("flagged versions")
        .into_iter()
        .map(|v| v.reading_id)
        .collect();
    assert!(flagged_at_cloud.contains(&poisoned) && flagged_at_cloud.contains(&foreign.reading_id));
    let cloud_ms = cloud_clock_ms(&client, &mut ledger, &a.own[4]).await;
    assert!(
        cloud_ms <= wall_ms(0) + BOUND_MS,
        "the cloud's clock was dragged"
    );

    // Each far-ahead reading amended twice at the site (apart from the
    // cloud) and twice in the cloud, then once more at the site after both
    // converged: every amendment works and they converge.
    ledger.round = 1;
    a.disconnect().await;
    let mut held_a = a.current().await;
    for id in [&poisoned, &foreign.reading_id] {
        for n in 0..2 {
            let req = site_amendment(40.0 + f64::from(n), pb::Quality::Suspect, "A: far ahead");
            a.amend(&mut ledger, &mut held_a, id, req).await;
            cloud_amend(&client, &mut ledger, id, 50.0 + f64::from(n)).await;
        }
    }
    a.reconnect().await;
    converged(
        &cloud,
        &[&a, &c],
        &ledger,
        policy,
        None,
        "the amendments at the top",
    )
    .await;
    ledger.round = 2;
    let mut held_a = a.current().await;
    for id in [&poisoned, &foreign.reading_id] {
        let req = site_amendment(45.0, pb::Quality::Good, "A: settled");
        a.amend(&mut ledger, &mut held_a, id, req).await;
    }
    // The day-fast site's reading, amended twice in the cloud and by C.
    for n in 0..2 {
        cloud_amend(&client, &mut ledger, &c.own[0], 60.0 + f64::from(n)).await;
    }
    converged(
        &cloud,
        &[&a, &c],
        &ledger,
        policy,
        None,
        "the cloud's amendments of C",
    )
    .await;
    let mut held_c = c.current().await;
    let req = site_amendment(70.0, pb::Quality::Good, "C: checked");
    let id = c.own[0].clone();
    c.amend(&mut ledger, &mut held_c, &id, req).await;
    let current = converged(&cloud, &[&a, &c], &ledger, policy, None, "everything").await;
    assert_same_values(&a, &current).await;
    assert_same_values(&c, &current).await;

    assert!(clock_ms(&a).await <= wall_ms(0) + BOUND_MS);
    assert!(clock_ms(&c).await <= wall_ms(DAY_US) + BOUND_MS);
    let cloud_ms = cloud_clock_ms(&client, &mut ledger, &a.own[3]).await;
    assert!(cloud_ms <= wall_ms(0) + BOUND_MS);
    let stats = c.site.stats().await;
    assert_eq!(stats.unsynced_versions, 0);
    assert_eq!(stats.dead_letters, 0, "nothing refused");
    assert_eq!(
        a.site.stats().await.dead_letters,
        0,
        "A's amendments in the headroom were accepted"
    );
    let announced = a.site.stats().await;
    assert!(announced.max_clock_skew_announced, "{announced:?}");

    a.site.stop().await;
    c.site.stop().await;
    cloud.stop().await;
    db_c.cleanup().await;
}

on_both_backends!(clocks_cannot_be_poisoned_and_data_is_never_refused);
