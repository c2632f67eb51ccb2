//! The life of a request, top to bottom (pingora's words: *downstream* is the agent,
//! *upstream* the target host).
//!
//! 1. `listen`: parse strictly; authenticate the job token (identity fixed per connection).
//! 2. [`Target`]: one authority per request, decided on the parsed URI; `Host` must agree.
//! 3. Egress: the host (and port) must be in the contract's `sandbox.network_egress`.
//! 4. Configured upstream (Connect) → [`Proxy::inspect`]: hygiene refusals, path normalised and
//!    classified, body inspected, contract evaluated, pre-forward receipt for mutations, the
//!    agent's `Authorization` replaced by the real token, response buffered and checked
//!    (category, vault), filtered or withheld, injected token redacted, call receipt made
//!    durable, then released with `X-Clawproxy-Receipt`.
//! 5. Any other allowed host → resolve once, judge every address, dial the judged address
//!    (plain HTTP forwarded, CONNECT tunnelled opaquely with open/close receipts).
//!
//! Every refusal is answered from `respond` and receipted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use claw_policy::approval::{ApprovalStore, Approvals, HeldRequest};
use claw_policy::classify::{self, Classified, Op as ClassifiedOp};
use claw_policy::contract::CONTRACT_RULES;
use claw_policy::contract::{ApprovalRule, Category, Operation, RateLimits};
use claw_policy::egress;
use claw_policy::evaluate::{self, Decision, VaultRef};
use claw_policy::host_rules;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::auth::{Auth, Identity};
use crate::config::Config;
use crate::drain::{Drain, Watcher};
use crate::hold::{self, NotApproved};
use crate::hygiene;
use crate::intercept::Interceptor;
use crate::metrics::Metrics;
use crate::ratelimit::{Budgets, Class};
use crate::receipt::{Decided, Draft, Evidence, Kind, NotRecorded, Op, Recorded, Req, Resp};
use crate::respond::{self, Body};
use crate::upstream::{self, UpstreamTarget};

/// The job recorded on receipts of requests that never authenticated.
pub use claw_verifier::receipt::ANONYMOUS_JOB as UNAUTHENTICATED;

/// The header carrying the receipt id of a call.
pub const RECEIPT_HEADER: &str = "x-clawproxy-receipt";

/// The rule of a refusal because shared state (a fleet's budgets) could not be reached.
pub const STATE_UNAVAILABLE: &str = "state_unavailable";

/// Everything a request needs, built once at start.
pub struct Proxy {
    /// The checked config.
    pub config: Config,
    /// Token verification.
    pub auth: Auth,
    /// Leaf certificates for interception.
    pub interceptor: Interceptor,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// The receipt log.
    pub evidence: Evidence,
    /// The shutdown signal every connection and tunnel watches.
    pub drain: Drain,
    budgets: Budgets,
    upstreams: HashMap<String, UpstreamTarget>,
    own: Vec<SocketAddr>,
    tunnels: Arc<Semaphore>,
    vault_names: std::sync::Mutex<HashMap<String, String>>,
    jobs: std::sync::Mutex<HashMap<String, Tracked>>,
    approvals: ApprovalStore,
    fleet: Option<claw_fleet::Fleet>,
    /// Fleet mode: jobs the shared state knows this log serves.
    served: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The bearer token of the admin approval routes (`admin_token_file`), if they are on;
    /// replaced from the file on SIGHUP.
    admin_token: RwLock<Option<zeroize::Zeroizing<String>>>,
    /// TLS to hosts intercepted for `host_rules` (public roots plus `egress_ca_file`).
    direct_tls: tokio_rustls::TlsConnector,
}

/// A job seen here, by its token.
struct Tracked {
    claims: claw_tokens::Claims,
    /// When this proxy first saw the token end (fleet mode closes a grace period later).
    ended: Option<Instant>,
}

/// Fleet mode closes a job this long after its token ended here: by then every other proxy
/// refuses the token too (its revocation feed polled, or went stale and refuses everything),
/// so no log can still join the job after the close listed the logs that served it.
const FLEET_CLOSE_GRACE: std::time::Duration =
    claw_fleet::revocations::STALE_AFTER.saturating_add(std::time::Duration::from_secs(1));

/// What decisions remember between requests, in the data dir and memory or, for a fleet,
/// partly in its shared database.
pub struct Shared {
    /// Requests held for approval, and the decisions on them.
    pub approvals: ApprovalStore,
    /// Rate-limit budgets.
    pub budgets: Budgets,
    /// Fleet mode: the shared state, which also records the logs that serve each job.
    pub fleet: Option<claw_fleet::Fleet>,
}

/// The authority and target of one request.
#[derive(Clone, Debug)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Lowercase host, no trailing dot.
    pub host: String,
    /// Port (default for the scheme when absent).
    pub port: u16,
    /// Raw path as sent.
    pub path: String,
    /// Raw query as sent.
    pub query: Option<String>,
}

impl Target {
    /// An absolute-form request (`GET http://host/path`); `Host` must name the same authority.
    pub fn from_absolute<B>(request: &Request<B>) -> Result<Self, String> {
        let uri = request.uri();
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "scheme {other:?} cannot be proxied as plain HTTP; use CONNECT"
                ));
            }
            None => {
                return Err(
                    "requests to a proxy must use an absolute URI (http://host/path)".into(),
                );
            }
        }
        let authority = uri.authority().ok_or("the URI has no host")?;
        let (host, port) = split_authority(authority.as_str(), 80)?;
        let target = Self {
            scheme: "http",
            host,
            port,
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
        };
        target.check_host_header(request.headers())?;
        Ok(target)
    }

    /// A CONNECT request's authority (`host:port`, port required).
    pub fn from_connect<B>(request: &Request<B>) -> Result<Self, String> {
        let authority = request.uri().authority().ok_or("CONNECT needs host:port")?;
        if authority.port().is_none() {
            return Err("CONNECT needs host:port".into());
        }
        let (host, port) = split_authority(authority.as_str(), 443)?;
        Ok(Self {
            scheme: "https",
            host,
            port,
            path: String::new(),
            query: None,
        })
    }

    /// An inner request of an intercepted tunnel: origin-form (or absolute-form naming this
    /// host), and `Host` must name the tunnel's host.
    pub fn inner<B>(&self, request: &Request<B>) -> Result<Self, String> {
        let uri = request.uri();
        if let Some(authority) = uri.authority() {
            let (host, port) = split_authority(authority.as_str(), 443)?;
            if host != self.host || port != self.port {
                return Err(format!(
                    "request names {host} inside a tunnel to {}",
                    self.host
                ));
            }
        }
        let target = Self {
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            ..self.clone()
        };
        target.check_host_header(request.headers())?;
        Ok(target)
    }

    fn check_host_header(&self, headers: &http::HeaderMap) -> Result<(), String> {
        let mut values = headers.get_all(header::HOST).iter();
        let value = values.next().ok_or("missing Host header")?;
        if values.next().is_some() {
            return Err("more than one Host header".into());
        }
        let value = value.to_str().map_err(|_| "Host is not ASCII")?;
        let default = if self.scheme == "https" { 443 } else { 80 };
        let (host, port) = split_authority(value, default)?;
        if host != self.host || port != self.port {
            return Err(format!(
                "Host {value:?} does not match the request's authority {}:{}",
                self.host, self.port
            ));
        }
        Ok(())
    }

    pub(crate) fn req(&self, method: &Method) -> Req {
        Req {
            method: method.as_str().to_owned(),
            scheme: self.scheme.to_owned(),
            host: self.host.clone(),
            port: self.port,
            path: self.path.clone(),
            query: self.query.clone(),
            body: None,
        }
    }
}

