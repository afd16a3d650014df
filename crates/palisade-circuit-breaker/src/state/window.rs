//! The sliding windows a breaker judges the downstream by: the last N
//! outcomes (count window) or the last N seconds (time window).
//!
//! Both are lock-free and O(1) per recorded call. Neither is reset while
//! callers write to it: the breaker keeps two windows and clears the idle one
//! before it makes it current (see `state/mod.rs`), so a window is only ever
//! written by calls admitted while it was current.
//!
//! # Count window
//!
//! An exact ring of the last N outcomes, one byte per slot, plus one packed
//! word of running totals. Recording takes a position (`fetch_add`), adds the
//! new outcome to the totals, swaps it into the slot, and takes the evicted
//! outcome back off the totals. When the new outcome equals the one in its
//! slot (a success replacing a success, the steady state of a healthy
//! service) the slot and totals are left untouched: one `fetch_add` and one
//! load.
//!
//! Under concurrency the ring holds exactly N outcomes at every instant, and
//! the totals never trail it: a writer's outcome is in the totals before it
//! is in the ring, and the outcome it evicts leaves the totals after it left
//! the ring. The totals may therefore count, besides the ring, one outcome
//! per writer still between its first and last step (its new outcome, or the
//! one it is evicting): never fewer failures than the ring holds. Read
//! through [`CountWindow::totals`], calls are capped at N (the extra ones are
//! those writers') and failures and slow calls at the calls. So a window
//! that holds enough failures to trip is seen to do so by every reader, and
//! the trip does not wait for the last writer to finish its update; the
//! price is that a failure being recorded may count a moment before the
//! outcome it evicts has left. A failure or slow call that replaces an
//! identical outcome changes nothing, but still returns the figures, so that
//! the breaker judges them on every failure or slow call.
//!
//! # Time window
//!
//! N one-second buckets in a ring, plus running totals. A call adds to the
//! totals, then to its second's bucket. Whoever first sees a new second moves
//! the head forward (one CAS) and evicts the buckets that fall out of the
//! window: swap the bucket to zero, subtract what it held from the totals.
//! Because a writer adds to the totals before the bucket, and an evictor
//! subtracts only what it took from a bucket, no total ever goes negative and
//! the totals always equal the sum of the buckets once writers are done.
//!
//! The cost per call is two `fetch_add`s whatever the call rate; a new second
//! costs the thread that sees it at most N bucket swaps. Single-threaded the
//! window is exact. Under concurrency, a call recorded in the very instant its
//! second's bucket is being recycled for that second may be evicted with the
//! bucket's old contents (it leaves the window up to a second early), and a
//! writer delayed by more than N seconds between reading the clock and
//! recording lands in a newer bucket: counts are never lost from or added to
//! the totals, only attributed to a neighbouring second.

use crate::sync::atomic::AtomicU8;
use crate::sync::atomic::AtomicU64;
use crate::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

/// Outcome flag: the call failed.
pub(crate) const FAILED: u8 = 0b010;
/// Outcome flag: the call was slow.
pub(crate) const SLOW: u8 = 0b100;
/// Slot flag: the slot holds an outcome.
const PRESENT: u8 = 0b001;

use crate::settings::{MAX_COUNT_WINDOW, MAX_TIME_WINDOW_SECS};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The figures of a window: calls recorded, and how many of them failed or
/// were slow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u64,
    pub(crate) failed: u64,
    pub(crate) slow: u64,
}

impl Totals {
    /// Failure rate in percent (0 for an empty window).
    pub(crate) fn failure_rate(&self) -> f64 {
        percent(self.failed, self.calls)
    }

    /// Slow-call rate in percent (0 for an empty window).
    pub(crate) fn slow_call_rate(&self) -> f64 {
        percent(self.slow, self.calls)
    }
}

#[allow(clippy::cast_precision_loss)] // counts are far below 2^52
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Keeps its contents on their own cache lines (128 bytes: adjacent-line
/// prefetch pairs lines on x86), so counters written by every call do not
/// slow down readers of unrelated fields.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

/// One of the two window kinds.
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

/// What recording a call changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// The window's figures right after this call was recorded.
    pub(crate) totals: Totals,
    /// Whether the rates moved enough to be worth publishing as gauges.
    pub(crate) publish: bool,
}

