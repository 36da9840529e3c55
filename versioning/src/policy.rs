//! The conflict rule: one setting for the whole deployment.
//!
//! The cloud announces the rule with every page of its change feed and every
//! site applies what the cloud announced, so two replicas can never resolve
//! the same conflict differently because their configurations drifted.

use std::fmt;
use std::str::FromStr;

use crate::resolve::Stamp;

/// The site id the cloud writes its own versions (amendments made in the
/// cloud) under. No site may use it.
pub const CLOUD_SITE_ID: &str = "cloud";

/// Which of two concurrent versions of a reading wins.
///
/// Only *concurrent* versions (neither written with the other in view) are
/// decided by the rule; an amendment made on top of a version always
/// replaces it, whoever wrote either (see [`crate::resolve`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Last writer wins: the greatest `(HLC, site id)`. A total order that
    /// needs no trusted wall clock.
    #[default]
    Lww,
    /// A version written in the cloud beats a concurrent site version; among
    /// versions of the same side, last writer wins.
    CloudWins,
    /// A site's version beats a concurrent cloud version; among versions of
    /// the same side, last writer wins.
    EdgeWins,
}

impl Policy {
    /// Every rule, for help texts and tests.
    pub const ALL: [Policy; 3] = [Policy::Lww, Policy::CloudWins, Policy::EdgeWins];

    /// The rule's name, as configured and announced.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Lww => "lww",
            Policy::CloudWins => "cloud-wins",
            Policy::EdgeWins => "edge-wins",
        }
    }

    /// Whether this rule favours a version: `cloud-wins` favours what the
    /// cloud wrote, `edge-wins` what a site amended (a site's first version
    /// of a reading is no amendment: a cloud correction of an untouched
    /// reading must still take effect), `lww` nothing.
    pub fn favours(self, stamp: &Stamp, is_amendment: bool) -> bool {
        let from_cloud = stamp.site_id == CLOUD_SITE_ID;
        match self {
            Policy::Lww => false,
            Policy::CloudWins => from_cloud,
            Policy::EdgeWins => !from_cloud && is_amendment,
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule name that is none of `lww`, `cloud-wins`, `edge-wins`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown conflict policy {0:?}: expected lww, cloud-wins or edge-wins")]
pub struct PolicyParseError(pub String);

impl FromStr for Policy {
    type Err = PolicyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| PolicyParseError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hlc;

    fn stamp(ms: u64, site: &str) -> Stamp {
        Stamp::new(
            Hlc {
                physical_ms: ms,
                logical: 0,
            },
            site,
        )
    }

    #[test]
    fn names_round_trip() {
        for policy in Policy::ALL {
            assert_eq!(policy.as_str().parse::<Policy>(), Ok(policy));
        }
        let err = "newest".parse::<Policy>().expect_err("unknown");
        assert!(err.to_string().contains("lww, cloud-wins or edge-wins"));
    }

    #[test]
    fn each_rule_favours_its_side() {
        let cloud = stamp(1, CLOUD_SITE_ID);
        let site = stamp(2, "site-a");
        assert!(!Policy::Lww.favours(&cloud, true) && !Policy::Lww.favours(&site, true));
        assert!(Policy::CloudWins.favours(&cloud, true) && !Policy::CloudWins.favours(&site, true));
        assert!(Policy::EdgeWins.favours(&site, true) && !Policy::EdgeWins.favours(&cloud, true));
        assert!(
            !Policy::EdgeWins.favours(&site, false),
            "a first write is no amendment"
        );
    }
}
