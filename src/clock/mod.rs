//! Time: the monotonic clock of the ring and the benchmarks, the wall clock of event
//! timestamps, and the one UTC ISO 8601 formatter (HDF5 attributes, stats lines, run
//! directory names). Depends on nothing of the crate; its monotonic part (`monotonic.rs`)
//! depends on nothing but `libc`, so the ring benchmark's iceoryx2 peer (`benches/peer`)
//! compiles that file as a module of its own.

use std::time::SystemTime;

mod monotonic;
use monotonic::clock_ns;
pub use monotonic::{now_ns, timespec, wait_until};

/// The current wall-clock time in seconds since the Unix epoch: every event's timestamp
/// when its source gives none, read once per event.
///
/// Where the kernel itself keeps time with the CPU's time-stamp counter (clocksource `tsc`,
/// a constant, non-stop TSC), this reads the counter (~8 ns here) and scales it from the
/// last reading of `CLOCK_REALTIME` instead of asking the vDSO for that clock each time
/// (~25–35 ns): at 10 M events/s, a quarter of a worker's time went to the clock. The
/// anchor is renewed from `CLOCK_REALTIME` every 2^22 ticks (about a millisecond), so an
/// NTP slew or a step of the system clock shows within that time, and the extrapolation
/// stays within a few tens of nanoseconds of the system clock, below the resolution of an
/// `f64` of seconds since the epoch (~240 ns). Elsewhere it reads `CLOCK_REALTIME`.
#[inline]
pub fn wall_clock() -> f64 {
    wall_ns() as f64 * 1e-9
}

/// [`wall_clock`] in nanoseconds since the Unix epoch.
#[inline]
pub fn wall_ns() -> u64 {
    #[cfg(target_arch = "x86_64")]
    if tsc::usable() {
        return tsc::wall_ns();
    }
    realtime_ns()
}

/// One moment on both clocks: `CLOCK_MONOTONIC`, to measure intervals with (the same clock in
/// every process, never stepped), and the wall clock (`CLOCK_REALTIME`), to name it to people.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Moment {
    /// [`now_ns`] then.
    pub monotonic_ns: u64,
    /// Seconds since the Unix epoch then.
    pub unix_s: f64,
}

impl Moment {
    /// Now.
    pub fn now() -> Moment {
        Moment {
            monotonic_ns: now_ns(),
            unix_s: realtime_ns() as f64 * 1e-9,
        }
    }

    /// The wall-clock time as UTC ISO 8601 with milliseconds (see [`utc_iso`]).
    pub fn iso(&self) -> String {
        utc_iso(self.unix_s)
    }
}

/// `CLOCK_REALTIME` in nanoseconds since the Unix epoch (0 before 1970).
#[inline]
fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// The wall clock extrapolated from the time-stamp counter (see [`wall_clock`]).
#[cfg(target_arch = "x86_64")]
mod tsc {
    use std::cell::Cell;
    use std::sync::OnceLock;

    /// Ticks after which the anchor is renewed from `CLOCK_REALTIME` (~1.4 ms at 3 GHz).
    const SPAN: u64 = 1 << 22;
    /// A pair of counter readings around one clock reading further apart than this was
    /// interrupted; it is taken again.
    const TIGHT: u64 = 2_000;
    /// No anchor is taken from a pair further apart than this (~20 µs: the thread was
    /// preempted every time); the clock is read as it is until a tight pair comes.
    const LOOSE: u64 = 1 << 16;

    /// This thread's anchor: a `CLOCK_REALTIME` reading and the counter at that moment,
    /// the clock's nanoseconds per tick measured between anchors (0 until measured), and
    /// how many measurements in a row disagreed with it.
    #[derive(Clone, Copy)]
    struct Anchor {
        tsc: u64,
        ns: u64,
        ns_per_tick: f64,
        disagreed: u8,
    }

    thread_local! {
        static ANCHOR: Cell<Anchor> = const {
            Cell::new(Anchor { tsc: 0, ns: 0, ns_per_tick: 0.0, disagreed: 0 })
        };
    }