impl Window {
    /// Records one outcome (`flags`: [`FAILED`], [`SLOW`] or 0 for a fast
    /// success). `now` (nanoseconds since the breaker's base instant) is only
    /// called by the time window. `None` means the figures did not change and
    /// need no judging (a success replacing a success); a failure or slow
    /// call always returns the figures.
    #[inline]
    pub(crate) fn record(&self, flags: u8, now: impl FnOnce() -> u64) -> Option<Recorded> {
        match self {
            Self::Count(w) => w.record(flags),
            Self::Time(w) => w.record(flags, now()),
        }
    }

    /// The current figures.
    pub(crate) fn totals(&self, now: impl FnOnce() -> u64) -> Totals {
        match self {
            Self::Count(w) => w.totals(),
            Self::Time(w) => w.totals(now()),
        }
    }

    /// Empties the window. Only called while no caller can write to it.
    pub(crate) fn clear(&self) {
        match self {
            Self::Count(w) => w.clear(),
            Self::Time(w) => w.clear(),
        }
    }
}

// ===== CountWindow =====

// The totals word: three 21-bit fields, calls | failed << 21 | slow << 42.
// `failed` and `slow` carry a bias of 2^20, so a value below zero stays inside
// its field: the totals of a window in use never count less than its ring,
// but a straggler writing to the idle window (see `state/mod.rs`) may take its
// evicted outcome off after the window was cleared; the idle window is
// cleared again before it is used.
const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const FAILED_SHIFT: u32 = FIELD_BITS;
const SLOW_SHIFT: u32 = 2 * FIELD_BITS;
const BIAS: u64 = 1 << 20;
const EMPTY_TOTALS: u64 = (BIAS << FAILED_SHIFT) | (BIAS << SLOW_SHIFT);

const _: () = assert!(
    (MAX_COUNT_WINDOW as u64) < BIAS,
    "window must fit a biased field"
);

#[derive(Debug)]
struct CountHot {
    /// The next position in the ring (taken modulo the size).
    pos: AtomicU64,
    /// The packed running totals.
    totals: AtomicU64,
}

/// The last N outcomes, exactly.
#[derive(Debug)]
pub(crate) struct CountWindow {
    hot: Padded<CountHot>,
    slots: Box<[AtomicU8]>,
    ring: RingIndex,
}

/// Positions to slots without a division: Lemire's exact `a % d` for 32-bit
/// `a` (two multiplications). Positions are kept below 2^32 by taking a
/// multiple of the size back off the counter now and then, which leaves every
/// position's slot unchanged.
#[derive(Debug)]
struct RingIndex {
    len: u32,
    /// `2^64 / len`, rounded up (wraps to 0 for `len == 1`, as it should).
    magic: u64,
    /// The largest multiple of `len` not above 2^31: the thread that draws
    /// this position takes it back off the counter.
    wrap: u64,
}

impl RingIndex {
    fn new(len: u32) -> Self {
        Self {
            len,
            magic: (u64::MAX / u64::from(len)).wrapping_add(1),
            wrap: (1u64 << 31) / u64::from(len) * u64::from(len),
        }
    }

    #[inline]
    fn slot(&self, pos: u64) -> usize {
        match u32::try_from(pos) {
            Ok(a) => {
                let low = self.magic.wrapping_mul(u64::from(a));
                // The product's high 64 bits are below `len`.
                #[allow(clippy::cast_possible_truncation)]
                let slot = ((u128::from(low) * u128::from(self.len)) >> 64) as usize;
                slot
            }
            // Only if a thread stalled for 2^31 calls between drawing `wrap`
            // and taking it back: still exact, just slower.
            #[allow(clippy::cast_possible_truncation)]
            Err(_) => (pos % u64::from(self.len)) as usize,
        }
    }
}

#[inline]
fn encode(slot: u8) -> u64 {
    if slot & PRESENT == 0 {
        0
    } else {
        1 + (u64::from(slot & FAILED != 0) << FAILED_SHIFT)
            + (u64::from(slot & SLOW != 0) << SLOW_SHIFT)
    }
}

#[inline]
fn decode(word: u64) -> Totals {
    let calls = word & FIELD_MASK;
    let unbias = |field: u64| field.saturating_sub(BIAS).min(calls);
    Totals {
        calls,
        failed: unbias((word >> FAILED_SHIFT) & FIELD_MASK),
        slow: unbias((word >> SLOW_SHIFT) & FIELD_MASK),
    }
}