/// Splits `host[:port]`, lowercasing the host and dropping one trailing dot. Userinfo and
/// empty hosts are refused.
fn split_authority(authority: &str, default_port: u16) -> Result<(String, u16), String> {
    if authority.contains('@') {
        return Err("userinfo in the authority is not allowed".into());
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unterminated IPv6 literal")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("junk after an IPv6 literal".into()),
        };
        (format!("[{host}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("bad port {p:?}"))?,
        None => default_port,
    };
    let host = host.strip_suffix('.').unwrap_or(&host).to_ascii_lowercase();
    if host.is_empty() || host.ends_with('.') {
        return Err("empty host".into());
    }
    Ok((host, port))
}

impl Proxy {
    /// Builds the proxy from a checked config and its parts.
    pub fn new(
        config: Config,
        auth: Auth,
        interceptor: Interceptor,
        evidence: Evidence,
        env: &dyn Fn(&str) -> Option<String>,
        own: Vec<SocketAddr>,
        shared: Shared,
    ) -> anyhow::Result<Self> {
        let mut upstreams = HashMap::new();
        for upstream in &config.upstream {
            upstreams.insert(upstream.host.clone(), UpstreamTarget::new(upstream, env)?);
        }
        let tunnels = Arc::new(Semaphore::new(config.limits.max_tunnels));
        let admin_token = config
            .admin_token_file
            .as_deref()
            .map(crate::admin::read_token)
            .transpose()
            .map_err(|e| e.context("admin_token_file"))?;
        let direct_tls = upstream::direct_tls(config.egress_ca_file.as_deref())
            .map_err(|e| e.context("egress_ca_file"))?;
        Ok(Self {
            config,
            auth,
            interceptor,
            metrics: Metrics::default(),
            evidence,
            drain: Drain::default(),
            budgets: shared.budgets,
            upstreams,
            own,
            tunnels,
            vault_names: std::sync::Mutex::new(HashMap::new()),
            jobs: std::sync::Mutex::new(HashMap::new()),
            approvals: shared.approvals,
            fleet: shared.fleet,
            served: std::sync::Mutex::default(),
            admin_token: RwLock::new(admin_token),
            direct_tls: tokio_rustls::TlsConnector::from(direct_tls),
        })
    }

    /// Whether the admin approval routes are on and `presented` is their token. Digests are
    /// compared, in constant time, so the time taken says nothing of the token, its length
    /// included.
    pub fn is_admin_token(&self, presented: &str) -> bool {
        let token = self.admin_token.read().unwrap_or_else(|e| e.into_inner());
        token.as_ref().is_some_and(|token| {
            let want = blake3::hash(token.as_bytes());
            let got = blake3::hash(presented.as_bytes());
            crate::auth::constant_time_eq(want.as_bytes(), got.as_bytes())
        })
    }

    /// Whether the admin approval routes are on.
    pub fn admin_approvals_on(&self) -> bool {
        self.config.admin_token_file.is_some()
    }

    /// Re-reads `admin_token_file` (SIGHUP): from then on only the new token opens the
    /// approval routes. A file that is missing, unsafe or too short leaves the current token
    /// in place, and the reason is logged. Returns whether the token was replaced.
    pub fn reload_admin_token(&self) -> bool {
        let Some(path) = &self.config.admin_token_file else {
            return false;
        };
        match crate::admin::read_token(path) {
            Ok(token) => {
                *self.admin_token.write().unwrap_or_else(|e| e.into_inner()) = Some(token);
                info!("admin token reloaded from admin_token_file");
                true
            }
            Err(error) => {
                warn!(error = %format!("{error:#}"), "admin token reload failed; keeping the current token");
                false
            }
        }
    }

    /// Where held requests and decisions live.
    pub fn approvals(&self) -> &ApprovalStore {
        &self.approvals
    }

    /// Re-reads every upstream's `token_file` (SIGHUP): new requests carry the new tokens,
    /// open connections stay open. Returns how many tokens were replaced; a token that cannot
    /// be read is kept and the reason logged.
    pub fn reload_tokens(&self) -> usize {
        let mut replaced = 0;
        for upstream in self.upstreams.values() {
            match upstream.reload_token() {
                Ok(true) => {
                    replaced += 1;
                    info!(upstream = %upstream.host, "Connect token reloaded from token_file");
                }
                Ok(false) => {
                    info!(upstream = %upstream.host, "token from the environment: nothing to reload")
                }
                Err(error) => {
                    warn!(upstream = %upstream.host, error = %format!("{error:#}"), "token reload failed; keeping the current token")
                }
            }
        }
        replaced
    }

    /// The configured upstream for `host`, if any.
    pub fn upstream(&self, host: &str) -> Option<&UpstreamTarget> {
        self.upstreams.get(host)
    }

    /// Whether CONNECT to `host` is intercepted for this job rather than tunnelled: a
    /// configured upstream, or a host the job's contract has `host_rules` for.
    pub fn intercepts(&self, identity: &Identity, host: &str) -> bool {
        self.upstream(host).is_some()
            || host_rules::rules_for(identity.contract.document(), host).is_some()
    }

    /// Handles one authenticated, non-CONNECT request.
    pub async fn handle_request(
        &self,
        identity: &Identity,
        peer: SocketAddr,
        mut target: Target,
        request: Request<Incoming>,
        started: Instant,
    ) -> Response<Body> {
        let headers = request.headers();
        if headers.contains_key(header::CONTENT_LENGTH)
            && headers.contains_key(header::TRANSFER_ENCODING)
        {
            return self
                .refuse_malformed(
                    identity,
                    peer,
                    &request,
                    "both Content-Length and Transfer-Encoding",
                    started,
                )
                .await;
        }
        let method = request.method().as_str().to_owned();
        let (shadow, allowed_by) =
            match judge_host(identity, &mut target, request.headers(), &method) {
                Ok(judged) => judged,
                Err((rule, reason)) => {
                    return self
                        .deny(
                            identity,
                            peer,
                            target.req(request.method()),
                            Op::unknown("none", &method),
                            &rule,
                            &reason,
                            started,
                        )
                        .await;
                }
            };
        match self.upstream(&target.host) {
            Some(upstream) => {
                self.inspect(identity, peer, target, upstream, request, shadow, started)
                    .await
            }
            None => {
                let allowed_by = match allowed_by {
                    Some(reason) => (host_rules::RULE, reason),
                    None => ("network_egress", "host is in network_egress".to_owned()),
                };
                let verdict = Verdict { shadow, allowed_by };
                self.forward_direct(identity, peer, target, request, verdict, started)
                    .await
            }
        }
    }

    /// Request-level enforcement for a configured upstream. `shadow` is a denial an audit-only
    /// contract already let pass.
    #[allow(clippy::too_many_arguments)]
    async fn inspect(
        &self,
        identity: &Identity,
        peer: SocketAddr,
        target: Target,
        upstream: &UpstreamTarget,
        request: Request<Incoming>,
        mut shadow: Option<Shadow>,
        started: Instant,
    ) -> Response<Body> {
        let mut req = target.req(request.method());
        let unknown = Op::unknown("onepassword", "unknown");
        if let Err(refusal) = hygiene::refuse_unsafe(request.headers()) {
            let rule = refusal.rule();
            return self
                .deny(
                    identity,
                    peer,
                    req,
                    unknown,
                    rule,
                    &refusal.reason(),
                    started,
                )
                .await;
        }
        let path_and_query = request
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let classified = match classify::classify(request.method().as_str(), &path_and_query) {
            Ok(classified) => classified,
            Err(error) => {
                return self
                    .deny(
                        identity,
                        peer,
                        req,
                        unknown,
                        "ambiguous_path",
                        &error.to_string(),
                        started,
                    )
                    .await;
            }
        };
        req.path = classified.path.clone();
        req.query = classified.query.clone();
        let operation = match classified.op {
            ClassifiedOp::Known(op) => op,
            ClassifiedOp::Unknown => {
                let reason = format!(
                    "{} {} is not a 1Password Connect operation clawproxy knows",
                    req.method, req.path
                );
                return self
                    .deny(
                        identity,
                        peer,
                        req,
                        unknown,
                        "unknown_operation",
                        &reason,
                        started,
                    )
                    .await;
            }
        };
        let mut op = Op {
            integration: "onepassword".into(),
            name: operation.as_str().into(),
            vault: classified.vault.clone(),
            item: classified.item.clone(),
            ..Op::default()
        };

        let (parts, body) = request.into_parts();
        let limit = self.config.limits.max_body_bytes;
        // The body must arrive as promptly as the head did: a client that announces a body
        // and sends nothing would otherwise hold the connection forever.
        let deadline = self.config.limits.header_timeout();
        let collected = tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await;
        let body = match collected {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(error)) => {
                let (rule, reason, status) = if error
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    let reason = format!("request body over {limit} bytes");
                    ("body_too_large", reason, StatusCode::PAYLOAD_TOO_LARGE)
                } else {
                    let reason = "the request body's framing is broken".to_owned();
                    ("malformed_request", reason, StatusCode::BAD_REQUEST)
                };
                let response = self
                    .deny(identity, peer, req, op, rule, &reason, started)
                    .await;
                return with_status(response, status);
            }
            Err(_) => {
                let reason = format!(
                    "the request body did not arrive within {} ms",
                    deadline.as_millis()
                );
                let response = self
                    .deny(
                        identity,
                        peer,
                        req,
                        op,
                        "malformed_request",
                        &reason,
                        started,
                    )
                    .await;
                return with_status(response, StatusCode::REQUEST_TIMEOUT);
            }
        };
        if !body.is_empty() {
            req.body = Some(body.to_vec());
        }

        // What a write body would set: its category and vault are checked like the path's.
        let mut category = None;
        let mut body_title = None;
        if matches!(
            operation,
            Operation::CreateItem | Operation::UpdateItem | Operation::PatchItem
        ) {
            match evaluate::inspect_body(operation, &body) {
                Ok(facts) => {
                    if let Some(vault) = facts.vault.as_deref()
                        && classified.vault.as_deref() != Some(vault)
                    {
                        let reason = format!("the body names vault {vault}, the path another");
                        return self
                            .deny(
                                identity,
                                peer,
                                req,
                                op,
                                "body_vault_mismatch",
                                &reason,
                                started,
                            )
                            .await;
                    }
                    category = facts.category;
                    body_title = facts.title;
                }
                Err(error) => {
                    return self
                        .deny(
                            identity,
                            peer,
                            req,
                            op,
                            "uninspectable_body",
                            &error.to_string(),
                            started,
                        )
                        .await;
                }
            }
            op.category = category.map(|c| c.as_str().to_owned());
        }

        let vault_ref = match classified.vault.as_deref() {
            Some(id) => Some(VaultRef {
                id: id.to_owned(),
                name: self.vault_name(identity, upstream, id).await,
            }),
            None => None,
        };
        op.vault_name = vault_ref.as_ref().and_then(|v| v.name.clone());
        let item_title = match &vault_ref {
            Some(vault) => {
                let item = classified.item.as_deref();
                self.item_title(identity, upstream, vault, item, body_title)
                    .await
            }
            None => None,
        };
        op.item_title = item_title.clone();
        let facts = evaluate::Request {
            op: operation,
            vault: vault_ref.clone(),
            item: classified.item.clone(),
            item_title,
            category,
        };
        let decision = evaluate::evaluate(identity.contract.document(), &identity.scope, &facts);
        let rule = decision.rule().to_owned();
        match shadowed(identity, decision) {
            Ok(passed) => shadow = shadow.or(passed),
            Err((rule, reason)) => {
                return self
                    .deny(identity, peer, req, op, &rule, &reason, started)
                    .await;
            }
        }
        let over = match self.over_budget(identity, operation).await {
            Ok(over) => over,
            Err(error) => {
                warn!(%error, "rate-limit budget unavailable; refusing");
                return self
                    .state_unavailable(identity, peer, req, op, started)
                    .await;
            }
        };
        if let Some(wait) = over {
            if identity.contract.document().audit_only() {
                let reason = format!("job {} is over its rate_limits budget", identity.job());
                shadow = shadow.or(Some(Shadow::new("rate_limit", &reason)));
            } else {
                return self
                    .rate_limited(identity, peer, req, op, wait, started)
                    .await;
            }
        }
        // Allowed, but a person may have to agree first: the connection waits here.
        let mut approval = None;
        if let Some((index, rule)) = evaluate::approval_rule(identity.contract.document(), &facts) {
            if identity.contract.document().audit_only() {
                let reason = format!(
                    "{operation} is held for approval by {}",
                    rule.approvers.join(", ")
                );
                shadow = shadow.or(Some(Shadow::new(evaluate::APPROVAL_RULE, &reason)));
            } else {
                let held = self.held_request(identity, &req, &op, index, rule);
                match hold::hold(&self.approvals, &self.metrics, &held, rule).await {
                    Ok(verdict) => approval = Some(verdict),
                    Err(not) => {
                        let reason = not.reason(rule);
                        let mut draft = self.draft(
                            Kind::Call,
                            peer,
                            &req,
                            &op,
                            false,
                            evaluate::APPROVAL_RULE,
                            &reason,
                            None,
                            started,
                        );
                        if let NotApproved::Refused(verdict) = not {
                            draft.decision.approval = Some(verdict);
                        }
                        return self.refuse(identity, draft, started).await;
                    }
                }
            }
        }

        // Mutations: a durable pre-forward receipt, or nothing is forwarded.
        let mut rid = None;
        if operation.is_mutating() {
            let pair = exchange_id();
            let mut draft = self.draft(
                Kind::Request,
                peer,
                &req,
                &op,
                true,
                &rule,
                "allowed; about to forward",
                None,
                started,
            );
            draft.rid = Some(pair.clone());
            draft.decision.approval.clone_from(&approval);
            Shadow::mark(&shadow, &mut draft);
            match self.evidence.record(Some(identity), draft).await {
                Ok(_) => rid = Some(pair),
                Err(error) => {
                    warn!(%error, "pre-forward receipt failed; not forwarding");
                    self.metrics.answered("error", operation.as_str(), started);
                    return respond::receipt_failed();
                }
            }
        }

        let upstream_response = self
            .send_upstream(upstream, &parts, &classified, body)
            .await;
        let (status, mut headers, mut body) = match upstream_response {
            Ok(parts) => parts,
            Err(timeout) => {
                let mut draft = self.draft(
                    Kind::Call,
                    peer,
                    &req,
                    &op,
                    true,
                    &rule,
                    "upstream failed",
                    None,
                    started,
                );
                draft.rid = rid;
                draft.decision.approval.clone_from(&approval);
                Shadow::mark(&shadow, &mut draft);
                let recorded = self.evidence.record(Some(identity), draft).await;
                self.metrics.answered("error", operation.as_str(), started);
                return failed_upstream(timeout, recorded);
            }
        };
        let upstream_body = body.clone();
        let mut released_anyway = 0;

        // Response checks: a read's category, a list's entries.
        if status.is_success() {
            match self
                .check_response(
                    identity,
                    upstream,
                    operation,
                    &classified,
                    &mut body,
                    &mut op,
                )
                .await
            {
                Ok(0) => {}
                Ok(released) => released_anyway = released,
                Err((rule, reason))
                    if identity.contract.document().audit_only()
                        && CONTRACT_RULES.contains(&rule.as_str()) =>
                {
                    shadow = shadow.or(Some(Shadow::new(&rule, &reason)));
                }
                Err((rule, reason)) => {
                    let mut draft = self.draft(
                        Kind::Call,
                        peer,
                        &req,
                        &op,
                        false,
                        &rule,
                        &reason,
                        None,
                        started,
                    );
                    draft.resp = Some(Resp {
                        status: status.as_u16(),
                        body: upstream_body,
                        released: false,
                    });
                    draft.rid = rid;
                    draft.decision.approval.clone_from(&approval);
                    return match self.evidence.record(Some(identity), draft).await {
                        Ok(recorded) => {
                            self.metrics.answered("deny", operation.as_str(), started);
                            self.metrics.denied(identity.job(), Instant::now());
                            info!(job = identity.job(), op = operation.as_str(), decision = "withhold", %rule, status = 403u16, duration_ms = started.elapsed().as_millis() as u64, "request");
                            with_receipt(respond::denied(&rule, &reason), &recorded.id)
                        }
                        Err(_) => respond::receipt_failed(),
                    };
                }
            }
        }

        hygiene::clean_response(&mut headers);
        hygiene::redact(
            &mut headers,
            &mut body,
            upstream.token().expose_secret().as_bytes(),
        );
        let mut draft = self.draft(
            Kind::Call,
            peer,
            &req,
            &op,
            true,
            &rule,
            &if released_anyway > 0 {
                format!(
                    "allowed by the contract; audit only: {released_anyway} list entries it \
                     would withhold were released"
                )
            } else {
                "allowed by the contract".to_owned()
            },
            None,
            started,
        );
        draft.resp = Some(Resp {
            status: status.as_u16(),
            body: upstream_body,
            released: true,
        });
        draft.rid = rid;
        draft.decision.approval = approval;
        Shadow::mark(&shadow, &mut draft);
        let recorded = match self.evidence.record(Some(identity), draft).await {
            Ok(recorded) => recorded,
            Err(error) => {
                warn!(%error, "call receipt failed; withholding the response");
                self.metrics.answered("error", operation.as_str(), started);
                return respond::receipt_failed();
            }
        };
        let decision = Shadow::label(&shadow);
        self.metrics.answered(decision, operation.as_str(), started);
        let item = op.item.as_deref();
        self.metrics
            .released(identity.job(), &op.name, item, status.as_u16());
        let rule = shadow.as_ref().map_or(rule.as_str(), |s| s.rule.as_str());
        info!(job = identity.job(), op = operation.as_str(), decision, %rule, status = status.as_u16(), duration_ms = started.elapsed().as_millis() as u64, "request");
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        headers.remove(header::CONTENT_LENGTH);
        *response.headers_mut() = headers;
        with_receipt(response, &recorded.id)
    }

    /// Sends the checked request upstream: the normalised path, clean headers, the real token.
    /// `Err(true)` is a timeout, `Err(false)` any other failure.
    async fn send_upstream(
        &self,
        upstream: &UpstreamTarget,
        parts: &http::request::Parts,
        classified: &Classified,
        body: Bytes,
    ) -> Result<(StatusCode, http::HeaderMap, Vec<u8>), bool> {
        let uri = upstream
            .uri(&classified.path, classified.query.as_deref())
            .map_err(|_| false)?;
        let mut builder = Request::builder().method(parts.method.clone()).uri(uri);
        let mut headers = parts.headers.clone();
        hygiene::clean_request(&mut headers);
        headers.remove(header::HOST);
        headers.remove(header::CONTENT_LENGTH);
        hygiene::inject_bearer(&mut headers, upstream.token().expose_secret())
            .map_err(|_| false)?;
        if let Some(h) = builder.headers_mut() {
            *h = headers;
        }
        let request = builder.body(Full::new(body)).map_err(|_| false)?;
        let timeout = self.config.limits.upstream_timeout();
        let response = match tokio::time::timeout(timeout, upstream.client.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                debug!(%error, "upstream request failed");
                return Err(false);
            }
            Err(_) => return Err(true),
        };
        let (parts, body) = response.into_parts();
        let limit = self.config.limits.max_body_bytes;
        let body = match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes().to_vec(),
            Ok(Err(_)) => return Err(false),
            Err(_) => return Err(true),
        };
        Ok((parts.status, parts.headers, body))
    }

    /// Checks an upstream answer against the contract; filters lists in place (under an
    /// audit-only contract, counts what it would filter). Returns how many list entries the
    /// contract withholds were released anyway (audit-only).
    async fn check_response(
        &self,
        identity: &Identity,
        upstream: &UpstreamTarget,
        operation: Operation,
        classified: &Classified,
        body: &mut Vec<u8>,
        op: &mut Op,
    ) -> Result<u64, (String, String)> {
        let scope = &identity.scope;
        let audit = identity.contract.document().audit_only();
        match operation {
            Operation::ReadItem
            | Operation::CreateItem
            | Operation::UpdateItem
            | Operation::PatchItem => {
                let item: Value = serde_json::from_slice(body).map_err(|_| {
                    (
                        "uninspectable_response".to_owned(),
                        "the upstream item is not JSON".to_owned(),
                    )
                })?;
                let category = item_category(&item)?;
                op.category = Some(category.as_str().to_owned());
                allowed(evaluate::category_allowed(scope, category)).map(|()| 0)
            }
            Operation::ListItems => {
                let vault = classified.vault.as_ref().map(|id| VaultRef {
                    id: id.clone(),
                    name: op.vault_name.clone(),
                });
                filter_list(body, op, audit, |item| {
                    let text = |key: &str| item.get(key).and_then(Value::as_str);
                    let listed = vault.as_ref().is_none_or(|vault| {
                        evaluate::item_allowed(scope, vault, text("id"), text("title")).is_allow()
                    });
                    listed
                        && item_category(item)
                            .is_ok_and(|c| evaluate::category_allowed(scope, c).is_allow())
                })
            }
            Operation::ListVaults => filter_list(body, op, audit, |vault| {
                let vault = VaultRef {
                    id: vault
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    name: vault.get("name").and_then(Value::as_str).map(str::to_owned),
                };
                evaluate::vault_allowed(scope, &vault).is_allow()
            }),
            Operation::ListFiles | Operation::ReadFile | Operation::ReadFileContent => {
                // A file answer does not say what its item is: ask upstream ourselves.
                let (Some(vault), Some(item)) = (&classified.vault, &classified.item) else {
                    return Err((
                        "unknown_operation".into(),
                        "file request without an item".into(),
                    ));
                };
                let path = format!("/v1/vaults/{vault}/items/{item}");
                let item = self.fetch_json(upstream, &path).await.ok_or((
                    "uninspectable_response".to_owned(),
                    "could not read the file's item to check its category".to_owned(),
                ))?;
                let category = item_category(&item)?;
                op.category = Some(category.as_str().to_owned());
                allowed(evaluate::category_allowed(scope, category)).map(|()| 0)
            }
            Operation::GetVault
            | Operation::DeleteItem
            | Operation::Health
            | Operation::Activity => Ok(0),
        }
    }

    /// How long the job must wait, when the contract's `rate_limits` leave no room for this
    /// operation now (an allowed request takes one unit of its class's budget); `Err` when a
    /// fleet's budget cannot be reached.
    async fn over_budget(
        &self,
        identity: &Identity,
        operation: Operation,
    ) -> Result<Option<(Class, std::time::Duration)>, claw_fleet::FleetError> {
        let Some(limits) = identity.contract.document().rate_limits.as_ref() else {
            return Ok(None);
        };
        let (class, rate) = match (operation.is_mutating(), limits) {
            (
                true,
                RateLimits {
                    writes: Some(rate), ..
                },
            ) => (Class::Writes, rate),
            (
                false,
                RateLimits {
                    reads: Some(rate), ..
                },
            ) => (Class::Reads, rate),
            _ => return Ok(None),
        };
        let admitted = self.budgets.admit(identity.job(), class, rate).await?;
        Ok(admitted.err().map(|wait| (class, wait)))
    }

    /// 503 with `Retry-After`, receipted as a denial by the rule `state_unavailable`: the
    /// fleet's budget could not be reached, so the request is not let through unmetered.
    async fn state_unavailable(
        &self,
        identity: &Identity,
        peer: SocketAddr,
        req: Req,
        op: Op,
        started: Instant,
    ) -> Response<Body> {
        let reason = "the fleet's rate-limit budget cannot be reached";
        let denied = self
            .deny(identity, peer, req, op, STATE_UNAVAILABLE, reason, started)
            .await;
        if denied.status() != StatusCode::FORBIDDEN {
            return denied; // the receipt failed: 503 says so
        }
        let mut response = respond::state_unavailable(reason);
        if let Some(id) = denied.headers().get(RECEIPT_HEADER) {
            response.headers_mut().insert(RECEIPT_HEADER, id.clone());
        }
        response
    }

    /// 429 with `Retry-After`, receipted as a denial by the rule `rate_limit`.
    async fn rate_limited(
        &self,
        identity: &Identity,
        peer: SocketAddr,
        req: Req,
        op: Op,
        (class, wait): (Class, std::time::Duration),
        started: Instant,
    ) -> Response<Body> {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let reason = format!(
            "job {} is over its {} budget in rate_limits; retry in {seconds} s",
            identity.job(),
            class.as_str()
        );
        let denied = self
            .deny(identity, peer, req, op, "rate_limit", &reason, started)
            .await;
        if denied.status() != StatusCode::FORBIDDEN {
            return denied; // the receipt failed: 503 says so
        }
        let mut response = respond::rate_limited(&reason, seconds.max(1));
        if let Some(id) = denied.headers().get(RECEIPT_HEADER) {
            response.headers_mut().insert(RECEIPT_HEADER, id.clone());
        }
        response
    }

    /// The title an item list needs to decide about this item, when its vault has a list: a
    /// created item's from the body; an existing item's from Connect, asked only when the list
    /// names titles and does not list the id.
    async fn item_title(
        &self,
        identity: &Identity,
        upstream: &UpstreamTarget,
        vault: &VaultRef,
        item: Option<&str>,
        body_title: Option<String>,
    ) -> Option<String> {
        let list = evaluate::item_list(&identity.scope, vault)?;
        let id = match item {
            None => return body_title,
            Some(id) => id,
        };
        if list.iter().any(|entry| entry == id) || !evaluate::lists_titles(&identity.scope, vault) {
            return None;
        }
        let path = format!("/v1/vaults/{}/items/{id}", vault.id);
        let found = self.fetch_json(upstream, &path).await?;
        found.get("title")?.as_str().map(str::to_owned)
    }

    /// The vault's name, when the effective scope lists vaults by name (cached; Connect is
    /// asked once per vault id).
    async fn vault_name(
        &self,
        identity: &Identity,
        upstream: &UpstreamTarget,
        id: &str,
    ) -> Option<String> {
        let scope = &identity.scope;
        if scope.allowed_vaults.iter().any(|v| v == id) {
            return None;
        }
        if let Some(name) = self
            .vault_names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return Some(name.clone());
        }
        let vault = self
            .fetch_json(upstream, &format!("/v1/vaults/{id}"))
            .await?;
        let name = vault.get("name")?.as_str()?.to_owned();
        self.vault_names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), name.clone());
        Some(name)
    }

    /// The proxy's own GET to an upstream (never on the agent's behalf, never released).
    async fn fetch_json(&self, upstream: &UpstreamTarget, path: &str) -> Option<Value> {
        if path.contains(['?', '#', '%', '\\']) || path.contains("..") {
            return None;
        }
        let mut request = Request::get(upstream.uri(path, None).ok()?)
            .body(Full::new(Bytes::new()))
            .ok()?;
        hygiene::inject_bearer(request.headers_mut(), upstream.token().expose_secret()).ok()?;
        let timeout = self.config.limits.upstream_timeout();
        let response = tokio::time::timeout(timeout, upstream.client.request(request))
            .await
            .ok()?
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let limit = self.config.limits.max_body_bytes;
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .ok()?;
        serde_json::from_slice(&body.to_bytes()).ok()
    }

    /// A request to an allowed host that is not a configured upstream: plain HTTP, or HTTPS
    /// inside an intercepted tunnel (a host with `host_rules`), over the proxy's own connection
    /// to the address it judged. `verdict` says what allowed it (or, under an audit-only
    /// contract, what would have refused it).
    async fn forward_direct(
        &self,
        identity: &Identity,
        peer: SocketAddr,
        target: Target,
        request: Request<Incoming>,
        verdict: Verdict,
        started: Instant,
    ) -> Response<Body> {
        let Verdict {
            shadow,
            allowed_by: (rule, reason),
        } = verdict;
        let req = target.req(request.method());
        let op = Op::unknown("none", "egress");
        let addrs = match upstream::resolve_public(&target.host, target.port, &self.own).await {
            Ok(addrs) => addrs,
            Err(reason) => {
                return self
                    .deny(identity, peer, req, op, "address_class", &reason, started)
                    .await;
            }
        };
        let (mut parts, body) = request.into_parts();
        let limit = self.config.limits.max_body_bytes;
        let deadline = self.config.limits.header_timeout();
        let body = match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(_)) => return respond::too_large(limit),
            Err(_) => {
                return respond::error(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time",
                );
            }
        };
        hygiene::clean_request(&mut parts.headers);
        // What was judged is what is sent: for a host with rules, the normalised path.
        let origin = match &target.query {
            Some(query) => format!("{}?{query}", target.path),
            None => target.path.clone(),
        };
        parts.uri = match origin.parse() {
            Ok(uri) => uri,
            Err(_) => return respond::bad_request("bad path"),
        };
        let tls = match target.scheme {
            "https" => match rustls_pki_types::ServerName::try_from(target.host.clone()) {
                Ok(name) => Some((&self.direct_tls, name)),
                Err(_) => return respond::bad_request("the host is not a TLS server name"),
            },
            _ => None,
        };
        let outgoing = Request::from_parts(parts, Full::new(body));
        let timeout = self.config.limits.upstream_timeout();
        let result =
            tokio::time::timeout(timeout, send_direct(addrs[0], tls, outgoing, limit)).await;
        let (status, mut headers, body) = match result {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) | Err(_) => {
                let mut draft = self.draft(
                    Kind::Call,
                    peer,
                    &req,
                    &op,
                    true,
                    rule,
                    "upstream failed",
                    None,
                    started,
                );
                Shadow::mark(&shadow, &mut draft);
                let recorded = self.evidence.record(Some(identity), draft).await;
                return failed_upstream(result.is_err(), recorded);
            }
        };
        hygiene::clean_response(&mut headers);
        let mut draft = self.draft(
            Kind::Call,
            peer,
            &req,
            &op,
            true,
            rule,
            &reason,
            None,
            started,
        );
        draft.resp = Some(Resp {
            status: status.as_u16(),
            body: body.clone(),
            released: true,
        });
        Shadow::mark(&shadow, &mut draft);
        let Ok(recorded) = self.evidence.record(Some(identity), draft).await else {
            return respond::receipt_failed();
        };
        self.metrics
            .answered(Shadow::label(&shadow), "egress", started);
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        headers.remove(header::CONTENT_LENGTH);
        *response.headers_mut() = headers;
        with_receipt(response, &recorded.id)
    }

    /// `CONNECT` to an allowed host without request rules: an opaque tunnel to the judged
    /// address, with durable open and close receipts, cut when the token expires or is revoked.
    pub async fn open_tunnel(
        self: Arc<Self>,
        identity: Arc<Identity>,
        peer: SocketAddr,
        target: Target,
        request: Request<Incoming>,
        started: Instant,
    ) -> Response<Body> {
        let req = target.req(request.method());
        let op = Op::unknown("none", "tunnel");
        let shadow = match self.connect_egress(&identity, peer, &target, started).await {
            Ok(shadow) => shadow,
            Err(denied) => return denied,
        };
        let addrs = match upstream::resolve_public(&target.host, target.port, &self.own).await {
            Ok(addrs) => addrs,
            Err(reason) => {
                return self
                    .deny(&identity, peer, req, op, "address_class", &reason, started)
                    .await;
            }
        };
        let Ok(permit) = self.tunnels.clone().try_acquire_owned() else {
            return respond::error(StatusCode::SERVICE_UNAVAILABLE, "too many open tunnels");
        };
        let pair = exchange_id();
        let mut draft = self.draft(
            Kind::TunnelOpen,
            peer,
            &req,
            &op,
            true,
            "network_egress",
            "host is in network_egress",
            None,
            started,
        );
        draft.rid = Some(pair.clone());
        Shadow::mark(&shadow, &mut draft);
        let opened = match self.evidence.record(Some(&identity), draft).await {
            Ok(recorded) => recorded,
            Err(_) => return respond::receipt_failed(),
        };
        let upstream = match tokio::time::timeout(
            self.config.limits.upstream_timeout(),
            tokio::net::TcpStream::connect(addrs[0]),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            _ => {
                let mut draft = self.draft(
                    Kind::TunnelClose,
                    peer,
                    &req,
                    &op,
                    true,
                    "network_egress",
                    "upstream connection failed",
                    None,
                    started,
                );
                draft.rid = Some(pair);
                Shadow::mark(&shadow, &mut draft);
                draft.tunnel_bytes = Some((0, 0));
                let recorded = self.evidence.record(Some(&identity), draft).await;
                return failed_upstream(false, recorded);
            }
        };
        let upgrade = hyper::upgrade::on(request);
        let proxy = self.clone();
        let open_id = opened.id.clone();
        let mut watcher = self.drain.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            proxy.metrics.open_tunnels.fetch_add(1, Ordering::Relaxed);
            let (sent, received) = match upgrade.await {
                Ok(agent) => {
                    let agent = TokioIo::new(agent);
                    proxy.pump(&identity, agent, upstream, &mut watcher).await
                }
                Err(_) => (0, 0),
            };
            proxy.metrics.open_tunnels.fetch_sub(1, Ordering::Relaxed);
            let mut draft = proxy.draft(
                Kind::TunnelClose,
                peer,
                &req,
                &op,
                true,
                "network_egress",
                "tunnel closed",
                None,
                started,
            );
            draft.rid = Some(pair);
            Shadow::mark(&shadow, &mut draft);
            draft.tunnel_bytes = Some((sent, received));
            let _ = proxy.evidence.record(Some(&identity), draft).await;
        });
        with_receipt(Response::new(Body::default()), &open_id)
    }

    /// A CONNECT judged by `network_egress`: refused with a receipt, or allowed (under an
    /// audit-only contract, perhaps with the "would deny" it records).
    async fn connect_egress(
        &self,
        identity: &Identity,
        peer: SocketAddr,
        target: &Target,
        started: Instant,
    ) -> Result<Option<Shadow>, Response<Body>> {
        let sandbox = &identity.contract.document().sandbox;
        match shadowed(
            identity,
            egress::check_egress(sandbox, &target.host, target.port),
        ) {
            Ok(shadow) => Ok(shadow),
            Err((rule, reason)) => {
                let req = target.req(&Method::CONNECT);
                let op = Op::unknown("none", "tunnel");
                Err(self
                    .deny(identity, peer, req, op, &rule, &reason, started)
                    .await)
            }
        }
    }

    /// The answer refusing a CONNECT to a host with `host_rules` that `network_egress` does not
    /// allow, if it does not. An allowed one is intercepted, and each request inside is
    /// judged again (and, under an audit-only contract, marked).
    pub async fn refuse_connect(
        &self,
        identity: &Identity,
        peer: SocketAddr,
        target: &Target,
        started: Instant,
    ) -> Option<Response<Body>> {
        self.connect_egress(identity, peer, target, started)
            .await
            .err()
    }

    /// Copies bytes both ways until either side closes, the tunnel idles out, the token stops
    /// being valid or the proxy shuts down. Returns (agent → upstream, upstream → agent) byte
    /// counts.
    async fn pump<A>(
        &self,
        identity: &Identity,
        agent: A,
        upstream: tokio::net::TcpStream,
        watcher: &mut Watcher,
    ) -> (u64, u64)
    where
        A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let sent = AtomicU64::new(0);
        let received = AtomicU64::new(0);
        let idle = self.config.limits.idle_timeout();
        let (mut agent_read, mut agent_write) = tokio::io::split(agent);
        let (mut upstream_read, mut upstream_write) = upstream.into_split();
        let up = copy_counting(&mut agent_read, &mut upstream_write, &sent, idle);
        let down = copy_counting(&mut upstream_read, &mut agent_write, &received, idle);
        let watch = async {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                if self.auth.recheck(identity).is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            _ = async { tokio::join!(up, down) } => {}
            _ = watch => debug!("tunnel cut: token no longer valid"),
            () = watcher.draining() => debug!("tunnel cut: the proxy is shutting down"),
        }
        (
            sent.load(Ordering::Relaxed),
            received.load(Ordering::Relaxed),
        )
    }

    /// Receipts and answers a request that could not be handled safely (400).
    pub async fn refuse_malformed<B>(
        &self,
        identity: &Identity,
        peer: SocketAddr,
        request: &Request<B>,
        reason: &str,
        started: Instant,
    ) -> Response<Body> {
        let req = Req {
            method: request.method().as_str().to_owned(),
            path: request.uri().path().to_owned(),
            host: request.uri().host().unwrap_or_default().to_owned(),
            ..Req::default()
        };
        let draft = self.draft(
            Kind::Call,
            peer,
            &req,
            &Op::unknown("none", "unknown"),
            false,
            "malformed_request",
            reason,
            None,
            started,
        );
        match self.evidence.record(Some(identity), draft).await {
            Ok(recorded) => with_receipt(respond::bad_request(reason), &recorded.id),
            Err(_) => respond::receipt_failed(),
        }
    }

    /// Receipts and answers a CONNECT the egress rules refuse.
    pub async fn refuse_egress(
        &self,
        identity: &Identity,
        peer: SocketAddr,
        target: &Target,
        method: &str,
        reason: &str,
        started: Instant,
    ) -> Response<Body> {
        let req = Req {
            method: method.to_owned(),
            ..target.req(&Method::CONNECT)
        };
        self.deny(
            identity,
            peer,
            req,
            Op::unknown("none", "tunnel"),
            "network_egress",
            reason,
            started,
        )
        .await
    }

    /// Receipts what was refused before a handler saw it: a request hyper could not parse (bad
    /// framing, an oversize head) or a TLS handshake that failed inside an intercepted tunnel.
    /// `identity` is the connection's job when it authenticated; otherwise the receipt goes
    /// under [`UNAUTHENTICATED`].
    pub async fn record_malformed(
        &self,
        identity: Option<&Identity>,
        peer: SocketAddr,
        req: &Req,
        reason: &str,
        started: Instant,
    ) {
        let draft = self.draft(
            Kind::Call,
            peer,
            req,
            &Op::unknown("none", "unknown"),
            false,
            "malformed_request",
            reason,
            None,
            started,
        );
        if let Err(error) = self.evidence.record(identity, draft).await {
            warn!(%error, "malformed-request receipt failed");
        }
        self.metrics.request("deny", "malformed");
        info!(
            job = identity.map_or(UNAUTHENTICATED, |i| i.job()),
            op = "unknown",
            decision = "deny",
            rule = "malformed_request",
            duration_ms = started.elapsed().as_millis() as u64,
            "request"
        );
    }

    /// Receipts a request refused with 407 under [`UNAUTHENTICATED`] (no job is known), so
    /// failed authentication leaves a trace too.
    pub async fn record_unauthenticated<B>(
        &self,
        peer: SocketAddr,
        request: &Request<B>,
        response: Response<Body>,
    ) -> Response<Body> {
        self.record_anonymous(
            peer,
            request,
            response,
            "proxy_auth",
            "missing or invalid job token",
        )
        .await
    }

    /// Receipts and answers a refusal that no job's chain can carry: `response` with a
    /// receipt under the anonymous job.
    pub async fn record_anonymous<B>(
        &self,
        peer: SocketAddr,
        request: &Request<B>,
        response: Response<Body>,
        rule: &str,
        reason: &str,
    ) -> Response<Body> {
        let req = Req {
            method: request.method().as_str().to_owned(),
            host: request.uri().host().unwrap_or_default().to_owned(),
            path: request.uri().path().to_owned(),
            ..Req::default()
        };
        let draft = self.draft(
            Kind::Call,
            peer,
            &req,
            &Op::unknown("none", "unknown"),
            false,
            rule,
            reason,
            None,
            Instant::now(),
        );
        self.metrics.request("deny", rule);
        info!(
            op = "unknown",
            decision = "deny",
            rule,
            status = response.status().as_u16(),
            "request"
        );
        match self.evidence.record(None, draft).await {
            Ok(recorded) => with_receipt(response, &recorded.id),
            Err(_) => respond::receipt_failed(),
        }
    }

    /// Remembers a job seen here, so its `job_close` is written when its token ends.
    pub fn track_job(&self, identity: &Identity) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let std::collections::hash_map::Entry::Vacant(entry) =
            jobs.entry(identity.claims.jti.clone())
        {
            entry.insert(Tracked {
                claims: identity.claims.clone(),
                ended: None,
            });
            if identity.contract.document().audit_only() {
                warn!(
                    job = identity.job(),
                    wpc = identity.contract.hash(),
                    "AUDIT-ONLY contract: this job's contract denials are receipted as \"would deny\" and let through"
                );
            }
        }
    }

    /// Fleet mode: records in the shared state that this proxy's log serves the identity's
    /// job, once per job and before the job's first receipt here, so the job's close lists
    /// this log. Answers why not when the state cannot be reached.
    pub async fn serve_job(&self, identity: &Identity) -> Result<(), String> {
        let Some(fleet) = &self.fleet else {
            return Ok(());
        };
        let job = identity.job();
        if self
            .served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(job)
        {
            return Ok(());
        }
        fleet
            .serve_job(job, self.evidence.origin())
            .await
            .map_err(|error| {
                warn!(%error, job, "the fleet's state did not record this log for the job");
                "the fleet's state is unavailable".to_owned()
            })?;
        self.served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.to_owned());
        Ok(())
    }

    /// Writes `job_close` for every tracked token that expired or was revoked (in fleet
    /// mode, [`FLEET_CLOSE_GRACE`] after this proxy saw it end, listing every log that served
    /// the job). Runs every second; returns how many it closed.
    pub async fn close_ended_jobs(&self) -> usize {
        let grace = if self.fleet.is_some() {
            FLEET_CLOSE_GRACE
        } else {
            std::time::Duration::ZERO
        };
        let ended: Vec<(claw_tokens::Claims, String)> = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.values_mut()
                .filter_map(|tracked| {
                    // A list that cannot be confirmed ends no job: it only refuses requests
                    // until it can be.
                    let refused = self
                        .auth
                        .recheck_claims(&tracked.claims)
                        .err()
                        .filter(|refused| !refused.unavailable)?;
                    let since = *tracked.ended.get_or_insert_with(Instant::now);
                    (since.elapsed() >= grace).then(|| (tracked.claims.clone(), refused.reason))
                })
                .collect()
        };
        let mut closed = 0;
        for (claims, reason) in ended {
            let logs = match &self.fleet {
                None => None,
                Some(fleet) => match fleet.job_logs(&claims.job).await {
                    Ok(logs) => Some(logs),
                    // Closed on a later tick, when the state answers again.
                    Err(error) => {
                        warn!(%error, job = claims.job, "cannot list the job's logs to close it");
                        continue;
                    }
                },
            };
            if self
                .evidence
                .close_job(&claims, &reason, logs)
                .await
                .is_ok()
            {
                self.jobs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&claims.jti);
                self.served
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&claims.job);
                self.metrics.forget(&claims.job);
                closed += 1;
            }
        }
        closed
    }

    /// Receipts and answers a denial (403 in the Connect error shape naming the rule).
    #[allow(clippy::too_many_arguments)]
    async fn deny(
        &self,
        identity: &Identity,
        peer: SocketAddr,
        req: Req,
        op: Op,
        rule: &str,
        reason: &str,
        started: Instant,
    ) -> Response<Body> {
        let draft = self.draft(
            Kind::Call,
            peer,
            &req,
            &op,
            false,
            rule,
            reason,
            None,
            started,
        );
        self.refuse(identity, draft, started).await
    }

    /// Receipts a denial `draft` and answers 403 naming its rule.
    async fn refuse(&self, identity: &Identity, draft: Draft, started: Instant) -> Response<Body> {
        let name = draft.op.name.clone();
        let (rule, reason) = (draft.decision.rule.clone(), draft.decision.reason.clone());
        match self.evidence.record(Some(identity), draft).await {
            Ok(recorded) => {
                self.metrics.answered("deny", &name, started);
                self.metrics.denied(identity.job(), Instant::now());
                info!(job = identity.job(), op = %name, decision = "deny", %rule, status = 403u16, duration_ms = started.elapsed().as_millis() as u64, "request");
                with_receipt(respond::denied(&rule, &reason), &recorded.id)
            }
            Err(error) => {
                warn!(%error, "denial receipt failed");
                respond::receipt_failed()
            }
        }
    }

    /// What approvers are shown about a request `rule` (the contract's `approvals[index]`)
    /// holds: the checked request, never its body.
    fn held_request(
        &self,
        identity: &Identity,
        req: &Req,
        op: &Op,
        index: usize,
        rule: &ApprovalRule,
    ) -> HeldRequest {
        let now = hold::now_ms();
        HeldRequest {
            id: Approvals::new_id(),
            job: identity.job().to_owned(),
            wpc: identity.claims.wpc.clone(),
            rule: index,
            approvers: rule.approvers.clone(),
            operation: op.name.clone(),
            method: req.method.clone(),
            host: req.host.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            body_hash: req.body.as_deref().map(|b| self.evidence.body_hash(b)),
            vault: op.vault.clone(),
            vault_name: op.vault_name.clone(),
            item: op.item.clone(),
            item_title: op.item_title.clone(),
            category: op.category.clone(),
            requested_ms: now,
            expires_ms: now.saturating_add(rule.timeout_seconds.saturating_mul(1000)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn draft(
        &self,
        kind: Kind,
        client: SocketAddr,
        req: &Req,
        op: &Op,
        allow: bool,
        rule: &str,
        reason: &str,
        resp: Option<Resp>,
        started: Instant,
    ) -> Draft {
        Draft {
            kind,
            client,
            req: req.clone(),
            op: op.clone(),
            decision: Decided {
                allow,
                rule: rule.to_owned(),
                reason: reason.to_owned(),
                would_deny: false,
                approval: None,
            },
            resp,
            duration_ms: started.elapsed().as_millis() as u64,
            rid: None,
            tunnel_bytes: None,
        }
    }
}

/// What let a request to a host that is not a configured upstream through.
struct Verdict {
    /// The contract rule an audit-only contract recorded as "would deny", if any.
    shadow: Option<Shadow>,
    /// The allowing rule and reason for its receipt.
    allowed_by: (&'static str, String),
}

/// A denial by one of the contract's own rules that an audit-only contract let pass: the
/// receipts of the exchange record it as "would deny".
#[derive(Clone, Debug)]
struct Shadow {
    rule: String,
    reason: String,
}

impl Shadow {
    fn new(rule: &str, reason: &str) -> Self {
        Self {
            rule: rule.to_owned(),
            reason: reason.to_owned(),
        }
    }

    /// Turns an allowing draft into an audit-only pass of what `shadow` would deny.
    fn mark(shadow: &Option<Shadow>, draft: &mut Draft) {
        if let Some(shadow) = shadow {
            draft.decision.rule = shadow.rule.clone();
            draft.decision.reason = format!("audit only, would deny: {}", shadow.reason);
            draft.decision.would_deny = true;
        }
    }

    /// The decision label of a forwarded exchange in metrics and logs.
    fn label(shadow: &Option<Shadow>) -> &'static str {
        if shadow.is_some() {
            "would_deny"
        } else {
            "allow"
        }
    }
}

/// `Ok(None)` for an allow; `Ok(Some(_))` for a denial by a contract rule that an audit-only
/// contract lets pass; `Err((rule, reason))` for a denial that stands.
/// What the contract says of a request's host and, under the host's `host_rules`, of its
/// method and path (which it normalises in `target`, so what was judged is what is sent): the
/// "would deny" an audit-only contract records, if any, and why a ruled host let it through;
/// or the refusing rule and reason.
fn judge_host(
    identity: &Identity,
    target: &mut Target,
    headers: &http::HeaderMap,
    method: &str,
) -> Result<(Option<Shadow>, Option<String>), (String, String)> {
    let document = identity.contract.document();
    let egress = egress::check_egress(&document.sandbox, &target.host, target.port);
    let shadow = shadowed(identity, egress)?;
    if host_rules::rules_for(document, &target.host).is_none() {
        return Ok((shadow, None));
    }
    hygiene::refuse_unsafe(headers)
        .map_err(|refusal| (refusal.rule().to_owned(), refusal.reason()))?;
    target.path = classify::normalize_path(&target.path)
        .map_err(|error| ("ambiguous_path".to_owned(), error.to_string()))?;
    let decision = host_rules::check(document, &target.host, method, &target.path)
        .expect("the host has rules");
    // A host rule's "would deny" counts only when egress had none to record.
    let shadow = shadow.or(shadowed(identity, decision)?);
    let reason = format!(
        "{method} {} matches host_rules for {}",
        target.path, target.host
    );
    Ok((shadow, Some(reason)))
}

fn shadowed(identity: &Identity, decision: Decision) -> Result<Option<Shadow>, (String, String)> {
    match decision {
        Decision::Allow { .. } => Ok(None),
        Decision::Deny { rule, reason }
            if identity.contract.document().audit_only()
                && CONTRACT_RULES.contains(&rule.as_str()) =>
        {
            Ok(Some(Shadow { rule, reason }))
        }
        Decision::Deny { rule, reason } => Err((rule, reason)),
    }
}

/// A fresh id pairing the receipts of one exchange (`request` with its `call`, `tunnel_open`
/// with its `tunnel_close`): 128 random bits, hex.
fn exchange_id() -> String {
    use rand_core::RngCore;
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    claw_verifier::receipt::hex(&bytes)
}

impl Op {
    fn unknown(integration: &str, name: &str) -> Self {
        Self {
            integration: integration.to_owned(),
            name: name.to_owned(),
            ..Self::default()
        }
    }
}

/// Keeps the entries of a JSON-array answer that `keep` allows and records how many were
/// withheld; an answer that is not an array cannot be checked and is withheld whole. Under an
/// audit-only contract (`audit`) nothing is removed: returns how many entries would have been.
fn filter_list(
    body: &mut Vec<u8>,
    op: &mut Op,
    audit: bool,
    keep: impl Fn(&Value) -> bool,
) -> Result<u64, (String, String)> {
    let mut entries: Vec<Value> = serde_json::from_slice(body).map_err(|_| {
        (
            "uninspectable_response".to_owned(),
            "the upstream list is not a JSON array".to_owned(),
        )
    })?;
    let before = entries.len();
    entries.retain(|entry| keep(entry));
    let withheld = (before - entries.len()) as u64;
    if audit {
        return Ok(withheld);
    }
    op.withheld = Some(withheld);
    *body = serde_json::to_vec(&entries).expect("JSON values serialise");
    Ok(0)
}

fn allowed(decision: Decision) -> Result<(), (String, String)> {
    match decision {
        Decision::Allow { .. } => Ok(()),
        Decision::Deny { rule, reason } => Err((rule, reason)),
    }
}

fn item_category(item: &Value) -> Result<Category, (String, String)> {
    let text = item.get("category").and_then(Value::as_str).ok_or((
        "allowed_categories".to_owned(),
        "the item has no category".to_owned(),
    ))?;
    Category::from_str(text).map_err(|_| {
        (
            "allowed_categories".to_owned(),
            format!("item category {text:?} is not one clawproxy knows"),
        )
    })
}

/// 502/504 for an upstream that failed, citing its receipt; 503 when even that receipt could
/// not be made durable.
fn failed_upstream(timeout: bool, recorded: Result<Recorded, NotRecorded>) -> Response<Body> {
    match recorded {
        Ok(recorded) => with_receipt(respond::upstream_failed(timeout), &recorded.id),
        Err(_) => respond::receipt_failed(),
    }
}

/// A denial's answer with another status than 403 (the receipt header kept); a 503 from a
/// failed receipt stays a 503.
fn with_status(mut response: Response<Body>, status: StatusCode) -> Response<Body> {
    if response.status() == StatusCode::FORBIDDEN {
        *response.status_mut() = status;
    }
    response
}

fn with_receipt(mut response: Response<Body>, id: &str) -> Response<Body> {
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert(RECEIPT_HEADER, value);
    }
    response
}

/// Sends `request` to `addr` on a connection of its own, over TLS to `tls`'s server name when
/// given (verified, HTTP/1.1), and reads the answer up to `limit` bytes.
async fn send_direct(
    addr: SocketAddr,
    tls: Option<(
        &tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    )>,
    request: Request<Full<Bytes>>,
    limit: usize,
) -> anyhow::Result<(StatusCode, http::HeaderMap, Vec<u8>)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    match tls {
        None => exchange(TokioIo::new(stream), request, limit).await,
        Some((connector, name)) => {
            let stream = connector.connect(name, stream).await?;
            exchange(TokioIo::new(stream), request, limit).await
        }
    }
}