    fn rdtsc() -> u64 {
        // SAFETY: RDTSC only reads the counter; every x86-64 CPU has it.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    /// Whether the kernel keeps time with this CPU's counter: then the counter runs at a
    /// constant rate, in every state and on every core, and so may stand in for the clock.
    pub(super) fn usable() -> bool {
        static USABLE: OnceLock<bool> = OnceLock::new();
        *USABLE.get_or_init(|| {
            let source = std::fs::read_to_string(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .unwrap_or_default();
            let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            let flags = flags
                .lines()
                .find(|l| l.starts_with("flags"))
                .unwrap_or_default();
            let has = |f: &str| flags.split_whitespace().any(|w| w == f);
            source.trim() == "tsc" && has("constant_tsc") && has("nonstop_tsc")
        })
    }

    /// A clock reading, and the counter at its middle when a pair of counter readings
    /// around it was tight enough to anchor to (of four tries, the tightest below `LOOSE`).
    fn anchor_now() -> (Option<u64>, u64) {
        anchor_from(|| {
            let before = rdtsc();
            let ns = super::realtime_ns();
            (before, ns, rdtsc())
        })
    }

    /// [`anchor_now`] over `read`, which gives (counter, clock, counter) in that order. The
    /// clock reading returned is the tightest pair's, or the last one when none was tight.
    fn anchor_from(mut read: impl FnMut() -> (u64, u64, u64)) -> (Option<u64>, u64) {
        let mut best = (None, 0, LOOSE);
        let mut last = 0;
        for _ in 0..4 {
            let (before, ns, after) = read();
            last = ns;
            let width = after.wrapping_sub(before);
            if width < best.2 {
                best = (Some(before + width / 2), ns, width);
            }
            if width <= TIGHT {
                break;
            }
        }
        match best.0 {
            Some(tsc) => (Some(tsc), best.1),
            None => (None, last),
        }
    }

    pub(super) fn wall_ns() -> u64 {
        let t = rdtsc();
        let a = ANCHOR.with(Cell::get);
        let since = t.wrapping_sub(a.tsc);
        if a.ns_per_tick > 0.0 && since < SPAN {
            return a.ns + (since as f64 * a.ns_per_tick) as u64;
        }
        renew(a)
    }

    /// The slow path: a fresh clock reading, and the anchor renewed from it once the old one
    /// is a span old (until the rate is first measured, the clock is read every time).
    #[cold]
    fn renew(a: Anchor) -> u64 {
        let (tsc, ns) = anchor_now();
        if let Some(tsc) = tsc.filter(|&t| a.tsc == 0 || t.wrapping_sub(a.tsc) >= SPAN) {
            ANCHOR.with(|c| c.set(advance(a, tsc, ns)));
        }
        ns
    }

    /// The anchor after `a`, from the clock reading `ns` at counter `tsc`: the rate measured
    /// since `a` is smoothed into `a`'s; a rate far from it is taken for a step of the clock
    /// (the new anchor carries the step, the rate stays), unless three come in a row: then
    /// the counter's rate changed (a VM moved to another host) and the new one is taken.
    fn advance(a: Anchor, tsc: u64, ns: u64) -> Anchor {
        let ticks = tsc.wrapping_sub(a.tsc);
        let mut next = Anchor {
            tsc,
            ns,
            ns_per_tick: a.ns_per_tick,
            disagreed: 0,
        };
        if a.tsc == 0 || ns <= a.ns || ticks >= 1 << 40 {
            return next;
        }
        let rate = (ns - a.ns) as f64 / ticks as f64;
        let agrees = a.ns_per_tick == 0.0 || (rate / a.ns_per_tick - 1.0).abs() < 1e-3;
        if !(0.05..20.0).contains(&rate) {
            // Not a counter's rate at all: a step of the clock.
        } else if agrees {
            next.ns_per_tick = if a.ns_per_tick == 0.0 {
                rate
            } else {
                a.ns_per_tick + (rate - a.ns_per_tick) / 8.0
            };
        } else if a.disagreed >= 2 {
            next.ns_per_tick = rate;
        } else {
            next.disagreed = a.disagreed + 1;
        }
        next
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Anchors every 3 M ticks of a 2 ns-per-tick counter, the clock at `ns(k)`.
        fn run(ns: impl Fn(u64) -> u64, anchors: u64) -> Vec<Anchor> {
            let mut a = Anchor {
                tsc: 0,
                ns: 0,
                ns_per_tick: 0.0,
                disagreed: 0,
            };
            (1..=anchors)
                .map(|k| {
                    a = advance(a, k * 3_000_000, ns(k));
                    a
                })
                .collect()
        }

        #[test]
        fn a_preempted_clock_reading_gives_the_time_but_no_anchor() {
            // Four pairs each ~100 µs wide: no anchor, but the clock's reading all the same
            // (it was 0, "1970", before).
            let mut k = 0;
            let wide = anchor_from(|| {
                k += 1;
                (k * 1_000_000, 1_000 + k, k * 1_000_000 + 300_000)
            });
            assert_eq!(wide, (None, 1_004));
            // A tight pair among them is taken, with its own reading.
            let mut k = 0;
            let tight = anchor_from(|| {
                k += 1;
                let width = if k == 2 { 1_000 } else { 300_000 };
                (k * 1_000_000, 1_000 + k, k * 1_000_000 + width)
            });
            assert_eq!(tight, (Some(2_000_500), 1_002));
        }

        #[test]
        fn a_steady_counter_gives_its_rate() {
            let a = run(|k| 1_000_000_000 + k * 6_000_000, 5);
            assert_eq!(a[0].ns_per_tick, 0.0, "one anchor measures nothing");
            assert!(a[1..].iter().all(|a| a.ns_per_tick == 2.0));
        }

        #[test]
        fn a_step_of_the_clock_keeps_the_rate() {
            // The clock is stepped a millisecond ahead between the 4th and 5th anchor, and
            // a second ahead between the 7th and 8th (no counter's rate at all).
            let step = |k: u64| match k {
                ..=4 => 0,
                5..=7 => 1_000_000,
                _ => 1_001_000_000,
            };
            let a = run(|k| k * 6_000_000 + step(k), 9);
            assert!(a.iter().skip(1).all(|a| a.ns_per_tick == 2.0));
            assert_eq!((a[4].ns, a[4].disagreed), (31_000_000, 1));
            assert_eq!((a[5].disagreed, a[7].disagreed), (0, 0));
            assert_eq!(a[7].ns, 1_049_000_000, "the anchor carries the step");
        }

        #[test]
        fn a_counter_whose_rate_changed_is_followed_after_three_looks() {
            // From anchor 5 on, the counter runs at 2.5 ns a tick (the clock 1.25× as far).
            let ns = |k: u64| {
                if k <= 4 {
                    k * 6_000_000
                } else {
                    24_000_000 + (k - 4) * 7_500_000
                }
            };
            let a = run(ns, 9);
            assert_eq!(a[3].ns_per_tick, 2.0);
            assert_eq!(a[5].ns_per_tick, 2.0, "two looks are not yet a change");
            assert_eq!(a[6].ns_per_tick, 2.5);
            assert_eq!(a[8].ns_per_tick, 2.5);
        }
    }
}

/// A Unix time as UTC ISO 8601 with milliseconds, e.g. `2026-11-25T10:31:07.123Z`.
pub fn utc_iso(unix_seconds: f64) -> String {
    let ms = (unix_seconds * 1000.0).floor() as i64;
    iso8601(ms.div_euclid(1000), ms.rem_euclid(1000) as u32)
}

/// Seconds since the epoch of a time as [`utc_iso`] writes it (any RFC 3339 time); `None`
/// for text that is not one.
pub fn parse_iso(text: &str) -> Option<f64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp_nanos() as f64 * 1e-9)
}