impl CountWindow {
    /// A window of the last `size` outcomes (1 to [`MAX_COUNT_WINDOW`]).
    pub(crate) fn new(size: u32) -> Self {
        debug_assert!((1..=MAX_COUNT_WINDOW).contains(&size));
        Self {
            hot: Padded(CountHot {
                pos: AtomicU64::new(0),
                totals: AtomicU64::new(EMPTY_TOTALS),
            }),
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            ring: RingIndex::new(size),
        }
    }

    /// Records one outcome. `None` if the figures did not change (a success
    /// replacing a success); a failure or slow call always returns the
    /// current figures, changed or not.
    #[inline]
    fn record(&self, flags: u8) -> Option<Recorded> {
        let new = flags | PRESENT;
        let pos = self.hot.0.pos.fetch_add(1, Relaxed);
        if pos == self.ring.wrap {
            self.hot.0.pos.fetch_sub(self.ring.wrap, Relaxed);
        }
        // Positions are unique, so `pos % len` walks the ring in order.
        let slot = &self.slots[self.ring.slot(pos)];
        // The same outcome replacing itself changes nothing: skip the write
        // so a healthy service's calls leave the ring's cache lines shared.
        if slot.load(Relaxed) == new {
            if flags == 0 {
                return None;
            }
            // A failure or slow call is judged all the same, on the latest
            // totals (a read-modify-write, not a load that may lag behind the
            // other writers' updates).
            let latest = self.hot.0.totals.fetch_add(0, AcqRel);
            return Some(Recorded {
                totals: self.decode(latest),
                publish: false,
            });
        }
        // The new outcome enters the totals before the ring, the evicted one
        // leaves the totals after the ring: the totals never count fewer
        // failures than the ring holds, however the writers interleave.
        let add = encode(new);
        let mut after = self.hot.0.totals.fetch_add(add, AcqRel).wrapping_add(add);
        let old = slot.swap(new, AcqRel);
        let sub = encode(old);
        if sub != 0 {
            after = self.hot.0.totals.fetch_sub(sub, AcqRel).wrapping_sub(sub);
        }
        if old == new && flags == 0 {
            return None;
        }
        Some(Recorded {
            totals: self.decode(after),
            publish: old != new,
        })
    }

    /// The figures of a totals word: calls capped at the ring's size (the
    /// extra ones are writers between their steps), failed and slow calls at
    /// the calls.
    #[inline]
    fn decode(&self, word: u64) -> Totals {
        let t = decode(word);
        let calls = t.calls.min(u64::from(self.ring.len));
        Totals {
            calls,
            failed: t.failed.min(calls),
            slow: t.slow.min(calls),
        }
    }

    fn totals(&self) -> Totals {
        self.decode(self.hot.0.totals.load(Acquire))
    }

    fn clear(&self) {
        for slot in &*self.slots {
            slot.store(0, Relaxed);
        }
        self.hot.0.totals.store(EMPTY_TOTALS, Relaxed);
    }
}

// ===== TimeWindow =====

// Totals and bucket counts: calls in the high 32 bits, failures in the low.
const CALL: u64 = 1 << 32;
const LOW: u64 = CALL - 1;

#[derive(Debug)]
struct TimeHot {
    /// The latest second (since the base instant) the window has moved to.
    head: AtomicU64,
    /// Packed calls and failures in the window.
    totals: AtomicU64,
    /// Slow calls in the window.
    slow: AtomicU64,
}

#[derive(Debug, Default)]
struct Bucket {
    counts: AtomicU64,
    slow: AtomicU64,
}

/// The last N seconds, in one-second buckets.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    hot: Padded<TimeHot>,
    buckets: Box<[Bucket]>,
}

impl TimeWindow {
    /// A window over the last `secs` seconds (1 to [`MAX_TIME_WINDOW_SECS`]).
    pub(crate) fn new(secs: u64) -> Self {
        debug_assert!((1..=MAX_TIME_WINDOW_SECS).contains(&secs));
        Self {
            hot: Padded(TimeHot {
                head: AtomicU64::new(0),
                totals: AtomicU64::new(0),
                slow: AtomicU64::new(0),
            }),
            buckets: (0..secs).map(|_| Bucket::default()).collect(),
        }
    }

    #[inline]
    fn len(&self) -> u64 {
        self.buckets.len() as u64
    }

