//! The Alertmanager webhook payload (format version 4).
//!
//! The body is first read as a JSON value and then converted field by field, so an
//! error names the exact field that is wrong (`alerts[3].labels.severity`) rather
//! than only a line and column. Unknown fields are ignored at every level, because
//! newer Alertmanagers add some; a `null` counts as an absent field, because Go
//! senders encode nil maps and slices as `null`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::crd::AlertStatus;

/// One webhook notification: a group of alerts that Alertmanager sent together.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub version: String,
    pub group_key: String,
    pub truncated_alerts: u64,
    pub status: String,
    pub receiver: String,
    pub group_labels: BTreeMap<String, String>,
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<Alert>,
}

/// One alert of a notification.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `firing` when the sender gave none.
    pub status: AlertStatus,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339 as received; the time of receipt when the sender gave none, so that
    /// each hand-made test request is a new occurrence of its alert.
    pub starts_at: String,
    /// RFC 3339 as received; `""` or Go's zero time `0001-01-01T00:00:00Z` while firing.
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// As received, or computed from the labels as Alertmanager does.
    pub fingerprint: String,
}

impl Alert {
    /// The `alertname` label, or `""`.
    pub fn alert_name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    /// The alert as Alertmanager writes it, for templates and `alertRef` `.`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "status": self.status.as_str(),
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at,
            "endsAt": self.ends_at,
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        })
    }
}

/// Why a webhook body is not a valid notification.
#[derive(thiserror::Error, Debug)]
pub enum PayloadError {
    #[error("body is empty (expected an Alertmanager webhook notification)")]
    Empty,
    #[error("body is not valid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    #[error("body must be a JSON object (an Alertmanager webhook notification), found {found}")]
    NotAnObject { found: &'static str },
    #[error("field `{field}` must be {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("field `{field}` must be \"firing\" or \"resolved\", found {value:?}")]
    InvalidStatus { field: String, value: String },
    #[error("field `{field}` must be an RFC 3339 timestamp, found {value:?}: {message}")]
    InvalidTimestamp {
        field: String,
        value: String,
        message: String,
    },
}

/// Parses a webhook body. `received_at` stands in for a missing `startsAt`.
pub fn parse_notification(
    body: &[u8],
    received_at: jiff::Timestamp,
) -> Result<Notification, PayloadError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    let value: Value = serde_json::from_slice(body).map_err(PayloadError::InvalidJson)?;
    let Value::Object(obj) = value else {
        return Err(PayloadError::NotAnObject {
            found: kind(&value),
        });
    };
    // Go's RFC3339Nano layout, which jiff's default display matches: UTC, with as
    // many fractional digits as the nanoseconds need.
    let received_at = received_at.to_string();

    let alerts = match field(&obj, "alerts") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_alert(item, i, &received_at))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(wrong_type("alerts", "an array of alerts", other)),
    };

    Ok(Notification {
        version: string_field(&obj, "version", "")?,
        group_key: string_field(&obj, "groupKey", "")?,
        truncated_alerts: match field(&obj, "truncatedAlerts") {
            None => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| wrong_type("truncatedAlerts", "a non-negative integer", v))?,
        },
        status: string_field(&obj, "status", "")?,
        receiver: string_field(&obj, "receiver", "")?,
        group_labels: string_map_field(&obj, "groupLabels", "")?,
        common_labels: string_map_field(&obj, "commonLabels", "")?,
        common_annotations: string_map_field(&obj, "commonAnnotations", "")?,
        external_url: string_field(&obj, "externalURL", "")?,
        alerts,
    })
}

/// The alert at `alerts[index]`.
fn parse_alert(value: &Value, index: usize, received_at: &str) -> Result<Alert, PayloadError> {
    let Value::Object(obj) = value else {
        return Err(wrong_type(&format!("alerts[{index}]"), "an object", value));
    };
    let prefix = AlertPath(index);

    let status = match field(obj, "status") {
        None => AlertStatus::Firing,
        Some(Value::String(s)) => match s.as_str() {
            "firing" => AlertStatus::Firing,
            "resolved" => AlertStatus::Resolved,
            _ => {
                return Err(PayloadError::InvalidStatus {
                    field: format!("{prefix}status"),
                    value: s.clone(),
                })
            }
        },
        Some(other) => return Err(wrong_type(&format!("{prefix}status"), "a string", other)),
    };

    let labels = string_map_field(obj, "labels", prefix)?;
    let mut starts_at = timestamp_field(obj, "startsAt", prefix)?;
    if starts_at.is_empty() {
        starts_at = received_at.to_owned();
    }
    let mut fingerprint = string_field(obj, "fingerprint", prefix)?;
    if fingerprint.is_empty() {
        fingerprint = self::fingerprint(&labels);
    }

    Ok(Alert {
        status,
        annotations: string_map_field(obj, "annotations", prefix)?,
        starts_at,
        ends_at: timestamp_field(obj, "endsAt", prefix)?,
        generator_url: string_field(obj, "generatorURL", prefix)?,
        fingerprint,
        labels,
    })
}

