//! `GET /v1/sites/{site_id}/changes?after=&limit=&sensor=…`: the change
//! feed a site pulls. Versions written elsewhere (the cloud, other sites)
//! of the readings the site originated and of the shared sensors it names,
//! by the cloud's row id, never one the site wrote itself; with the
//! deployment's conflict rule and clock-skew bound, which the site applies
//! as announced.
//!
//! The cursor is a version row id. Row ids follow commit order (every
//! writer locks `cloud_state` first, see `db::versions`), so a version
//! committed after a page was read always has a larger id than the page's
//! cursor: nothing is skipped.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use edge_cloud_link::contract::{
    ChangesPage, DEFAULT_CHANGES_PAGE, MAX_CHANGES_PAGE, MAX_SHARED_SENSORS, VersionRecord,
};

use super::error::ApiError;
use super::{ApiState, check_site_id};
use crate::batch::check_sensor_id;

pub(super) async fn changes(
    State(state): State<ApiState>,
    site_id: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<ChangesPage>, ApiError> {
    let Path(site_id) = site_id.map_err(|e| ApiError::invalid_field("site_id", e.body_text()))?;
    check_site_id(&site_id)?;
    let Query(pairs) = query.map_err(|e| ApiError::invalid_field("query", e.body_text()))?;
    let feed = FeedQuery::parse(pairs)?;
    // Row ids are signed 64-bit: a cursor beyond them has nothing after it.
    let after = i64::try_from(feed.after).unwrap_or(i64::MAX);
    let page = state
        .db
        .changes(&site_id, after, feed.limit, &feed.sensors)
        .await?;
    let (versions, last_id, cut) = within_bytes(page.versions, MAX_PAGE_BYTES);
    // A page cut for its size ends at its last version; one that holds
    // every match up to an id beyond (shared sensors) ends there.
    let reached = if cut {
        last_id
    } else {
        last_id.max(page.covered_to)
    };
    let next_cursor = reached
        .and_then(|id| u64::try_from(id).ok())
        .map_or(feed.after, |id| id.max(feed.after));
    Ok(Json(ChangesPage {
        versions,
        next_cursor,
        more: page.more || cut,
        policy: state.db.policy().as_str().to_owned(),
        max_clock_skew_ms: Some(state.db.max_clock_skew().as_ms()),
    }))
}

/// Most bytes of versions one page carries, well under the 8 MiB a site
/// reads of an answer by default: 10,000 versions with long notes would
/// exceed it, and a page the site cannot read would be asked for forever.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The leading versions whose JSON fits `budget` bytes (always at least
/// one, so the cursor moves), the row id of the last one kept, and whether
/// any were left out.
fn within_bytes(
    versions: Vec<(i64, VersionRecord)>,
    budget: usize,
) -> (Vec<VersionRecord>, Option<i64>, bool) {
    let total = versions.len();
    let mut used: usize = 0;
    let mut last_id = None;
    let mut kept = Vec::with_capacity(total);
    for (id, version) in versions {
        // A record that cannot be measured is measured as too big.
        let size = serde_json::to_vec(&version).map_or(usize::MAX, |json| json.len() + 1);
        if !kept.is_empty() && used.saturating_add(size) > budget {
            break;
        }
        used = used.saturating_add(size);
        last_id = Some(id);
        kept.push(version);
    }
    let cut = kept.len() < total;
    (kept, last_id, cut)
}

/// The feed's query, checked.
#[derive(Debug, PartialEq, Eq)]
struct FeedQuery {
    after: u64,
    limit: usize,
    /// Distinct, sorted.
    sensors: Vec<String>,
}

impl FeedQuery {
    /// Parses `after` (default 0), `limit` (default [`DEFAULT_CHANGES_PAGE`],
    /// 1 to [`MAX_CHANGES_PAGE`]) and `sensor` (repeated, at most
    /// [`MAX_SHARED_SENSORS`] distinct). Anything else is refused by name,
    /// so a misspelt parameter is not silently a different feed.
    fn parse(pairs: Vec<(String, String)>) -> Result<FeedQuery, ApiError> {
        let mut after = None;
        let mut limit = None;
        let mut sensors = BTreeSet::new();
        for (key, value) in pairs {
            match key.as_str() {
                "after" => {
                    let parsed = value.parse::<u64>().map_err(|_| {
                        ApiError::invalid_field(
                            "after",
                            format!(
                                "after must be a cursor (0 to {}), got {:?}",
                                u64::MAX,
                                short(&value)
                            ),
                        )
                    })?;
                    once("after", &mut after, parsed)?;
                }
                "limit" => {
                    let parsed = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_CHANGES_PAGE).contains(n))
                        .ok_or_else(|| {
                            ApiError::invalid_field(
                                "limit",
                                format!(
                                    "limit must be between 1 and {MAX_CHANGES_PAGE}, got {:?}",
                                    short(&value)
                                ),
                            )
                        })?;
                    once("limit", &mut limit, parsed)?;
                }
                "sensor" => {
                    check_sensor_id(&value).map_err(|m| ApiError::invalid_field("sensor", m))?;
                    sensors.insert(value);
                    if sensors.len() > MAX_SHARED_SENSORS {
                        return Err(ApiError::invalid_field(
                            "sensor",
                            format!("at most {MAX_SHARED_SENSORS} shared sensors per request"),
                        ));
                    }
                }
                other => {
                    return Err(ApiError::invalid_field(
                        short(other),
                        "unknown query parameter; expected after, limit or sensor",
                    ));
                }
            }
        }
        Ok(FeedQuery {
            after: after.unwrap_or(0),
            limit: limit.unwrap_or(DEFAULT_CHANGES_PAGE),
            sensors: sensors.into_iter().collect(),
        })
    }
}

