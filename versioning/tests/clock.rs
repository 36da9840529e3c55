//! The clock rules under any mix of events: versions received with stamps
//! anywhere in the range (near the top included), amendments, new readings,
//! restarts and a wall clock that jumps ahead and back. Whatever happens, a
//! reading's next version is stamped above all of its versions and within
//! the range, and the clock stays within the bound of the wall clock.

use edge_versioning::{Hlc, NodeClock, SkewBound};
use proptest::prelude::*;

/// 2027-01-15, roughly.
const NOW: u64 = 1_800_000_000_000;
const HOUR: u64 = 3_600_000;
const READINGS: usize = 4;

/// Where a received stamp sits.
#[derive(Debug, Clone)]
enum Far {
    /// This far from the wall clock (negative: behind).
    Near(i64, u16),
    /// At the latest a first version may carry, counter full.
    Top,
    /// Anywhere a first version may be.
    Anywhere(u64, u16),
}

#[derive(Debug, Clone)]
enum Event {
    /// The wall clock moves by this many ms (it may jump back).
    Wall(i64),
    /// A version of a reading arrives (pulled, or pushed to the cloud).
    Receive(usize, Far),
    /// The node amends a reading it holds.
    Amend(usize),
    /// A new reading's first version.
    New,
}

fn far() -> impl Strategy<Value = Far> {
    prop_oneof![
        (-(3 * HOUR as i64)..3 * HOUR as i64, any::<u16>()).prop_map(|(d, l)| Far::Near(d, l)),
        Just(Far::Top),
        (0..=Hlc::MAX_CLOCK_MS, any::<u16>()).prop_map(|(p, l)| Far::Anywhere(p, l)),
    ]
}

fn events(wall_back: bool) -> impl Strategy<Value = Vec<Event>> {
    let low = if wall_back { -2 * 24 * HOUR as i64 } else { 0 };
    prop::collection::vec(
        prop_oneof![
            (low..2 * 24 * HOUR as i64).prop_map(Event::Wall),
            (0..READINGS, far()).prop_map(|(r, f)| Event::Receive(r, f)),
            (0..READINGS).prop_map(Event::Amend),
            Just(Event::New),
        ],
        1..60,
    )
}

fn bounds() -> impl Strategy<Value = SkewBound> {
    prop::sample::select(vec![
        SkewBound::from_ms(0),
        SkewBound::from_ms(300_000),
        SkewBound::DEFAULT,
        SkewBound::from_ms(24 * HOUR),
    ])
}

fn stamp(far: &Far, now: u64) -> Hlc {
    match *far {
        Far::Near(d, logical) => Hlc {
            physical_ms: now.saturating_add_signed(d).min(Hlc::MAX_CLOCK_MS),
            logical,
        },
        Far::Top => Hlc {
            physical_ms: Hlc::MAX_CLOCK_MS,
            logical: u16::MAX,
        },
        Far::Anywhere(physical_ms, logical) => Hlc {
            physical_ms,
            logical,
        },
    }
}

/// What a node persists and holds, replayed one write transaction per event.
struct Node {
    persisted: Hlc,
    now: u64,
    bound: SkewBound,
    /// Every version of each reading the node holds.
    readings: Vec<Vec<Hlc>>,
    /// The first versions it stamped, in order.
    firsts: Vec<Hlc>,
    fell_back: bool,
}

impl Node {
    fn new(bound: SkewBound) -> Node {
        Node {
            persisted: Hlc {
                physical_ms: NOW,
                logical: 0,
            },
            now: NOW,
            bound,
            readings: vec![Vec::new(); READINGS],
            firsts: Vec::new(),
            fell_back: false,
        }
    }

    /// One event as one write: load the clock, act, check, persist.
    fn play(&mut self, event: &Event) -> Result<(), TestCaseError> {
        if let Event::Wall(delta) = event {
            self.now = self.now.saturating_add_signed(*delta);
            return Ok(());
        }
        let mut clock = NodeClock::load(self.persisted, self.now, self.bound);
        let limit = self.bound.limit_ms(self.now);
        prop_assert!(
            clock.hlc().physical_ms <= limit + 1,
            "loaded beyond the bound"
        );
        self.fell_back |= clock.fell_back_ms().is_some();
        match event {
            Event::Wall(_) => {}
            Event::Receive(r, far) => {
                let remote = stamp(far, self.now);
                let flagged = clock.receive(remote);
                prop_assert_eq!(
                    flagged.is_some(),
                    remote.ahead_of_ms(self.now) > self.bound.as_ms()
                );
                if !self.readings[*r].contains(&remote) {
                    self.readings[*r].push(remote);
                }
            }
            Event::Amend(r) => {
                let floor = self.readings[*r].iter().max().copied();
                let stamp = clock.stamp_above(floor).map_err(|e| {
                    TestCaseError::fail(format!("amending reading {r} failed: {e}"))
                })?;
                if let Some(floor) = floor {
                    prop_assert!(stamp > floor, "{stamp} is not above {floor}");
                }
                prop_assert_eq!(stamp.check_range(true), Ok(()));
                self.readings[*r].push(stamp);
            }
            Event::New => {
                let stamp = clock.tick();
                prop_assert_eq!(stamp.check_range(false), Ok(()));
                prop_assert!(stamp.physical_ms >= self.now.min(Hlc::MAX_CLOCK_MS));
                self.firsts.push(stamp);
            }
        }
        prop_assert!(
            clock.hlc().physical_ms <= limit + 1,
            "the clock went {} ms past the bound",
            clock.hlc().physical_ms - limit
        );
        self.persisted = clock.hlc();
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn amending_always_works_and_the_clock_stays_within_the_bound(
        events in events(true),
        bound in bounds(),
    ) {
        let mut node = Node::new(bound);
        for event in &events {
            node.play(event)?;
        }
        for versions in &node.readings {
            let mut sorted = versions.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), versions.len(), "a stamp repeats within a reading");
        }
    }

    #[test]
    fn with_a_wall_clock_that_never_goes_back_the_clock_never_falls_back(
        events in events(false),
        bound in bounds(),
    ) {
        let mut node = Node::new(bound);
        for event in &events {
            node.play(event)?;
        }
        prop_assert!(!node.fell_back);
        prop_assert!(node.firsts.windows(2).all(|w| w[0] < w[1]), "{:?}", node.firsts);
    }
}
