//! The failure log (`CD-IA-4`): every 5xx of the Inbound API, durably recorded under
//! central's data dir — when, which method, which key (by name), the incident id the
//! caller was given, the internal detail the caller was not given, and how long it took.
//! Successes and 4xx are not recorded here (they are counted in metrics).
//!
//! The log is a JSON-lines file, appended and synced per record, so the CLI can read it
//! while central runs. It is bounded: past [`MAX_LOG_BYTES`] the file becomes
//! `failures.1.jsonl` (replacing the previous one) and a new file starts, so the two
//! together never hold much more than twice that.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One recorded failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// When (RFC 3339).
    pub time: String,
    /// API method called.
    pub method: String,
    /// Name of the API key used (never the key).
    pub key: Option<String>,
    /// Incident id returned to the caller.
    pub incident: String,
    /// HTTP status returned.
    pub status: u16,
    /// Error code returned.
    pub code: String,
    /// What actually went wrong (script error, site failure…).
    pub detail: String,
    /// Duration of the call in milliseconds.
    pub duration_ms: u64,
}

/// The append-only failure log.
#[derive(Debug)]
pub struct FailureLog {
    path: PathBuf,
    max_bytes: u64,
    file: Mutex<Option<(std::fs::File, u64)>>,
}

/// File name of the log inside central's data dir.
pub const FILE_NAME: &str = "failures.jsonl";

/// Size at which the log starts a new file (the previous one is kept as
/// `failures.1.jsonl`).
pub const MAX_LOG_BYTES: u64 = 64 << 20;

/// The previous file of a log at `path`.
fn rotated(path: &Path) -> PathBuf {
    path.with_extension("1.jsonl")
}

impl FailureLog {
    /// Opens (creating) the log in `data_dir`.
    pub fn open(data_dir: &Path) -> std::io::Result<FailureLog> {
        FailureLog::open_bounded(data_dir, MAX_LOG_BYTES)
    }

    /// [`open`](Self::open) with another size at which the file is rotated.
    pub fn open_bounded(data_dir: &Path, max_bytes: u64) -> std::io::Result<FailureLog> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join(FILE_NAME);
        let file = append_to(&path)?;
        let size = file.metadata()?.len();
        Ok(FailureLog {
            path,
            max_bytes,
            file: Mutex::new(Some((file, size))),
        })
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a record and syncs it. Blocking: call off the async workers.
    pub fn append(&self, record: &FailureRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let (file, size) = guard
            .as_mut()
            .ok_or_else(|| std::io::Error::other("failure log closed"))?;
        if *size > 0 && *size + line.len() as u64 > self.max_bytes {
            std::fs::rename(&self.path, rotated(&self.path))?;
            *file = append_to(&self.path)?;
            *size = 0;
        }
        file.write_all(&line)?;
        *size += line.len() as u64;
        file.sync_data()
    }

    /// Records at or after `since` (RFC 3339), oldest first, from the previous file and
    /// the current one.
    pub fn read(
        path: &Path,
        since: Option<chrono::DateTime<chrono::FixedOffset>>,
    ) -> std::io::Result<Vec<FailureRecord>> {
        let mut out = Vec::new();
        read_file(&rotated(path), since, &mut out)?;
        read_file(path, since, &mut out)?;
        Ok(out)
    }
}

fn append_to(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn read_file(
    path: &Path,
    since: Option<chrono::DateTime<chrono::FixedOffset>>,
    out: &mut Vec<FailureRecord>,
) -> std::io::Result<()> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        let Ok(record) = serde_json::from_str::<FailureRecord>(&line) else {
            continue;
        };
        if let Some(since) = since {
            match chrono::DateTime::parse_from_rfc3339(&record.time) {
                Ok(t) if t >= since => {}
                _ => continue,
            }
        }
        out.push(record);
    }
    Ok(())
}

/// Parses `--since`: an RFC 3339 time, or a duration back from now (`"1h"`, `"30m"`).
pub fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t);
    }
    let ago = switchyard_core::units::parse_duration(text)
        .map_err(|_| format!("`{text}` is neither an RFC 3339 time nor a duration like \"1h\""))?;
    chrono::Duration::from_std(ago)
        .ok()
        .and_then(|ago| chrono::Utc::now().checked_sub_signed(ago))
        .map(|t| t.fixed_offset())
        .ok_or_else(|| format!("`{text}` reaches back before any representable time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_bounded_and_reads_across_the_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let log = FailureLog::open_bounded(dir.path(), 2_000).unwrap();
        for i in 0..100 {
            log.append(&record("2026-12-02T01:00:00Z", &format!("inc-{i:03}")))
                .unwrap();
        }
        let current = std::fs::metadata(log.path()).unwrap().len();
        let previous = std::fs::metadata(rotated(log.path())).unwrap().len();
        assert!(
            current <= 2_000 && previous <= 2_000,
            "{current} {previous}"
        );
        let records = FailureLog::read(log.path(), None).unwrap();
        assert!(
            !records.is_empty() && records.len() < 100,
            "{}",
            records.len()
        );
        // Oldest first, and the newest is there.
        assert_eq!(records.last().unwrap().incident, "inc-099");
        assert!(records.windows(2).all(|w| w[0].incident < w[1].incident));
    }

    #[test]
    fn since_far_back_is_an_error_not_a_panic() {
        let err = parse_since("1000000000y").unwrap_err();
        assert!(err.contains("before any representable time"), "{err}");
        assert!(parse_since("1h").is_ok());
        assert!(parse_since("yesterday").is_err());
    }

    fn record(time: &str, incident: &str) -> FailureRecord {
        FailureRecord {
            time: time.into(),
            method: "M".into(),
            key: Some("mes".into()),
            incident: incident.into(),
            status: 500,
            code: "SCRIPT_ERROR".into(),
            detail: "boom".into(),
            duration_ms: 3,
        }
    }

    #[test]
    fn appends_survive_and_filter_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let log = FailureLog::open(dir.path()).unwrap();
        log.append(&record("2026-11-28T10:00:00Z", "a")).unwrap();
        log.append(&record("2026-11-28T12:00:00Z", "b")).unwrap();
        drop(log);
        let path = dir.path().join(FILE_NAME);
        assert_eq!(FailureLog::read(&path, None).unwrap().len(), 2);
        let since = parse_since("2026-11-28T11:00:00Z").unwrap();
        let recent = FailureLog::read(&path, Some(since)).unwrap();
        assert_eq!(
            recent
                .iter()
                .map(|r| r.incident.as_str())
                .collect::<Vec<_>>(),
            vec!["b"]
        );
        assert!(parse_since("1h").is_ok());
        assert!(parse_since("yesterday-ish").is_err());
    }
}