/// Sets a parameter that may be given once.
fn once<T>(name: &'static str, slot: &mut Option<T>, value: T) -> Result<(), ApiError> {
    if slot.replace(value).is_some() {
        return Err(ApiError::invalid_field(
            name,
            format!("{name} is given more than once"),
        ));
    }
    Ok(())
}

/// At most 64 characters of untrusted text, for messages.
fn short(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<FeedQuery, Option<String>> {
        FeedQuery::parse(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
        .map_err(|e| match e {
            ApiError::Invalid { field, .. } => field,
            _ => None,
        })
    }

    #[test]
    fn defaults_and_repeated_sensors() {
        assert_eq!(
            parse(&[]),
            Ok(FeedQuery {
                after: 0,
                limit: DEFAULT_CHANGES_PAGE,
                sensors: vec![]
            })
        );
        assert_eq!(
            parse(&[
                ("sensor", "b"),
                ("after", "7"),
                ("sensor", "a"),
                ("sensor", "b")
            ]),
            Ok(FeedQuery {
                after: 7,
                limit: DEFAULT_CHANGES_PAGE,
                sensors: vec!["a".into(), "b".into()]
            })
        );
    }

    #[test]
    fn a_page_stops_at_its_byte_budget_but_never_empty() {
        let version = |n: u64| VersionRecord {
            reading_id: format!("r-{n}"),
            seq: n,
            origin_site_id: "a".into(),
            sensor_id: "s".into(),
            temperature_celsius: 1.0,
            humidity_percent: 2.0,
            measured_at_us: 3,
            received_at_us: 4,
            priority: edge_cloud_link::contract::Priority::Normal,
            clock_suspect: false,
            version: edge_cloud_link::contract::VersionStamp {
                hlc: edge_cloud_link::contract::Hlc {
                    physical_ms: n,
                    logical: 0,
                },
                site_id: "a".into(),
            },
            quality: Default::default(),
            note: Some("n".repeat(1_000)),
            base: None,
            written_by: None,
        };
        let page: Vec<(i64, VersionRecord)> =
            (1..=10).map(|n| (n as i64 * 10, version(n))).collect();
        let one = serde_json::to_vec(&version(1)).map_or(0, |json| json.len() + 1);
        let (kept, last, cut) = within_bytes(page.clone(), 3 * one + one / 2);
        assert_eq!((kept.len(), last, cut), (3, Some(30), true));
        let (kept, last, cut) = within_bytes(page.clone(), 10);
        assert_eq!((kept.len(), last, cut), (1, Some(10), true));
        let (kept, last, cut) = within_bytes(page, usize::MAX);
        assert_eq!((kept.len(), last, cut), (10, Some(100), false));
    }

    #[test]
    fn bad_parameters_are_named() {
        let field = |pairs: &[(&str, &str)]| parse(pairs).err().flatten();
        assert_eq!(field(&[("limit", "0")]).as_deref(), Some("limit"));
        assert_eq!(
            field(&[("limit", &(MAX_CHANGES_PAGE + 1).to_string())]).as_deref(),
            Some("limit")
        );
        assert_eq!(field(&[("limit", "ten")]).as_deref(), Some("limit"));
        assert_eq!(field(&[("after", "-1")]).as_deref(), Some("after"));
        assert_eq!(
            field(&[("after", "1"), ("after", "2")]).as_deref(),
            Some("after")
        );
        assert_eq!(field(&[("sensor", "")]).as_deref(), Some("sensor"));
        assert_eq!(field(&[("sensors", "a")]).as_deref(), Some("sensors"));
        let many: Vec<String> = (0..=MAX_SHARED_SENSORS).map(|i| format!("s-{i}")).collect();
        let pairs: Vec<(&str, &str)> = many.iter().map(|s| ("sensor", s.as_str())).collect();
        assert_eq!(field(&pairs).as_deref(), Some("sensor"));
    }
}
