//! Calendar dates for timestamps (UTC), without a date-time dependency: change times
//! are milliseconds since the Unix epoch, shown as dates in logs, the editor and key
//! files.

/// A moment as a UTC calendar date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
}

/// `ms` (milliseconds since 1970-01-01T00:00:00Z, may be negative) in UTC.
pub fn utc(ms: i64) -> Utc {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Utc { year, month, day, hour: rest / 3600, minute: rest % 3600 / 60, second: rest % 60 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(utc(0), Utc { year: 1970, month: 1, day: 1, hour: 0, minute: 0, second: 0 });
        // 2024-02-29T23:59:59Z, a leap day.
        assert_eq!(
            utc(1_709_251_199_000),
            Utc { year: 2024, month: 2, day: 29, hour: 23, minute: 59, second: 59 }
        );
        assert_eq!(utc(-1000), Utc { year: 1969, month: 12, day: 31, hour: 23, minute: 59, second: 59 });
    }
}