/// The current time in UTC as ISO 8601 with milliseconds, e.g. `2026-11-25T10:27:00.123Z`.
pub fn utc_now() -> String {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    iso8601(d.as_secs() as i64, d.subsec_millis())
}

/// Formats seconds since the epoch (UTC) as ISO 8601 with milliseconds.
pub fn iso8601(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (proleptic Gregorian), after Howard Hinnant's published algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times_read_back_to_the_millisecond() {
        for t in [0.0, 1_796_579_445.016, 1_796_579_445.999, 951_782_400.5] {
            let back = parse_iso(&utc_iso(t)).unwrap();
            assert!((back - t).abs() < 1e-3, "{t} → {} → {back}", utc_iso(t));
        }
        assert_eq!(parse_iso("2026-12-06T10:00:08.000Z"), Some(1_796_551_208.0));
        assert_eq!(parse_iso("yesterday"), None);
    }

    /// Over a few milliseconds of back-to-back reads (several anchor renewals), every
    /// reading lies between `CLOCK_REALTIME` read just before and just after it, give or
    /// take 5 µs (the extrapolation's error is tens of ns), and the readings never go back
    /// by more than that.
    #[test]
    fn the_wall_clock_keeps_to_the_system_clock() {
        const SLACK: u64 = 5_000;
        let start = realtime_ns();
        let mut last = 0;
        let mut reads = 0u64;
        while realtime_ns() - start < 20_000_000 {
            let before = realtime_ns();
            let ours = wall_ns();
            let after = realtime_ns();
            assert!(
                before <= ours + SLACK && ours <= after + SLACK,
                "{before} <= {ours} <= {after} (ns), after {reads} reads"
            );
            assert!(ours + SLACK >= last, "{ours} after {last}");
            last = ours;
            reads += 1;
        }
        let secs = wall_clock();
        let system = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((secs - system).abs() < 1e-3, "{secs} against {system}");
    }

    #[test]
    fn iso_dates() {
        assert_eq!(super::utc_iso(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::utc_iso(951_782_400.5), "2000-02-29T00:00:00.500Z");
        assert_eq!(super::utc_iso(1_795_000_000.0), "2026-11-18T11:06:40.000Z");
    }
}