async fn exchange<I>(
    io: I,
    request: Request<Full<Bytes>>,
    limit: usize,
) -> anyhow::Result<(StatusCode, http::HeaderMap, Vec<u8>)>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_bytes()
        .to_vec();
    Ok((parts.status, parts.headers, body))
}

async fn copy_counting<R, W>(
    reader: &mut R,
    writer: &mut W,
    counter: &AtomicU64,
    idle: std::time::Duration,
) where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match tokio::time::timeout(idle, reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        if writer.write_all(&buf[..n]).await.is_err() {
            break;
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn absolute(uri: &str, host: Option<&str>) -> Result<Target, String> {
        let mut builder = Request::get(uri);
        if let Some(host) = host {
            builder = builder.header(header::HOST, host);
        }
        Target::from_absolute(&builder.body(()).unwrap())
    }

    #[test]
    fn authority_and_host_must_agree() {
        let t = absolute(
            "http://Connect.1Password.com./v1/vaults",
            Some("connect.1password.com"),
        )
        .unwrap();
        assert_eq!((t.host.as_str(), t.port), ("connect.1password.com", 80));
        assert!(absolute("http://connect.1password.com/v1", Some("evil.example")).is_err());
        assert!(
            absolute(
                "http://connect.1password.com/v1",
                Some("connect.1password.com:8080")
            )
            .is_err()
        );
        assert!(absolute("http://connect.1password.com/v1", None).is_err());
        assert!(
            absolute(
                "http://user@connect.1password.com/v1",
                Some("connect.1password.com")
            )
            .is_err()
        );
        assert!(absolute("/v1/vaults", Some("connect.1password.com")).is_err());
        assert!(
            absolute(
                "https://connect.1password.com/v1",
                Some("connect.1password.com")
            )
            .is_err()
        );
    }

    #[test]
    fn authorities_split_strictly() {
        assert_eq!(
            split_authority("[::1]:8080", 80).unwrap(),
            ("[::1]".into(), 8080)
        );
        assert_eq!(
            split_authority("a.example", 443).unwrap(),
            ("a.example".into(), 443)
        );
        for bad in [
            "a.example:0",
            "a.example:99999",
            "a.example:x",
            ":80",
            "[::1",
            "[::1]x",
            ".",
        ] {
            assert!(split_authority(bad, 80).is_err(), "{bad}");
        }
    }
}
