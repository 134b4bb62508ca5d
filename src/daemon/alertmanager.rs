//! Karo's client for Alertmanager's v2 API: the silence that keeps an alert quiet
//! while its Run is active (`ensure_silence`, `expire_silence`), and whether an
//! alert still fires (`alert_firing`).
//!
//! The request bodies, filters and the choice among listed silences are pure
//! functions (below the client), tested without an Alertmanager.
//!
//! Alertmanager 0.25, as checked against the real one (tests/it/alertmanager_api.rs):
//! `DELETE /api/v2/silence/{id}` answers 200 for a silence that is already
//! expired, 500 `"silence not found"` (not 404) for an unknown one, and 422 for an
//! ID that is not a UUID. Other versions answer 404 for an unknown silence, or 500
//! `silence ... already expired`. Each of these (but 422) means the silence
//! silences nothing, which is what the caller wants.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::model::config::{check_http_url, AlertmanagerConfig, AuthType};

/// `createdBy` of Karo's silences: how Karo tells its own from people's.
pub const CREATED_BY: &str = "karo";

/// How much of an unexpected answer's body an error quotes.
const BODY_EXCERPT_BYTES: usize = 512;

/// A silence on an alert's exact labels, for one Run (decided by the core).
pub use crate::core::closing::SilencePlan as SilenceRequest;

/// Why a call to Alertmanager did not give an answer Karo can use.
#[derive(Debug, thiserror::Error)]
pub enum AlertmanagerError {
    /// The configuration cannot make a client (`key` is the config key).
    #[error("{key}: {reason}")]
    Config { key: &'static str, reason: String },
    /// A credentials or CA file cannot be read (`key` is the config key naming it).
    #[error("cannot read {key} {}: {source}", .path.display())]
    File {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No answer: connection refused, TLS, timeout.
    #[error("{method} {url}: {message}")]
    Request {
        method: Method,
        url: String,
        message: String,
        timeout: bool,
    },
    /// An answer with a status that means failure.
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status {
        method: Method,
        url: String,
        status: u16,
        body: String,
    },
    /// A request Karo will not send.
    #[error("{0}")]
    Invalid(String),
    /// A successful status with a body that is not what the API documents.
    #[error("{method} {url}: unexpected answer ({message}): {body}")]
    Answer {
        method: Method,
        url: String,
        message: String,
        body: String,
    },
}

impl AlertmanagerError {
    /// Short stable name, for a metric label or an Event reason.
    pub fn kind(&self) -> &'static str {
        match self {
            AlertmanagerError::Config { .. } => "config",
            AlertmanagerError::File { .. } => "file",
            AlertmanagerError::Request { timeout: true, .. } => "timeout",
            AlertmanagerError::Request { .. } => "unreachable",
            AlertmanagerError::Status { .. } => "status",
            AlertmanagerError::Answer { .. } => "answer",
            AlertmanagerError::Invalid(_) => "invalid",
        }
    }

    /// Whether the same call may succeed later without a change of configuration:
    /// no answer, 429 or 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            AlertmanagerError::Request { .. } => true,
            AlertmanagerError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// How requests are authenticated; files are read at every request.
#[derive(Debug, Clone)]
enum Credentials {
    None,
    Basic {
        username: String,
        password_file: PathBuf,
    },
    Bearer {
        token_file: PathBuf,
    },
}

/// A client of one Alertmanager (`alertmanager.url`).
#[derive(Debug, Clone)]
pub struct AlertmanagerClient {
    base: Url,
    http: reqwest::Client,
    credentials: Credentials,
}

impl AlertmanagerClient {
    /// The client `config` describes; `None` without `url`. Reads the CA file now;
    /// credentials files are read at each request.
    pub fn new(config: &AlertmanagerConfig) -> Result<Option<Self>, AlertmanagerError> {
        let Some(raw) = &config.url else {
            return Ok(None);
        };
        let invalid_url = |reason: String| AlertmanagerError::Config {
            key: "alertmanager.url",
            reason,
        };
        check_http_url(raw).map_err(invalid_url)?;
        let base = Url::parse(raw).map_err(|e| invalid_url(e.to_string()))?;
        if base.cannot_be_a_base() {
            return Err(invalid_url(format!("{raw:?} cannot be a base URL")));
        }
        let credentials = credentials(config)?;
        let timeout = config.timeout();
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("karo/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.tls.ca_file {
            let key = "alertmanager.tls.caFile";
            let pem = std::fs::read(path).map_err(|source| AlertmanagerError::File {
                key,
                path: path.clone(),
                source,
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                AlertmanagerError::Config {
                    key,
                    reason: format!("{}: {}", path.display(), chain(&e)),
                }
            })?;
            if certificates.is_empty() {
                return Err(AlertmanagerError::Config {
                    key,
                    reason: format!("{} holds no PEM certificate", path.display()),
                });
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if config.tls.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| AlertmanagerError::Config {
            key: "alertmanager",
            reason: format!("cannot build the HTTP client: {}", chain(&e)),
        })?;
        Ok(Some(AlertmanagerClient {
            base,
            http,
            credentials,
        }))
    }

    /// The configured base URL.
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    /// The ID of the Run's silence: the one Karo made before (active or pending,
    /// `createdBy` karo, `marker` in its comment, matchers equal to the labels),
    /// else a new one. Calling it again is safe.
    pub async fn ensure_silence(&self, req: &SilenceRequest) -> Result<String, AlertmanagerError> {
        let mut url = self.endpoint(&["api", "v2", "silences"]);
        for filter in silence_filters(&req.labels) {
            url.query_pairs_mut().append_pair("filter", &filter);
        }
        let body = self.expect_success(Method::GET, url.clone(), None).await?;
        let silences: Vec<Silence> = parse(&Method::GET, &url, &body)?;
        if let Some(id) = find_silence(&silences, req) {
            return Ok(id.to_string());
        }
        let url = self.endpoint(&["api", "v2", "silences"]);
        let post = silence_body(req, jiff::Timestamp::now());
        let body = self
            .expect_success(Method::POST, url.clone(), Some(&post))
            .await?;
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "silenceID")]
            silence_id: String,
        }
        let created: Created = parse(&Method::POST, &url, &body)?;
        Ok(created.silence_id)
    }

