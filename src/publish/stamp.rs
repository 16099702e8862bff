//! The delivery stamp: `published_at` and `replayed`, written into a JSON
//! payload at the moment it is handed to the broker connection.
//!
//! The outbox stores a payload before it is published, so neither field can
//! be known when the row is written; delivery patches them into the bytes it
//! sends and leaves the stored row unchanged (a second attempt gets a fresh
//! stamp). Only pvtherm's own JSON payloads are stamped: they all begin with
//! `{"schema":<n>,`, and the two fields go right after `schema`. Anything else
//! (JPEGs, foreign payloads) goes out byte for byte.

use std::time::SystemTime;

/// What delivery knows about one message when it sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// When the message was handed to the broker connection.
    pub(crate) published_at: SystemTime,
    /// The message was accepted before the current connection came up: it
    /// comes from the outbox backlog, not live.
    pub(crate) replayed: bool,
}

impl Stamp {
    /// `payload` with `"published_at":"<RFC 3339>","replayed":<bool>` after its
    /// `schema` field, or `None` when it is not a pvtherm JSON payload.
    pub(crate) fn apply(&self, payload: &[u8]) -> Option<Vec<u8>> {
        let at = schema_field_end(payload)?;
        let fields = format!(
            "\"published_at\":\"{}\",\"replayed\":{},",
            humantime::format_rfc3339_millis(self.published_at),
            self.replayed
        );
        let mut out = Vec::with_capacity(payload.len() + fields.len());
        out.extend_from_slice(&payload[..at]);
        out.extend_from_slice(fields.as_bytes());
        out.extend_from_slice(&payload[at..]);
        Some(out)
    }
}

/// The offset just after `{"schema":<digits>,` at the start of `payload`, the
/// shape every payload of `crate::messages` starts with (serde writes fields
/// in declaration order, `schema` first, without spaces).
fn schema_field_end(payload: &[u8]) -> Option<usize> {
    const HEAD: &[u8] = br#"{"schema":"#;
    let rest = payload.strip_prefix(HEAD)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    (digits > 0 && rest.get(digits) == Some(&b',')).then_some(HEAD.len() + digits + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn stamps_json_payloads_after_schema_only() {
        let stamp = Stamp {
            published_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            replayed: true,
        };
        let out = stamp.apply(br#"{"schema":1,"device":"a"}"#).unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            r#"{"schema":1,"published_at":"2023-11-14T22:13:20.123Z","replayed":true,"device":"a"}"#
        );
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["replayed"], true);
        for other in [
            &b"\xFF\xD8\xFF\xFE jpeg"[..],
            b"00001 detections",
            br#"{"schema":1}"#,
            br#"{"schema":,"a":1}"#,
            br#"{"device":"a","schema":1}"#,
            b"",
        ] {
            assert_eq!(stamp.apply(other), None, "{other:?}");
        }
    }
}
