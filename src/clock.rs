//! Time: the monotonic clock of the ring and the benchmarks, the wall clock of event
//! timestamps, and the one UTC ISO 8601 formatter (HDF5 attributes, stats lines, run
//! directory names). Depends on nothing of the crate.

use std::time::SystemTime;

/// Current `CLOCK_MONOTONIC` time in nanoseconds (vDSO, no syscall); the same clock in every
/// process of the machine.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `ns` nanoseconds as a `timespec`: a timeout, or a `CLOCK_MONOTONIC` time of [`now_ns`].
#[inline]
pub fn timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

/// The current wall-clock time in seconds since the Unix epoch.
pub fn wall_clock() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A Unix time as UTC ISO 8601 with milliseconds, e.g. `2026-11-25T10:31:07.123Z`.
pub fn utc_iso(unix_seconds: f64) -> String {
    let ms = (unix_seconds * 1000.0).floor() as i64;
    iso8601(ms.div_euclid(1000), ms.rem_euclid(1000) as u32)
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
    #[test]
    fn iso_dates() {
        assert_eq!(super::utc_iso(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::utc_iso(951_782_400.5), "2000-02-29T00:00:00.500Z");
        assert_eq!(super::utc_iso(1_795_000_000.0), "2026-11-18T11:06:40.000Z");
    }
}