    #[inline]
    fn bucket(&self, sec: u64) -> &Bucket {
        #[allow(clippy::cast_possible_truncation)] // the remainder is < len
        &self.buckets[(sec % self.len()) as usize]
    }

    /// Moves the head to `sec` if it is behind, evicting the seconds that
    /// leave the window. Returns the head and whether this call moved it.
    #[inline]
    fn advance(&self, sec: u64) -> (u64, bool) {
        let hot = &self.hot.0;
        let mut head = hot.head.load(Acquire);
        while sec > head {
            match hot.head.compare_exchange_weak(head, sec, AcqRel, Acquire) {
                Ok(_) => {
                    self.evict(head, sec);
                    return (sec, true);
                }
                Err(actual) => head = actual,
            }
        }
        (head, false)
    }

    /// Seconds `(old, new]` enter the window; each takes over the bucket of
    /// the second N before it, whose counts leave the totals. At most N
    /// buckets, however long the window was idle.
    #[cold]
    fn evict(&self, old: u64, new: u64) {
        let hot = &self.hot.0;
        let first = (old + 1).max(new.saturating_sub(self.len() - 1));
        for sec in first..=new {
            let bucket = self.bucket(sec);
            let counts = bucket.counts.swap(0, AcqRel);
            if counts != 0 {
                hot.totals.fetch_sub(counts, AcqRel);
            }
            let slow = bucket.slow.swap(0, AcqRel);
            if slow != 0 {
                hot.slow.fetch_sub(slow, AcqRel);
            }
        }
    }

    #[inline]
    fn record(&self, flags: u8, now: u64) -> Option<Recorded> {
        let sec = now / NANOS_PER_SEC;
        let (head, advanced) = self.advance(sec);
        if sec + self.len() <= head {
            // Older than the window (a writer delayed for longer than the
            // window): it no longer counts.
            return None;
        }
        let hot = &self.hot.0;
        let bucket = self.bucket(sec);
        let add = CALL + u64::from(flags & FAILED != 0);
        // Totals first, bucket second: an evictor can only subtract what is
        // already in the totals.
        let after = hot.totals.fetch_add(add, AcqRel).wrapping_add(add);
        bucket.counts.fetch_add(add, AcqRel);
        let slow = if flags & SLOW != 0 {
            let slow = hot.slow.fetch_add(1, AcqRel) + 1;
            bucket.slow.fetch_add(1, AcqRel);
            slow
        } else {
            hot.slow.load(Relaxed)
        };
        let calls = after >> 32;
        Some(Recorded {
            totals: Totals {
                calls,
                failed: (after & LOW).min(calls),
                slow: slow.min(calls),
            },
            publish: advanced || flags != 0,
        })
    }

    fn totals(&self, now: u64) -> Totals {
        self.advance(now / NANOS_PER_SEC);
        let hot = &self.hot.0;
        let packed = hot.totals.load(Acquire);
        let calls = packed >> 32;
        Totals {
            calls,
            failed: (packed & LOW).min(calls),
            slow: hot.slow.load(Acquire).min(calls),
        }
    }