    /// Expires the silence `id`. A silence that is unknown or already expired
    /// counts as done.
    pub async fn expire_silence(&self, id: &str) -> Result<(), AlertmanagerError> {
        let url = self.endpoint(&["api", "v2", "silence", id]);
        if id.trim().is_empty() {
            return Err(AlertmanagerError::Invalid(format!(
                "DELETE {url}: an empty silence ID"
            )));
        }
        let (status, body) = self.call(Method::DELETE, url.clone(), None).await?;
        if status.is_success() || expired_or_unknown(status, &body) {
            return Ok(());
        }
        Err(status_error(Method::DELETE, &url, status, &body))
    }

    /// Whether Alertmanager holds an unresolved alert with this fingerprint
    /// (silenced and inhibited ones included): it lists no alert whose `endsAt`
    /// is past.
    pub async fn alert_firing(
        &self,
        fingerprint: &str,
        alertname: &str,
    ) -> Result<bool, AlertmanagerError> {
        let mut url = self.endpoint(&["api", "v2", "alerts"]);
        url.query_pairs_mut().extend_pairs(alerts_query(alertname));
        let body = self.expect_success(Method::GET, url.clone(), None).await?;
        let alerts: Vec<Alert> = parse(&Method::GET, &url, &body)?;
        Ok(is_firing(&alerts, fingerprint))
    }