/// The alert fingerprint exactly as Prometheus' `model.LabelSet.Fingerprint()`,
/// which Alertmanager uses: 64-bit FNV-1a over the labels sorted by name, each name
/// and value followed by the byte 0xFF, as 16 lower-case hex digits.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    const SEPARATOR: u8 = 0xff;

    // A BTreeMap<String, _> iterates in byte order, which is Go's string order.
    let mut hash = OFFSET_BASIS;
    let mut add = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[SEPARATOR]);
        add(value.as_bytes());
        add(&[SEPARATOR]);
    }
    format!("{hash:016x}")
}

/// The prefix of an alert's fields in error messages, `alerts[3].`, formatted
/// only when there is an error to report.
#[derive(Clone, Copy)]
struct AlertPath(usize);

impl std::fmt::Display for AlertPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "alerts[{}].", self.0)
    }
}

/// A field's value, with `null` counted as absent.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn string_field(
    obj: &Map<String, Value>,
    name: &str,
    prefix: impl std::fmt::Display,
) -> Result<String, PayloadError> {
    match field(obj, name) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(wrong_type(&format!("{prefix}{name}"), "a string", other)),
    }
}

fn timestamp_field(
    obj: &Map<String, Value>,
    name: &str,
    prefix: impl std::fmt::Display + Copy,
) -> Result<String, PayloadError> {
    let s = string_field(obj, name, prefix)?;
    if !s.is_empty() {
        // Kept as received (it feeds Job names and annotations), only checked.
        if let Err(e) = s.parse::<jiff::Timestamp>() {
            return Err(PayloadError::InvalidTimestamp {
                field: format!("{prefix}{name}"),
                value: s,
                message: e.to_string(),
            });
        }
    }
    Ok(s)
}

fn string_map_field(
    obj: &Map<String, Value>,
    name: &str,
    prefix: impl std::fmt::Display + Copy,
) -> Result<BTreeMap<String, String>, PayloadError> {
    // Field paths are formatted only for an error.
    match field(obj, name) {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(wrong_type(
                    &format!("{prefix}{name}.{k}"),
                    "a string",
                    other,
                )),
            })
            .collect(),
        Some(other) => Err(wrong_type(
            &format!("{prefix}{name}"),
            "an object of strings",
            other,
        )),
    }
}