    fn clear(&self) {
        for bucket in &*self.buckets {
            bucket.counts.store(0, Relaxed);
            bucket.slow.store(0, Relaxed);
        }
        self.hot.0.totals.store(0, Relaxed);
        self.hot.0.slow.store(0, Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    const S: u64 = NANOS_PER_SEC;

    fn totals_of(outcomes: &VecDeque<u8>) -> Totals {
        Totals {
            calls: outcomes.len() as u64,
            failed: outcomes.iter().filter(|f| **f & FAILED != 0).count() as u64,
            slow: outcomes.iter().filter(|f| **f & SLOW != 0).count() as u64,
        }
    }

    #[test]
    fn ring_index_is_the_remainder() {
        for len in [1u32, 2, 3, 7, 100, 1_000, 65_537, MAX_COUNT_WINDOW] {
            let ring = RingIndex::new(len);
            assert_eq!(ring.wrap % u64::from(len), 0);
            assert!(ring.wrap <= 1 << 31 && ring.wrap + u64::from(len) > 1 << 31);
            for pos in (0..5_000u64).chain(ring.wrap - 3..ring.wrap + 3).chain([
                u64::from(u32::MAX) - 1,
                u64::from(u32::MAX),
                1 << 32,
                u64::MAX,
            ]) {
                assert_eq!(ring.slot(pos) as u64, pos % u64::from(len), "{pos} % {len}");
            }
        }
    }

    #[test]
    fn positions_wrap_without_moving_the_ring() {
        let w = CountWindow::new(3);
        let wrap = w.ring.wrap;
        w.hot.0.pos.store(wrap - 2, Relaxed);
        let mut model = VecDeque::new();
        for i in 0..10u8 {
            let f = if i % 2 == 0 { FAILED } else { 0 };
            w.record(f);
            model.push_back(f);
            if model.len() > 3 {
                model.pop_front();
            }
        }
        assert!(w.hot.0.pos.load(Relaxed) < 20, "taken back below the wrap");
        // Positions wrap - 2 .. wrap + 8 filled slots in order.
        assert_eq!(w.totals(), totals_of(&model));
    }

    #[test]
    fn count_window_is_the_last_n() {
        let w = CountWindow::new(3);
        assert_eq!(w.totals(), Totals::default());
        assert_eq!(
            w.record(FAILED).map(|r| r.totals),
            Some(Totals {
                calls: 1,
                failed: 1,
                slow: 0
            })
        );
        w.record(0);
        w.record(FAILED | SLOW);
        assert_eq!(
            w.totals(),
            Totals {
                calls: 3,
                failed: 2,
                slow: 1
            }
        );
        // The first failure leaves the window.
        w.record(0);
        assert_eq!(
            w.totals(),
            Totals {
                calls: 3,
                failed: 1,
                slow: 1
            }
        );
        // A success replacing a success changes nothing.
        assert_eq!(w.record(0), None);
        // A failure replacing a failure changes nothing either, but returns
        // the figures for the breaker to judge (without publishing them).
        w.record(FAILED);
        w.record(FAILED);
        w.record(FAILED);
        let all_failed = Totals {
            calls: 3,
            failed: 3,
            slow: 0,
        };
        assert_eq!(
            w.record(FAILED),
            Some(Recorded {
                totals: all_failed,
                publish: false
            })
        );
        w.clear();
        assert_eq!(w.totals(), Totals::default());
        w.record(SLOW);
        assert_eq!(
            w.totals(),
            Totals {
                calls: 1,
                failed: 0,
                slow: 1
            }
        );
    }

    #[test]
    fn count_window_after_many_successes_holds_only_the_last_n() {
        // tower-resilience 0.13 keeps counting: after 10 000 successes a
        // window of 100 needs 10 000 failures to reach 50 %.
        let w = CountWindow::new(100);
        for _ in 0..10_000 {
            w.record(0);
        }
        for i in 1..=50 {
            let t = w
                .record(FAILED)
                .expect("a failure evicting a success")
                .totals;
            assert_eq!(t.failed, i);
            assert_eq!(t.calls, 100);
        }
        assert_eq!(w.totals().failure_rate(), 50.0);
    }

    #[test]
    fn count_window_largest_size() {
        let w = CountWindow::new(MAX_COUNT_WINDOW);
        for _ in 0..MAX_COUNT_WINDOW {
            w.record(FAILED | SLOW);
        }
        let t = w.totals();
        assert_eq!(t.calls, u64::from(MAX_COUNT_WINDOW));
        assert_eq!(t.failed, u64::from(MAX_COUNT_WINDOW));
        assert_eq!(t.slow, u64::from(MAX_COUNT_WINDOW));
        w.record(0);
        assert_eq!(t.failed - 1, w.totals().failed);
    }

    #[test]
    fn count_window_transient_negative_does_not_borrow() {
        // Simulate an eviction landing before the write it evicts: the
        // biased field absorbs the -1.
        let w = CountWindow::new(4);
        let minus_failure = encode(PRESENT).wrapping_sub(encode(PRESENT | FAILED));
        w.hot.0.totals.fetch_add(minus_failure, Relaxed);
        let t = w.totals();
        assert_eq!((t.failed, t.slow), (0, 0), "clamped while negative");
        let plus_failure = encode(PRESENT | FAILED);
        w.hot.0.totals.fetch_add(plus_failure, Relaxed);
        assert_eq!(
            w.totals(),
            Totals {
                calls: 1,
                failed: 0,
                slow: 0
            }
        );
    }

    #[test]
    fn count_window_concurrent_totals_match_the_ring() {
        let w = CountWindow::new(7);
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let w = &w;
                s.spawn(move || {
                    for i in 0..20_000u32 {
                        let flags = match (i + u32::from(t)) % 5 {
                            0 => FAILED,
                            1 => SLOW,
                            2 => FAILED | SLOW,
                            _ => 0,
                        };
                        w.record(flags);
                    }
                });
            }
        });
        let ring: VecDeque<u8> = w
            .slots
            .iter()
            .map(|s| s.load(Relaxed))
            .filter(|s| *s & PRESENT != 0)
            .collect();
        assert_eq!(w.totals(), totals_of(&ring));
    }

    #[test]
    fn time_window_counts_the_last_n_seconds() {
        let w = TimeWindow::new(3);
        w.record(FAILED, 0);
        w.record(0, S / 2);
        w.record(SLOW, S);
        w.record(0, 2 * S + 5);
        assert_eq!(
            w.totals(2 * S + 6),
            Totals {
                calls: 4,
                failed: 1,
                slow: 1
            }
        );
        // Second 0 leaves at second 3.
        assert_eq!(
            w.totals(3 * S),
            Totals {
                calls: 2,
                failed: 0,
                slow: 1
            }
        );
        // A long idle gap empties it, evicting at most N buckets.
        assert_eq!(w.totals(1_000 * S), Totals::default());
        let r = w.record(FAILED, 1_000 * S + 1).unwrap();
        assert_eq!(
            r.totals,
            Totals {
                calls: 1,
                failed: 1,
                slow: 0
            }
        );
        assert!(r.publish);
        // Too old for the window: ignored.
        assert_eq!(w.record(FAILED, 990 * S), None);
        w.clear();
        assert_eq!(w.totals(1_000 * S + 2), Totals::default());
    }

    #[test]
    fn time_window_publishes_rates_on_failures_and_new_seconds() {
        let w = TimeWindow::new(10);
        assert!(w.record(0, 5 * S).unwrap().publish, "new second");
        assert!(!w.record(0, 5 * S + 1).unwrap().publish, "same second");
        assert!(w.record(FAILED, 5 * S + 2).unwrap().publish, "a failure");
    }

    #[test]
    fn time_window_concurrent_totals_match_the_buckets() {
        let w = TimeWindow::new(5);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let w = &w;
                s.spawn(move || {
                    for i in 0..20_000u64 {
                        let flags = if (i + t) % 3 == 0 { FAILED } else { 0 };
                        // Time moves forward through 20 seconds on each thread.
                        w.record(flags, (i / 1_000) * S + t);
                    }
                });
            }
        });
        let calls: u64 = w.buckets.iter().map(|b| b.counts.load(Relaxed) >> 32).sum();
        let failed: u64 = w.buckets.iter().map(|b| b.counts.load(Relaxed) & LOW).sum();
        let totals = w.totals(19 * S);
        assert_eq!((totals.calls, totals.failed), (calls, failed));
        assert!(totals.calls > 0);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Record(u8),
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => prop_oneof![Just(0u8), Just(FAILED), Just(SLOW), Just(FAILED | SLOW)].prop_map(Op::Record),
            1 => (0u64..3 * S).prop_map(Op::Wait),
        ]
    }

    proptest! {
        #[test]
        fn count_window_matches_a_deque(size in 1u32..12, flags in proptest::collection::vec(0u8..8, 0..200)) {
            let w = CountWindow::new(size);
            let mut model = VecDeque::new();
            for f in flags {
                let f = f & (FAILED | SLOW);
                w.record(f);
                model.push_back(f);
                if model.len() > size as usize {
                    model.pop_front();
                }
                prop_assert_eq!(w.totals(), totals_of(&model));
            }
        }

        #[test]
        fn time_window_matches_a_log(secs in 1u64..8, ops in proptest::collection::vec(op(), 0..200)) {
            let w = TimeWindow::new(secs);
            let mut now = 0u64;
            let mut log: Vec<(u64, u8)> = Vec::new();
            for op in ops {
                match op {
                    Op::Record(f) => {
                        w.record(f, now);
                        log.push((now / S, f));
                    }
                    Op::Wait(d) => now += d,
                }
                let sec = now / S;
                let live: VecDeque<u8> = log
                    .iter()
                    .filter(|(s, _)| s + secs > sec)
                    .map(|(_, f)| *f)
                    .collect();
                prop_assert_eq!(w.totals(now), totals_of(&live));
            }
        }
    }
}