    /// `base` with `segments` appended (each percent-encoded).
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // `new` refused URLs that cannot be a base, the only case that fails.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends the request with credentials; the status and the body, whatever they are.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<(StatusCode, String), AlertmanagerError> {
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let request = self.authorize(request).await?;
        let unanswered = |e: reqwest::Error| AlertmanagerError::Request {
            method: method.clone(),
            url: url.to_string(),
            timeout: e.is_timeout(),
            message: chain(&e.without_url()),
        };
        let response = request.send().await.map_err(unanswered)?;
        let status = response.status();
        let text = response.text().await.map_err(unanswered)?;
        Ok((status, text))
    }

    /// The body of a 2xx answer; any other status is an error.
    async fn expect_success(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<String, AlertmanagerError> {
        let (status, text) = self.call(method.clone(), url.clone(), body).await?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(status_error(method, &url, status, &text))
        }
    }

    async fn authorize(
        &self,
        request: RequestBuilder,
    ) -> Result<RequestBuilder, AlertmanagerError> {
        Ok(match &self.credentials {
            Credentials::None => request,
            Credentials::Basic {
                username,
                password_file,
            } => {
                let password = read_secret("alertmanager.auth.passwordFile", password_file).await?;
                request.basic_auth(username, Some(password))
            }
            Credentials::Bearer { token_file } => {
                let token = read_secret("alertmanager.auth.tokenFile", token_file).await?;
                request.bearer_auth(token)
            }
        })
    }
}

fn credentials(config: &AlertmanagerConfig) -> Result<Credentials, AlertmanagerError> {
    let auth = &config.auth;
    let required = |key: &'static str, kind: &str| AlertmanagerError::Config {
        key,
        reason: format!("required when `alertmanager.auth.type` is {kind}"),
    };
    Ok(match auth.kind {
        AuthType::None => Credentials::None,
        AuthType::Basic => Credentials::Basic {
            username: auth
                .username
                .clone()
                .filter(|u| !u.is_empty())
                .ok_or_else(|| required("alertmanager.auth.username", "basic"))?,
            password_file: auth
                .password_file
                .clone()
                .ok_or_else(|| required("alertmanager.auth.passwordFile", "basic"))?,
        },
        AuthType::Bearer => Credentials::Bearer {
            token_file: auth
                .token_file
                .clone()
                .ok_or_else(|| required("alertmanager.auth.tokenFile", "bearer"))?,
        },
    })
}

/// A credentials file's content without its trailing newline (as Secrets made
/// with `echo` have one).
async fn read_secret(key: &'static str, path: &Path) -> Result<String, AlertmanagerError> {
    let content =
        tokio::fs::read_to_string(path)
            .await
            .map_err(|source| AlertmanagerError::File {
                key,
                path: path.to_path_buf(),
                source,
            })?;
    let trimmed = content
        .strip_suffix("\r\n")
        .or_else(|| content.strip_suffix('\n'))
        .unwrap_or(&content);
    Ok(trimmed.to_string())
}

/// An error and its sources, on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}

fn status_error(method: Method, url: &Url, status: StatusCode, body: &str) -> AlertmanagerError {
    AlertmanagerError::Status {
        method,
        url: url.to_string(),
        status: status.as_u16(),
        body: excerpt(body),
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    method: &Method,
    url: &Url,
    body: &str,
) -> Result<T, AlertmanagerError> {
    serde_json::from_str(body).map_err(|e| AlertmanagerError::Answer {
        method: method.clone(),
        url: url.to_string(),
        message: e.to_string(),
        body: excerpt(body),
    })
}

/// The start of a body, cut at a character boundary.
fn excerpt(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return "(empty body)".into();
    }
    if body.len() <= BODY_EXCERPT_BYTES {
        return body.to_string();
    }
    let mut end = BODY_EXCERPT_BYTES;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}

/// Whether a failed DELETE of a silence says that it silences nothing anyway:
/// 404 (newer Alertmanagers), or 500 with "not found" (0.25) or "already expired"
/// (some older versions).
fn expired_or_unknown(status: StatusCode, body: &str) -> bool {
    status == StatusCode::NOT_FOUND
        || (status == StatusCode::INTERNAL_SERVER_ERROR
            && (body.contains("not found") || body.contains("already expired")))
}

