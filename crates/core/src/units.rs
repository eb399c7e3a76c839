//! Durations (`"500ms"`, `"30s"`) and byte sizes (`"1MiB"`) as they are written in the
//! configuration file, with serde helpers.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

/// Parses a humantime duration (`"500ms"`, `"30s"`, `"5m"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration `{text}`: {e} (examples: \"500ms\", \"30s\", \"5m\")")
    })
}

/// Parses a byte size: a number with an optional unit `B`, `KB`, `MB`, `GB`, `KiB`,
/// `MiB`, `GiB`, `TiB` (case-insensitive).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.parse().map_err(|_| {
        format!("invalid size `{text}` (examples: \"512MiB\", \"1GiB\", \"65536\")")
    })?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "tib" | "t" => 1 << 40,
        other => {
            return Err(format!(
                "invalid size unit `{other}` in `{text}` (use B, KiB, MiB, GiB, KB, MB or GB)"
            ));
        }
    };
    let bytes = number * factor as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("size `{text}` is out of range"));
    }
    Ok(bytes as u64)
}

/// serde for a [`Duration`] written as a humantime string.
pub mod duration {
    use super::*;

    /// Serializes as a humantime string.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    /// Deserializes from a humantime string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// serde for a byte size written as `"512MiB"` or a plain integer.
pub mod bytes {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }

    /// Serializes as a plain number of bytes.
    pub fn serialize<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*n)
    }

    /// Deserializes from a number or a size string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(n),
            Raw::Text(text) => parse_bytes(&text).map_err(serde::de::Error::custom),
        }
    }
}

/// serde for an optional [`Duration`] carried as integer milliseconds (wire formats).
pub mod opt_millis {
    use super::*;

    /// Serializes as milliseconds.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_millis().min(u128::from(u64::MAX)) as u64),
            None => s.serialize_none(),
        }
    }

    /// Deserializes from milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        for (text, want) in [
            ("1MiB", 1 << 20),
            ("512MiB", 512 << 20),
            ("1 GiB", 1 << 30),
            ("65536", 65536),
            ("2KB", 2000),
            ("1.5KiB", 1536),
        ] {
            assert_eq!(parse_bytes(text), Ok(want), "{text}");
        }
        assert!(
            parse_bytes("12 parsecs")
                .unwrap_err()
                .contains("unit `parsecs`")
        );
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("invalid duration `soon`")
        );
    }
}
