//! Serde for `Duration` as fractional seconds, the form in the ledger and JSON output.
//!
//! Reading rounds to the nearest nanosecond: `0.3` is not exact in binary,
//! and truncating it would turn a stored 300 ms into 299.999999 ms, so a
//! task definition read back from the ledger would differ from the one
//! written (and look like a change to deploy).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    let exact = Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)?;
    let nanos = (secs * 1e9).round();
    // Past u64 nanoseconds (584 years) rounding no longer matters.
    Ok(if nanos < u64::MAX as f64 { Duration::from_nanos(nanos as u64) } else { exact })
}

/// The same for `Option<Duration>` (`null` for none).
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Secs(#[serde(with = "super")] Duration);
        Ok(Option::<Secs>::deserialize(d)?.map(|s| s.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct D(#[serde(with = "super")] Duration);

    #[test]
    fn round_trips_exactly() {
        for ms in [0u64, 1, 100, 200, 300, 700, 1100, 2900, 30_000, 86_400_000] {
            let d = D(Duration::from_millis(ms));
            let back: D = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
            assert_eq!(back, d, "{ms} ms");
        }
        assert!(serde_json::from_str::<D>("-1").is_err());
    }
}