fn wrong_type(field: &str, expected: &'static str, found: &Value) -> PayloadError {
    PayloadError::WrongType {
        field: field.to_owned(),
        expected,
        found: kind(found),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received() -> jiff::Timestamp {
        "2024-05-06T07:08:09.123456789Z".parse().unwrap()
    }

    fn parse(body: &str) -> Result<Notification, PayloadError> {
        parse_notification(body.as_bytes(), received())
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// An independent, byte-at-a-time FNV-1a 64 for cross-checking.
    fn fnv1a(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf29ce484222325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        })
    }

    #[test]
    fn fingerprint_of_empty_set_is_the_offset_basis() {
        assert_eq!(fingerprint(&BTreeMap::new()), "cbf29ce484222325");
    }

    #[test]
    fn fnv1a_reference_vectors() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn fingerprint_hashes_sorted_names_and_values_with_separators() {
        let ls = labels(&[("job", "node"), ("alertname", "TestAlert")]);
        let expected = fnv1a(b"alertname\xffTestAlert\xffjob\xffnode\xff");
        assert_eq!(fingerprint(&ls), format!("{expected:016x}"));
        // Vector computed independently (Python, same algorithm).
        assert_eq!(
            fingerprint(&labels(&[("alertname", "TestAlert")])),
            "dab43189276e5f48"
        );
    }

    #[test]
    fn fingerprint_is_zero_padded_to_16_digits() {
        for i in 0..2000 {
            let fp = fingerprint(&labels(&[("i", &i.to_string())]));
            assert_eq!(fp.len(), 16, "{fp}");
            assert!(fp
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
    }

    #[test]
    fn fingerprint_distinguishes_name_value_boundaries() {
        let a = fingerprint(&labels(&[("ab", "c")]));
        let b = fingerprint(&labels(&[("a", "bc")]));
        assert_ne!(a, b);
    }

    #[test]
    fn seed_troubleshooting_request_parses() {
        let n = parse(r#"{"alerts": [{"labels": {"alertname": "TestAlert"}}]}"#).unwrap();
        assert_eq!(n.alerts.len(), 1);
        let a = &n.alerts[0];
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.alert_name(), "TestAlert");
        assert_eq!(a.starts_at, "2024-05-06T07:08:09.123456789Z");
        assert_eq!(a.ends_at, "");
        assert_eq!(a.fingerprint, fingerprint(&a.labels));
        assert_eq!(a.fingerprint, "dab43189276e5f48");
        assert!(a.annotations.is_empty());
        assert_eq!(n.receiver, "");
        assert_eq!(n.truncated_alerts, 0);
    }

    #[test]
    fn receipt_time_is_rfc3339_utc() {
        let at: jiff::Timestamp = "2024-05-06T09:08:09+02:00".parse().unwrap();
        let n = parse_notification(br#"{"alerts":[{"labels":{}}]}"#, at).unwrap();
        assert_eq!(n.alerts[0].starts_at, "2024-05-06T07:08:09Z");
        let n = parse(r#"{"alerts":[{"startsAt":""}]}"#).unwrap();
        assert_eq!(n.alerts[0].starts_at, "2024-05-06T07:08:09.123456789Z");
    }

    const FULL: &str = r#"{
      "receiver": "karo",
      "status": "firing",
      "alerts": [
        {
          "status": "firing",
          "labels": {"alertname": "HighCPUUsage", "instance": "node-1:9100", "severity": "critical"},
          "annotations": {"summary": "CPU above 90%", "runbook_url": "https://runbooks/cpu"},
          "startsAt": "2024-05-06T07:00:00.5+02:00",
          "endsAt": "0001-01-01T00:00:00Z",
          "generatorURL": "http://prometheus:9090/graph?g0.expr=cpu",
          "fingerprint": "a1b2c3d4e5f60718"
        },
        {
          "status": "resolved",
          "labels": {"alertname": "HighCPUUsage", "instance": "node-2:9100"},
          "annotations": {},
          "startsAt": "2024-05-06T04:00:00Z",
          "endsAt": "2024-05-06T05:00:00Z",
          "generatorURL": "",
          "fingerprint": ""
        }
      ],
      "groupLabels": {"alertname": "HighCPUUsage"},
      "commonLabels": {"alertname": "HighCPUUsage"},
      "commonAnnotations": {},
      "externalURL": "http://alertmanager:9093",
      "version": "4",
      "groupKey": "{}/{}:{alertname=\"HighCPUUsage\"}",
      "truncatedAlerts": 0,
      "someFutureField": {"nested": [1, 2, 3]}
    }"#;

    #[test]
    fn full_alertmanager_payload_parses() {
        let n = parse(FULL).unwrap();
        assert_eq!(n.version, "4");
        assert_eq!(n.receiver, "karo");
        assert_eq!(n.status, "firing");
        assert_eq!(n.group_key, "{}/{}:{alertname=\"HighCPUUsage\"}");
        assert_eq!(n.external_url, "http://alertmanager:9093");
        assert_eq!(n.group_labels, labels(&[("alertname", "HighCPUUsage")]));
        assert_eq!(n.common_labels, labels(&[("alertname", "HighCPUUsage")]));
        assert!(n.common_annotations.is_empty());
        assert_eq!(n.alerts.len(), 2);

        let a = &n.alerts[0];
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.labels["severity"], "critical");
        assert_eq!(a.annotations["summary"], "CPU above 90%");
        assert_eq!(
            a.starts_at, "2024-05-06T07:00:00.5+02:00",
            "kept as received"
        );
        assert_eq!(a.ends_at, "0001-01-01T00:00:00Z");
        assert_eq!(a.generator_url, "http://prometheus:9090/graph?g0.expr=cpu");
        assert_eq!(a.fingerprint, "a1b2c3d4e5f60718", "kept as received");

        let b = &n.alerts[1];
        assert_eq!(b.status, AlertStatus::Resolved);
        assert_eq!(b.fingerprint, fingerprint(&b.labels), "computed when empty");
        assert_eq!(b.ends_at, "2024-05-06T05:00:00Z");
    }

    #[test]
    fn unknown_fields_are_ignored_everywhere() {
        let n = parse(r#"{"x":1,"alerts":[{"labels":{"a":"b"},"silencedBy":[],"x":{"y":null}}]}"#)
            .unwrap();
        assert_eq!(n.alerts[0].labels, labels(&[("a", "b")]));
    }

    #[test]
    fn null_counts_as_absent() {
        let n = parse(
            r#"{"receiver":null,"groupLabels":null,"alerts":[{"labels":null,"annotations":null,"status":null,"fingerprint":null}]}"#,
        )
        .unwrap();
        assert_eq!(n.alerts[0].status, AlertStatus::Firing);
        assert!(n.alerts[0].labels.is_empty());
        assert_eq!(n.alerts[0].fingerprint, "cbf29ce484222325");
        assert!(parse(r#"{"alerts":null}"#).unwrap().alerts.is_empty());
    }

    #[test]
    fn empty_object_is_an_empty_notification() {
        let n = parse("{}").unwrap();
        assert_eq!(n, Notification::default());
    }

    #[test]
    fn alert_to_json_uses_alertmanager_keys() {
        let n = parse(FULL).unwrap();
        let v = n.alerts[1].to_json();
        // The alert as sent, with the fingerprint Karo computed for the empty one.
        let full: Value = serde_json::from_str(FULL).unwrap();
        let mut sent = full["alerts"][1].clone();
        assert_eq!(sent["fingerprint"], "");
        sent["fingerprint"] = Value::String(n.alerts[1].fingerprint.clone());
        assert_eq!(v, sent);
        assert_eq!(serde_json::to_value(&n.alerts[1]).unwrap(), v);
    }

    #[test]
    fn alert_name_defaults_to_empty() {
        assert_eq!(Alert::default().alert_name(), "");
    }

    fn error(body: &str) -> String {
        parse(body).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "",
                "body is empty (expected an Alertmanager webhook notification)",
            ),
            (
                " \n",
                "body is empty (expected an Alertmanager webhook notification)",
            ),
            (
                "{",
                "body is not valid JSON: EOF while parsing an object at line 1 column 1",
            ),
            (
                "[]",
                "body must be a JSON object (an Alertmanager webhook notification), found an array",
            ),
            (
                "\"x\"",
                "body must be a JSON object (an Alertmanager webhook notification), found a string",
            ),
            (
                r#"{"alerts":{}}"#,
                "field `alerts` must be an array of alerts, found an object",
            ),
            (
                r#"{"alerts":[1]}"#,
                "field `alerts[0]` must be an object, found a number",
            ),
            (
                r#"{"alerts":[{},{},{},{"labels":["a"]}]}"#,
                "field `alerts[3].labels` must be an object of strings, found an array",
            ),
            (
                r#"{"alerts":[{"labels":{"severity":3}}]}"#,
                "field `alerts[0].labels.severity` must be a string, found a number",
            ),
            (
                r#"{"alerts":[{"annotations":{"a":true}}]}"#,
                "field `alerts[0].annotations.a` must be a string, found a boolean",
            ),
            (
                r#"{"alerts":[{"status":"pending"}]}"#,
                r#"field `alerts[0].status` must be "firing" or "resolved", found "pending""#,
            ),
            (
                r#"{"alerts":[{"status":1}]}"#,
                "field `alerts[0].status` must be a string, found a number",
            ),
            (
                r#"{"receiver":5}"#,
                "field `receiver` must be a string, found a number",
            ),
            (
                r#"{"commonLabels":"x"}"#,
                "field `commonLabels` must be an object of strings, found a string",
            ),
            (
                r#"{"truncatedAlerts":-1}"#,
                "field `truncatedAlerts` must be a non-negative integer, found a number",
            ),
            (
                r#"{"alerts":[{"fingerprint":{}}]}"#,
                "field `alerts[0].fingerprint` must be a string, found an object",
            ),
            (
                r#"{"alerts":[{"generatorURL":[]}]}"#,
                "field `alerts[0].generatorURL` must be a string, found an array",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(error(body), expected, "body: {body}");
        }
    }

    #[test]
    fn invalid_timestamps_are_rejected() {
        let e = error(r#"{"alerts":[{"startsAt":"yesterday"}]}"#);
        assert!(
            e.starts_with(
                r#"field `alerts[0].startsAt` must be an RFC 3339 timestamp, found "yesterday": "#
            ),
            "{e}"
        );
        let e = error(r#"{"alerts":[{"endsAt":"2024-05-06"}]}"#);
        assert!(e.starts_with("field `alerts[0].endsAt`"), "{e}");
    }

    #[test]
    fn syntax_error_reports_position() {
        let e = error("{\n  \"alerts\": [,]\n}");
        assert!(e.starts_with("body is not valid JSON: "), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }
}
