//! Convergence: for any set of versions of a reading, offered in any order,
//! any number of times, every replica ends with the same winner (P4).

use edge_versioning::{Applied, CLOUD_SITE_ID, History, Hlc, Policy, Stamp, Version};
use proptest::prelude::*;

const WRITERS: [&str; 4] = ["site-a", "site-b", "site-c", CLOUD_SITE_ID];

/// Versions of one reading as replicas would write them: each one's base is
/// an earlier version (or none for a first write), clocks from a small range
/// so ties of the physical part are common.
fn histories() -> impl Strategy<Value = Vec<Version>> {
    prop::collection::vec(
        (
            0u64..20,
            0u16..3,
            0usize..WRITERS.len(),
            any::<prop::sample::Index>(),
            any::<bool>(),
        ),
        1..12,
    )
    .prop_map(|raw| {
        let mut versions: Vec<Version> = Vec::new();
        for (ms, logical, writer, base, first) in raw {
            let stamp = Stamp::new(
                Hlc {
                    physical_ms: ms,
                    logical,
                },
                WRITERS[writer],
            );
            if versions.iter().any(|v| v.stamp == stamp) {
                continue;
            }
            let base = (!first && !versions.is_empty())
                .then(|| versions[base.index(versions.len())].stamp.clone());
            versions.push(Version { stamp, base });
        }
        versions
    })
}

/// A replica that starts empty and is offered `order` (indices into
/// `versions`, repeats allowed) one at a time, as pulls and pushes would.
fn replay(versions: &[Version], order: &[usize], policy: Policy) -> History {
    let mut replica = History::default();
    for &i in order {
        let outcome = replica.apply(versions[i].clone(), policy);
        if let Applied::Added {
            conflict: Some(conflict),
            ..
        } = &outcome
        {
            // The audit record names the current version, and says "local"
            // exactly when the version held before stayed current.
            let current = replica.winner().map(|w| w.stamp.clone());
            assert_eq!(current.as_ref(), Some(&conflict.current));
            assert_eq!(
                conflict.winner == edge_versioning::Side::Local,
                conflict.current == conflict.local
            );
        }
    }
    replica
}

fn orders(len: usize) -> impl Strategy<Value = Vec<Vec<usize>>> {
    // Every replica sees every version at least once, shuffled, with repeats.
    let one = (
        Just((0..len).collect::<Vec<_>>()),
        prop::collection::vec(0..len, 0..len * 2),
    )
        .prop_flat_map(|(all, extra)| {
            let mut order = all;
            order.extend(extra);
            Just(order).prop_shuffle()
        });
    prop::collection::vec(one, 2..5)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn every_order_and_repetition_gives_every_replica_the_same_winner(
        (versions, orders) in histories().prop_flat_map(|v| {
            let len = v.len();
            (Just(v), orders(len))
        }),
        policy in prop::sample::select(Policy::ALL.to_vec()),
    ) {
        let reference = History::new(versions.clone(), policy);
        let expected = reference.winner().map(|w| w.stamp.clone());
        prop_assert!(expected.is_some());
        for order in &orders {
            let replica = replay(&versions, order, policy);
            prop_assert_eq!(replica.versions().len(), versions.len(), "each version held once");
            prop_assert_eq!(replica.winner().map(|w| w.stamp.clone()), expected.clone());
        }
    }

    #[test]
    fn under_lww_the_winner_is_the_greatest_stamp_when_clocks_respect_history(
        versions in histories(),
    ) {
        // Writers that saw their base stamp above it (the HLC receive rule).
        let causal: Vec<Version> = versions
            .iter()
            .filter(|v| v.base.as_ref().is_none_or(|b| b < &v.stamp))
            .cloned()
            .collect();
        prop_assume!(!causal.is_empty());
        let held: Vec<Version> = causal
            .iter()
            .filter(|v| v.base.as_ref().is_none_or(|b| causal.iter().any(|c| &c.stamp == b)))
            .cloned()
            .collect();
        prop_assume!(!held.is_empty());
        let h = History::new(held.clone(), Policy::Lww);
        let greatest = held.iter().map(|v| &v.stamp).max();
        prop_assert_eq!(h.winner().map(|w| &w.stamp), greatest);
    }
}