/// A silence as `GET /api/v2/silences` lists it (only what Karo reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    pub id: String,
    pub status: SilenceStatus,
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SilenceStatus {
    /// `active`, `pending` or `expired`.
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub is_regex: bool,
    /// Absent before Alertmanager 0.22, where every matcher was an equality.
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

/// An alert as `GET /api/v2/alerts` lists it (only what Karo reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Alert {
    pub fingerprint: String,
    pub status: AlertStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AlertStatus {
    /// `unprocessed`, `active` or `suppressed`.
    pub state: String,
}

/// One matcher of Alertmanager's filter syntax, `name="value"`, with `\`, `"`
/// and newlines escaped as its parser expects.
pub fn matcher_filter(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(name.len() + value.len() + 3);
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether the filter syntax can name this label (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
fn filterable(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The `filter` values that narrow `GET /api/v2/silences` to silences on these
/// labels. A label the syntax cannot name is left out: the listed silences are
/// compared with the labels anyway.
pub fn silence_filters(labels: &BTreeMap<String, String>) -> Vec<String> {
    labels
        .iter()
        .filter(|(name, _)| filterable(name))
        .map(|(name, value)| matcher_filter(name, value))
        .collect()
}

/// The body of `POST /api/v2/silences`: one exact matcher per label.
pub fn silence_body(req: &SilenceRequest, now: jiff::Timestamp) -> Value {
    let matchers: Vec<Value> = req
        .labels
        .iter()
        .map(|(name, value)| {
            json!({"name": name, "value": value, "isRegex": false, "isEqual": true})
        })
        .collect();
    json!({
        "matchers": matchers,
        "startsAt": now.to_string(),
        "endsAt": req.ends_at.to_string(),
        "createdBy": CREATED_BY,
        "comment": req.comment,
    })
}

/// The ID of the Run's silence among `silences`: active or pending, made by Karo,
/// the marker in its comment, and exactly one equality matcher per label.
pub fn find_silence<'a>(silences: &'a [Silence], req: &SilenceRequest) -> Option<&'a str> {
    silences
        .iter()
        .find(|s| {
            matches!(s.status.state.as_str(), "active" | "pending")
                && s.created_by == CREATED_BY
                && s.comment.contains(&req.marker)
                && s.matchers.len() == req.labels.len()
                && s.matchers.iter().all(|m| {
                    m.is_equal
                        && !m.is_regex
                        && req.labels.get(&m.name).is_some_and(|v| *v == m.value)
                })
        })
        .map(|s| s.id.as_str())
}

/// The query of `GET /api/v2/alerts` for every unresolved alert named `alertname`,
/// silenced, inhibited and not yet processed ones included.
pub fn alerts_query(alertname: &str) -> Vec<(&'static str, String)> {
    vec![
        ("filter", matcher_filter("alertname", alertname)),
        ("active", "true".into()),
        ("silenced", "true".into()),
        ("inhibited", "true".into()),
        ("unprocessed", "true".into()),
    ]
}

/// Whether `alerts` holds an unresolved alert with this fingerprint.
pub fn is_firing(alerts: &[Alert], fingerprint: &str) -> bool {
    alerts
        .iter()
        .any(|a| a.fingerprint == fingerprint && a.status.state != "resolved")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn request(pairs: &[(&str, &str)]) -> SilenceRequest {
        SilenceRequest {
            labels: labels(pairs),
            ends_at: "2030-01-01T01:00:00Z".parse().expect("a timestamp"),
            comment: "Karo: run ns/run-1 is remediating".into(),
            marker: "ns/run-1".into(),
        }
    }

    #[test]
    fn filter_values_are_quoted_and_escaped() {
        assert_eq!(matcher_filter("alertname", "X"), r#"alertname="X""#);
        assert_eq!(
            matcher_filter("path", r#"C:\dir "quoted""#),
            r#"path="C:\\dir \"quoted\"""#
        );
        assert_eq!(matcher_filter("v", "a\\"), r#"v="a\\""#);
        assert_eq!(matcher_filter("v", "line\nnext"), r#"v="line\nnext""#);
        assert_eq!(matcher_filter("v", ""), r#"v="""#);
        assert_eq!(matcher_filter("v", "ünï,{}=~"), r#"v="ünï,{}=~""#);
    }

    #[test]
    fn filters_leave_out_labels_the_syntax_cannot_name() {
        let l = labels(&[("alertname", "X"), ("bad-name", "y"), ("job", "a\"b")]);
        assert_eq!(
            silence_filters(&l),
            vec![r#"alertname="X""#.to_string(), r#"job="a\"b""#.to_string()]
        );
        assert!(filterable("_a:b9"));
        assert!(!filterable("9a"));
        assert!(!filterable(""));
    }

    #[test]
    fn silence_body_has_one_exact_matcher_per_label_with_values_verbatim() {
        let req = request(&[("alertname", "X"), ("path", r#"C:\a "b""#)]);
        let now: jiff::Timestamp = "2030-01-01T00:00:00Z".parse().expect("a timestamp");
        let body = silence_body(&req, now);
        assert_eq!(
            body,
            json!({
                "matchers": [
                    {"name": "alertname", "value": "X", "isRegex": false, "isEqual": true},
                    {"name": "path", "value": r#"C:\a "b""#, "isRegex": false, "isEqual": true},
                ],
                "startsAt": "2030-01-01T00:00:00Z",
                "endsAt": "2030-01-01T01:00:00Z",
                "createdBy": "karo",
                "comment": "Karo: run ns/run-1 is remediating",
            })
        );
    }

    fn silence(id: &str, state: &str, by: &str, comment: &str, m: &[(&str, &str)]) -> Silence {
        Silence {
            id: id.into(),
            status: SilenceStatus {
                state: state.into(),
            },
            matchers: m
                .iter()
                .map(|(n, v)| Matcher {
                    name: n.to_string(),
                    value: v.to_string(),
                    is_regex: false,
                    is_equal: true,
                })
                .collect(),
            created_by: by.into(),
            comment: comment.into(),
        }
    }

    #[test]
    fn only_karos_live_silence_for_the_run_on_the_same_labels_is_reused() {
        let req = request(&[("alertname", "X"), ("job", "a")]);
        let same = [("alertname", "X"), ("job", "a")];
        let c = "Karo: run ns/run-1 is remediating";
        let others = [
            silence("expired", "expired", "karo", c, &same),
            silence("person", "active", "alice", c, &same),
            silence("other-run", "active", "karo", "Karo: run ns/run-2", &same),
            silence("fewer", "active", "karo", c, &[("alertname", "X")]),
            silence(
                "more",
                "active",
                "karo",
                c,
                &[("alertname", "X"), ("job", "a"), ("x", "1")],
            ),
            silence(
                "value",
                "active",
                "karo",
                c,
                &[("alertname", "X"), ("job", "b")],
            ),
        ];
        assert_eq!(find_silence(&others, &req), None);
        let mut regex = silence("regex", "active", "karo", c, &same);
        regex.matchers[1].is_regex = true;
        let mut negative = silence("negative", "active", "karo", c, &same);
        negative.matchers[1].is_equal = false;
        assert_eq!(find_silence(&[regex, negative], &req), None);
        let mut all = others.to_vec();
        all.push(silence("pending", "pending", "karo", c, &same));
        all.push(silence("active", "active", "karo", c, &same));
        assert_eq!(find_silence(&all, &req), Some("pending"));
    }

    #[test]
    fn listed_silences_parse_from_alertmanagers_json() {
        // As Alertmanager 0.25 lists them; `isEqual` is absent before 0.22.
        let body = r#"[{"id":"b666ecce","status":{"state":"active"},"updatedAt":"2026-12-07T16:52:03.552Z",
            "comment":"c ns/run-1","createdBy":"karo","endsAt":"2026-12-07T17:52:03.000Z",
            "matchers":[{"isRegex":false,"name":"alertname","value":"X\"y\\z"}],
            "startsAt":"2026-12-07T16:52:03.552Z"}]"#;
        let silences: Vec<Silence> = serde_json::from_str(body).expect("silences");
        let mut req = request(&[("alertname", "X\"y\\z")]);
        req.marker = "ns/run-1".into();
        assert_eq!(find_silence(&silences, &req), Some("b666ecce"));
    }

    #[test]
    fn an_alert_fires_while_listed_with_its_fingerprint() {
        let body = r#"[{"annotations":{},"endsAt":"2026-12-07T16:57:09.753Z","fingerprint":"6051004c729abe0e",
            "receivers":[{"name":"k"}],"startsAt":"2026-12-07T16:52:09.753Z",
            "status":{"inhibitedBy":[],"silencedBy":["s"],"state":"suppressed"},
            "updatedAt":"2026-12-07T16:52:09.753Z","labels":{"alertname":"A"}}]"#;
        let alerts: Vec<Alert> = serde_json::from_str(body).expect("alerts");
        assert!(is_firing(&alerts, "6051004c729abe0e"));
        assert!(!is_firing(&alerts, "0000000000000000"));
        assert!(!is_firing(&[], "6051004c729abe0e"));
        let mut resolved = alerts.clone();
        resolved[0].status.state = "resolved".into();
        assert!(!is_firing(&resolved, "6051004c729abe0e"));
    }

    #[test]
    fn alerts_query_asks_for_every_unresolved_alert_of_the_name() {
        let q = alerts_query("Disk \"full\"");
        assert_eq!(q[0], ("filter", r#"alertname="Disk \"full\"""#.to_string()));
        for flag in ["active", "silenced", "inhibited", "unprocessed"] {
            assert!(q.contains(&(flag, "true".to_string())), "{flag}");
        }
    }

    #[test]
    fn a_deleted_silence_that_silences_nothing_counts_as_done() {
        assert!(expired_or_unknown(StatusCode::NOT_FOUND, ""));
        assert!(expired_or_unknown(
            StatusCode::INTERNAL_SERVER_ERROR,
            "\"silence not found\""
        ));
        assert!(expired_or_unknown(
            StatusCode::INTERNAL_SERVER_ERROR,
            "silence 1234 already expired"
        ));
        assert!(!expired_or_unknown(
            StatusCode::INTERNAL_SERVER_ERROR,
            "context deadline exceeded"
        ));
        assert!(!expired_or_unknown(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not found"
        ));
    }

    #[test]
    fn excerpts_are_short_and_cut_at_a_character() {
        assert_eq!(excerpt("  \n"), "(empty body)");
        let long = "é".repeat(BODY_EXCERPT_BYTES);
        let e = excerpt(&long);
        assert!(e.len() <= BODY_EXCERPT_BYTES + "…".len(), "{}", e.len());
        assert!(e.ends_with('…'));
    }

    #[test]
    fn no_url_no_client_and_config_errors_name_the_key() {
        let config = AlertmanagerConfig::default();
        assert!(matches!(AlertmanagerClient::new(&config), Ok(None)));
        let mut config = AlertmanagerConfig {
            url: Some("ftp://alertmanager:9093".into()),
            ..Default::default()
        };
        let err = AlertmanagerClient::new(&config).expect_err("an error");
        assert!(err.to_string().contains("alertmanager.url"), "{err}");
        config.url = Some("http://alertmanager:9093/prefix/".into());
        config.auth.kind = AuthType::Bearer;
        let err = AlertmanagerClient::new(&config).expect_err("an error");
        assert!(
            err.to_string().contains("alertmanager.auth.tokenFile"),
            "{err}"
        );
        config.auth.kind = AuthType::None;
        config.tls.ca_file = Some("/nonexistent/ca.pem".into());
        let err = AlertmanagerClient::new(&config).expect_err("an error");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        assert_eq!(err.kind(), "file");
        config.tls.ca_file = None;
        let client = AlertmanagerClient::new(&config)
            .expect("a client")
            .expect("a url");
        assert_eq!(
            client.endpoint(&["api", "v2", "silence", "a/b c"]).as_str(),
            "http://alertmanager:9093/prefix/api/v2/silence/a%2Fb%20c"
        );
    }
}
