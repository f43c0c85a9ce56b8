//! RFC 3339 text of the ledger's times (µs since the epoch), written
//! without a formatter or an allocation: a replay writes two per event.

/// RFC 3339 text of µs since the epoch, in UTC.
///
/// `YYYY-MM-DDTHH:MM:SS`, then a fraction with its trailing zeros dropped
/// (none for a whole second), then `Z`. Empty for a moment outside the
/// years 0 to 9999, which RFC 3339 cannot write.
#[must_use]
pub fn rfc3339(micros: i64) -> String {
    let mut out = Vec::with_capacity(27);
    push_rfc3339(&mut out, micros);
    // Only ASCII digits and separators are written.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends [`rfc3339`]'s text of `micros` to `out`.
pub fn push_rfc3339(out: &mut Vec<u8>, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let (year, month, day) = civil(secs.div_euclid(86_400));
    if !(0..=9999).contains(&year) {
        return;
    }
    let of_day = secs.rem_euclid(86_400);
    digits(out, year, 4);
    for (sep, n) in [
        (b'-', month),
        (b'-', day),
        (b'T', of_day / 3600),
        (b':', of_day / 60 % 60),
        (b':', of_day % 60),
    ] {
        out.push(sep);
        digits(out, n, 2);
    }
    let mut fraction = micros.rem_euclid(1_000_000);
    if fraction != 0 {
        let mut width = 6;
        while fraction % 10 == 0 {
            fraction /= 10;
            width -= 1;
        }
        out.push(b'.');
        digits(out, fraction, width);
    }
    out.push(b'Z');
}

/// Writes the last `width` (at most 6) decimal digits of `n` (not
/// negative). Divides by the constant 10 only: a division by a power
/// computed at run time cost more than the rest of the text.
fn digits(out: &mut Vec<u8>, mut n: i64, width: u32) {
    let mut buf = [b'0'; 6];
    let width = (width as usize).min(buf.len());
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// The (year, month, day) of a count of days since 1970-01-01, in the
/// proleptic Gregorian calendar (H. Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    use super::rfc3339;

    /// What the `time` crate writes, the reference.
    fn by_time(micros: i64) -> String {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default()
    }

    #[test]
    fn edges_read_as_the_time_crate_writes_them() {
        let year_0 = -62_167_219_200_000_000;
        let after_9999 = 253_402_300_800_000_000;
        for m in [
            0,
            1,
            -1,
            10,
            100_000,
            1_500_000,
            86_399_999_999,
            951_782_400_000_000, // 2000-02-29
            year_0,
            year_0 - 1,
            after_9999,
            after_9999 - 1,
            i64::MIN,
            i64::MAX,
        ] {
            assert_eq!(rfc3339(m), by_time(m), "{m}");
        }
        assert_eq!(rfc3339(1_500_000), "1970-01-01T00:00:01.5Z");
    }

    proptest! {
        #[test]
        fn any_moment_reads_as_the_time_crate_writes_it(
            micros in -70_000_000_000_000_000i64..260_000_000_000_000_000
        ) {
            prop_assert_eq!(rfc3339(micros), by_time(micros));
        }
    }
}
