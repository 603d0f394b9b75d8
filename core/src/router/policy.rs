//! The routing policy: where a request runs, and why.
//!
//! Local is the default. [`PolicyEngine::decide`] escalates to the cloud only when **all** of
//! these hold, checked in this order:
//!
//! 1. there is a reason: the app asked for the cloud on this request
//!    ([`RequestMeta::cloud_requested`]), or the prompt plus the expected answer needs more
//!    context than the local model has, or a measured low-confidence signal from the local model
//!    ([`RequestMeta::local_mean_logprob`], e.g. the mean token log-probability of a short local
//!    draft) is below [`RouterPolicy::low_confidence_logprob`];
//! 2. the app enabled the cloud ([`RouterPolicy::cloud_enabled`]) and gave an endpoint;
//! 3. no part of the request is sensitive: every message (system prompt, history, new message),
//!    every attachment, and their concatenation are scanned with [`super::pii`];
//! 4. the budgets allow: requests per minute and estimated cost per day;
//! 5. the endpoint is reachable ([`Reachability`]). This probe opens a connection, so it runs
//!    only when everything else already allows the cloud.
//!
//! The [`RouteDecision`] lists the escalation reasons found (what made the cloud attractive)
//! followed by every blocker found (what kept the request local), plus the sensitive categories.
//! Any error or panic while deciding yields `Local` with [`Reason::DecisionError`] (fail closed).

use std::collections::VecDeque;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::pii::{self, Category};
use super::ChatRequest;
use crate::{Error, Result};

/// Where a request runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// On the device.
    Local,
    /// At the configured cloud endpoint.
    Cloud,
}

impl Target {
    /// `local` or `cloud`.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Local => "local",
            Target::Cloud => "cloud",
        }
    }
}

/// One reason behind a [`RouteDecision`]: either an escalation trigger (the first three) or a
/// blocker that kept the request local.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Trigger: the app asked for the cloud on this request.
    AppRequested,
    /// Trigger: prompt plus expected answer exceed the local model's context.
    ContextExceedsLocal,
    /// Trigger: the local model's measured confidence is below the policy threshold.
    LowLocalConfidence,
    /// Blocker: the policy does not enable the cloud.
    CloudDisabled,
    /// Blocker: no cloud endpoint is configured.
    NoEndpoint,
    /// Blocker: some part of the request contains personal data.
    Sensitive,
    /// Blocker: nothing calls for the cloud.
    NoEscalationReason,
    /// Blocker: the endpoint is not reachable now.
    Offline,
    /// Blocker: the requests-per-minute budget is spent.
    RateLimited,
    /// Blocker: the daily cost budget would be exceeded.
    CostBudgetExceeded,
    /// Blocker: an error occurred while deciding (fail closed).
    DecisionError,
}

impl Reason {
    /// The snake_case name used in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::AppRequested => "app_requested",
            Reason::ContextExceedsLocal => "context_exceeds_local",
            Reason::LowLocalConfidence => "low_local_confidence",
            Reason::CloudDisabled => "cloud_disabled",
            Reason::NoEndpoint => "no_endpoint",
            Reason::Sensitive => "sensitive",
            Reason::NoEscalationReason => "no_escalation_reason",
            Reason::Offline => "offline",
            Reason::RateLimited => "rate_limited",
            Reason::CostBudgetExceeded => "cost_budget_exceeded",
            Reason::DecisionError => "decision_error",
        }
    }

    /// True for the escalation triggers (`AppRequested`, `ContextExceedsLocal`,
    /// `LowLocalConfidence`).
    pub fn is_trigger(self) -> bool {
        matches!(self, Reason::AppRequested | Reason::ContextExceedsLocal | Reason::LowLocalConfidence)
    }
}

/// The outcome of a routing decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteDecision {
    /// Where the request runs.
    pub target: Target,
    /// Escalation triggers found, then blockers found (see [`Reason`]).
    pub reasons: Vec<Reason>,
    /// Categories of personal data found anywhere in the request (empty when none).
    pub categories: Vec<Category>,
}

impl RouteDecision {
    /// A local decision caused by an error on the decision path.
    pub fn fail_closed(categories: Vec<Category>) -> Self {
        Self { target: Target::Local, reasons: vec![Reason::DecisionError], categories }
    }

    /// True when the policy wanted the cloud and only the network kept the request local: the
    /// case the offline queue is for.
    pub fn wanted_cloud_but_offline(&self) -> bool {
        self.target == Target::Local
            && self.reasons.contains(&Reason::Offline)
            && self.reasons.iter().all(|r| r.is_trigger() || *r == Reason::Offline)
    }
}

/// Per-request signals from the app and the local model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestMeta {
    /// The app asks for the cloud on this request (e.g. the user tapped "ask a bigger model").
    pub cloud_requested: bool,
    /// A measured local-confidence signal: the mean token log-probability (natural log, <= 0) of
    /// a short local draft, computed by the caller. `None` when not measured.
    pub local_mean_logprob: Option<f32>,
}

/// Routing knobs. Cloud off by default; validated once with [`RouterPolicy::validate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouterPolicy {
    /// Allow escalation to the cloud at all.
    pub cloud_enabled: bool,
    /// Escalate when prompt + expected answer exceed the local context.
    pub escalate_on_context_overflow: bool,
    /// Escalate when [`RequestMeta::local_mean_logprob`] is below this; `None` ignores the signal.
    pub low_confidence_logprob: Option<f32>,
    /// Cloud requests allowed in any 60-second window; `None` means unlimited.
    pub max_requests_per_minute: Option<u32>,
    /// Estimated cloud spend allowed in any 24-hour window, in USD; `None` means unlimited.
    pub max_cost_per_day_usd: Option<f64>,
    /// Price of 1,000 prompt tokens at the cloud endpoint, in USD (for estimates only).
    pub input_cost_per_1k_tokens_usd: f64,
    /// Price of 1,000 answer tokens at the cloud endpoint, in USD (for estimates only).
    pub output_cost_per_1k_tokens_usd: f64,
    /// Answer length assumed when the request sets no `max_tokens` (context check and cost).
    pub expected_output_tokens: u32,
    /// When the policy wanted the cloud but the network is down: answer locally now *and* queue
    /// the (non-sensitive) request for a cloud answer later.
    pub queue_when_offline: bool,
}

impl Default for RouterPolicy {
    fn default() -> Self {
        Self::local_only()
    }
}

impl RouterPolicy {
    /// The default: everything stays on the device.
    pub fn local_only() -> Self {
        Self {
            cloud_enabled: false,
            escalate_on_context_overflow: true,
            low_confidence_logprob: Some(-2.0),
            max_requests_per_minute: Some(10),
            max_cost_per_day_usd: Some(0.50),
            // Prices of a small hosted model (about $0.15 / $0.60 per million tokens); estimates only.
            input_cost_per_1k_tokens_usd: 0.000_15,
            output_cost_per_1k_tokens_usd: 0.000_6,
            expected_output_tokens: 256,
            queue_when_offline: false,
        }
    }

    /// Cloud allowed when a trigger calls for it; no offline queue.
    pub fn cloud_assist() -> Self {
        Self { cloud_enabled: true, ..Self::local_only() }
    }

    /// [`RouterPolicy::cloud_assist`] plus the offline queue, for field workers who want a cloud
    /// answer later when there is no signal now.
    pub fn field_worker() -> Self {
        Self { queue_when_offline: true, ..Self::cloud_assist() }
    }

    /// All presets, for "never escalates" suites.
    pub fn presets() -> Vec<(&'static str, RouterPolicy)> {
        vec![
            ("local_only", Self::local_only()),
            ("cloud_assist", Self::cloud_assist()),
            ("field_worker", Self::field_worker()),
        ]
    }

    /// Rejects non-finite or negative numbers.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &'static str, reason: &str| Err(Error::InvalidParameter { name, reason: reason.into() });
        if let Some(t) = self.low_confidence_logprob {
            if !t.is_finite() {
                return bad("low_confidence_logprob", "must be finite");
            }
        }
        if let Some(c) = self.max_cost_per_day_usd {
            if !c.is_finite() || c < 0.0 {
                return bad("max_cost_per_day_usd", "must be finite and >= 0");
            }
        }
        for (name, v) in [
            ("input_cost_per_1k_tokens_usd", self.input_cost_per_1k_tokens_usd),
            ("output_cost_per_1k_tokens_usd", self.output_cost_per_1k_tokens_usd),
        ] {
            if !v.is_finite() || v < 0.0 {
                return bad(name, "must be finite and >= 0");
            }
        }
        Ok(())
    }

    /// Estimated cloud price of a request, in USD.
    pub fn estimate_cost_usd(&self, prompt_tokens: usize, completion_tokens: usize) -> f64 {
        (prompt_tokens as f64 * self.input_cost_per_1k_tokens_usd
            + completion_tokens as f64 * self.output_cost_per_1k_tokens_usd)
            / 1000.0
    }

    /// The answer length assumed for `request`.
    pub fn expected_output(&self, request: &ChatRequest) -> usize {
        request.max_tokens.unwrap_or(self.expected_output_tokens) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// Sensitivity of a whole request
// ---------------------------------------------------------------------------------------------

/// The merged sensitivity of several texts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestScan {
    /// True when any text (or their concatenation) is sensitive.
    pub sensitive: bool,
    /// Categories found in the sensitive texts, each once, in order of discovery.
    pub categories: Vec<Category>,
}

impl RequestScan {
    fn merge(&mut self, report: pii::PiiReport) {
        if report.sensitive {
            self.sensitive = true;
            for c in report.categories {
                if !self.categories.contains(&c) {
                    self.categories.push(c);
                }
            }
        }
    }
}

/// Scans each text separately and, when there are several, their concatenation (personal data
/// can be split across parts, e.g. a name in the history and a phone number in the new message).
/// The rules alone: what the router uses to name categories and to decide cheaply; everything
/// that lets a request leave uses [`gate_texts`].
pub fn scan_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> RequestScan {
    merged(texts, |t| pii::detector().scan(t))
}

/// Like [`scan_texts`] with the whole privacy gate ([`pii::gate`]: the rules, then the small
/// classifier on what the rules clear). A block by the classifier adds no category. A classifier
/// error, timeout or unverifiable model counts as sensitive (fail closed). Every exit uses it: the
/// router's decision, the egress re-scan in [`super::cloud::prepare_request`], and the offline
/// queue (when queuing and again before a queued request is sent).
pub fn gate_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> RequestScan {
    merged(texts, |t| pii::gate().scan(t))
}

fn merged<'a>(texts: impl IntoIterator<Item = &'a str>, scan_one: impl Fn(&str) -> pii::PiiReport) -> RequestScan {
    let texts: Vec<&str> = texts.into_iter().filter(|t| !t.is_empty()).collect();
    let mut scan = RequestScan::default();
    for t in &texts {
        scan.merge(scan_one(t));
    }
    if texts.len() > 1 {
        scan.merge(scan_one(&texts.join("\n\n")));
    }
    scan
}

/// Whether [`pii::gate`]'s second stage (a small classifier, after the rules) keeps `request`
/// local: each part and, when there are several, their concatenation, as [`scan_texts`] does.
/// A classifier error, timeout or unverifiable model counts as a block (fail closed).
pub fn second_stage_blocks(request: &ChatRequest) -> bool {
    gate_request(request).sensitive
}

/// Scans every part of `request` (messages of every role, attachments, tool definitions, calls
/// and results: [`ChatRequest::all_parts`]) and their concatenation with the rules alone. A
/// request with a part that cannot be inspected counts as sensitive (fail closed).
pub fn scan_request(request: &ChatRequest) -> RequestScan {
    match request.all_parts() {
        Some(parts) => scan_texts(parts.iter().map(|p| p.as_ref())),
        None => uninspectable(),
    }
}

/// Checks every part of `request` and their concatenation with the whole gate ([`gate_texts`]).
pub fn gate_request(request: &ChatRequest) -> RequestScan {
    match request.all_parts() {
        Some(parts) => gate_texts(parts.iter().map(|p| p.as_ref())),
        None => uninspectable(),
    }
}

/// What a part the gate cannot read counts as: sensitive, with no category.
fn uninspectable() -> RequestScan {
    RequestScan { sensitive: true, ..RequestScan::default() }
}

// ---------------------------------------------------------------------------------------------
// Reachability
// ---------------------------------------------------------------------------------------------

/// Tells whether the cloud endpoint can be reached now. Supplied by the host app (it often knows
/// better, e.g. from the OS connectivity API) or [`TcpProbe`] by default.
pub trait Reachability: Send + Sync {
    /// `base_url` is the configured endpoint, e.g. `https://api.example.com/v1`.
    fn is_reachable(&self, base_url: &str) -> Result<bool>;
}

impl<F> Reachability for F
where
    F: Fn(&str) -> Result<bool> + Send + Sync,
{
    fn is_reachable(&self, base_url: &str) -> Result<bool> {
        self(base_url)
    }
}

/// The default probe: a TCP connect to the endpoint's host and port with a short timeout. Sends
/// no bytes. Name resolution uses the system resolver and is not covered by the timeout.
#[derive(Clone, Debug)]
pub struct TcpProbe {
    /// Connect timeout per resolved address.
    pub timeout: Duration,
}

impl Default for TcpProbe {
    fn default() -> Self {
        Self { timeout: Duration::from_millis(1500) }
    }
}

impl Reachability for TcpProbe {
    fn is_reachable(&self, base_url: &str) -> Result<bool> {
        let ep = super::cloud::Endpoint::parse(base_url)?;
        let addrs = match (ep.host.as_str(), ep.port).to_socket_addrs() {
            Ok(a) => a,
            Err(_) => return Ok(false), // name resolution failed: offline for our purposes
        };
        for addr in addrs {
            if TcpStream::connect_timeout(&addr, self.timeout).is_ok() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

// ---------------------------------------------------------------------------------------------
// Budgets
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct BudgetState {
    requests: VecDeque<Instant>,
    spend: VecDeque<(Instant, f64)>,
}

/// Sliding-window budgets: requests in the last 60 s and estimated spend in the last 24 h.
#[derive(Default)]
pub struct Budget {
    state: Mutex<BudgetState>,
}

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

impl Budget {
    /// Which budget (if any) `cost` would exceed at `now`; records the request when `reserve`
    /// and nothing is exceeded.
    fn check(&self, policy: &RouterPolicy, now: Instant, cost: f64, reserve: bool) -> Result<Option<Reason>> {
        let mut st = self.state.lock().map_err(|_| Error::Storage { reason: "budget lock poisoned".into() })?;
        let old = |t: &Instant, window: Duration| now.checked_duration_since(*t).is_some_and(|d| d >= window);
        while st.requests.front().is_some_and(|t| old(t, MINUTE)) {
            st.requests.pop_front();
        }
        while st.spend.front().is_some_and(|(t, _)| old(t, DAY)) {
            st.spend.pop_front();
        }
        if let Some(rpm) = policy.max_requests_per_minute {
            if st.requests.len() >= rpm as usize {
                return Ok(Some(Reason::RateLimited));
            }
        }
        if let Some(max) = policy.max_cost_per_day_usd {
            let spent: f64 = st.spend.iter().map(|(_, c)| c).sum();
            if spent + cost > max {
                return Ok(Some(Reason::CostBudgetExceeded));
            }
        }
        if reserve {
            st.requests.push_back(now);
            st.spend.push_back((now, cost));
        }
        Ok(None)
    }
}

// ---------------------------------------------------------------------------------------------
// The decision
// ---------------------------------------------------------------------------------------------

/// What a decision is made on: the text, metadata from the app and the local model, and the
/// configured endpoint.
#[derive(Clone, Copy, Debug)]
pub struct DecisionInput<'a> {
    /// The whole request.
    pub request: &'a ChatRequest,
    /// App and local-model signals.
    pub meta: &'a RequestMeta,
    /// The configured cloud endpoint (`None` when the app gave none).
    pub endpoint: Option<&'a str>,
    /// Tokens the request's text takes for the local model.
    pub prompt_tokens: usize,
    /// The local model's context window, in tokens.
    pub context_limit: usize,
}

/// A policy plus its mutable state (budgets) and reachability probe.
pub struct PolicyEngine {
    policy: RouterPolicy,
    budget: Budget,
    probe: Arc<dyn Reachability>,
}

impl PolicyEngine {
    /// An engine for `policy` (validate it first; an invalid policy makes every decision local).
    pub fn new(policy: RouterPolicy, probe: Arc<dyn Reachability>) -> Self {
        Self { policy, budget: Budget::default(), probe }
    }

    /// The policy.
    pub fn policy(&self) -> &RouterPolicy {
        &self.policy
    }

    /// Replaces the reachability probe.
    pub fn set_probe(&mut self, probe: Arc<dyn Reachability>) {
        self.probe = probe;
    }

    /// Runs the probe (errors and panics count as unreachable).
    pub fn probe_reachable(&self, base_url: &str) -> Result<bool> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.probe.is_reachable(base_url))) {
            Ok(r) => r,
            Err(_) => Err(Error::CloudUnavailable { reason: "reachability probe panicked".into() }),
        }
    }

    /// Reserves one cloud request of about `prompt_tokens` in the budgets; false when a budget
    /// is spent (used when draining the offline queue).
    pub fn reserve_budget(&self, prompt_tokens: u64) -> bool {
        let cost = self.policy.estimate_cost_usd(prompt_tokens as usize, self.policy.expected_output_tokens as usize);
        matches!(self.budget.check(&self.policy, Instant::now(), cost, true), Ok(None))
    }

    /// Decides where `input` runs, now. Never fails (see the module docs).
    pub fn decide(&self, input: &DecisionInput<'_>) -> RouteDecision {
        self.decide_at(input, Instant::now())
    }

    /// Decides as if the time were `now` (for budget tests).
    pub fn decide_at(&self, input: &DecisionInput<'_>, now: Instant) -> RouteDecision {
        let mut categories = Vec::new();
        let res =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.try_decide(input, now, &mut categories)));
        match res {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                log::warn!("router: decision failed ({e}); routing local");
                RouteDecision::fail_closed(categories)
            }
            Err(_) => {
                log::warn!("router: decision panicked; routing local");
                RouteDecision::fail_closed(Vec::new())
            }
        }
    }

    fn try_decide(
        &self,
        input: &DecisionInput<'_>,
        now: Instant,
        categories: &mut Vec<Category>,
    ) -> Result<RouteDecision> {
        let p = &self.policy;
        p.validate()?;
        let scan = scan_request(input.request);
        *categories = scan.categories.clone();

        // Triggers: what would make the cloud worth it.
        let mut reasons = Vec::new();
        if input.meta.cloud_requested {
            reasons.push(Reason::AppRequested);
        }
        let expected_out = p.expected_output(input.request);
        if p.escalate_on_context_overflow && input.prompt_tokens.saturating_add(expected_out) > input.context_limit {
            reasons.push(Reason::ContextExceedsLocal);
        }
        if let Some(lp) = input.meta.local_mean_logprob {
            if !lp.is_finite() {
                return Err(Error::InvalidParameter { name: "local_mean_logprob", reason: "not finite".into() });
            }
            if p.low_confidence_logprob.is_some_and(|threshold| lp < threshold) {
                reasons.push(Reason::LowLocalConfidence);
            }
        }
        let has_trigger = !reasons.is_empty();

        // Blockers that need no network: all reported.
        let mut blocked = false;
        let mut block = |reasons: &mut Vec<Reason>, r: Reason| {
            reasons.push(r);
            blocked = true;
        };
        if !has_trigger {
            block(&mut reasons, Reason::NoEscalationReason);
        }
        if !p.cloud_enabled {
            block(&mut reasons, Reason::CloudDisabled);
        }
        let endpoint = input.endpoint.filter(|e| !e.trim().is_empty());
        if endpoint.is_none() {
            block(&mut reasons, Reason::NoEndpoint);
        }
        if scan.sensitive {
            block(&mut reasons, Reason::Sensitive);
        }
        let cost = p.estimate_cost_usd(input.prompt_tokens, expected_out);
        if let Some(r) = self.budget.check(p, now, cost, false)? {
            block(&mut reasons, r);
        }
        // The gate's learned second stage, only for a request about to leave (local answers pay
        // nothing): it can add a block on what the rules cleared, never remove one.
        if !blocked && second_stage_blocks(input.request) {
            reasons.push(Reason::Sensitive);
            blocked = true;
        }
        let Some(endpoint) = endpoint.filter(|_| !blocked) else {
            return Ok(RouteDecision { target: Target::Local, reasons, categories: scan.categories });
        };

        // The network last: the probe opens a connection.
        if !self.probe_reachable(endpoint)? {
            reasons.push(Reason::Offline);
            return Ok(RouteDecision { target: Target::Local, reasons, categories: scan.categories });
        }
        if let Some(r) = self.budget.check(p, now, cost, true)? {
            reasons.push(r);
            return Ok(RouteDecision { target: Target::Local, reasons, categories: scan.categories });
        }
        Ok(RouteDecision { target: Target::Cloud, reasons, categories: scan.categories })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Role;

    const EP: &str = "http://127.0.0.1:9/v1";

    fn online() -> Arc<dyn Reachability> {
        Arc::new(|_: &str| Ok(true))
    }
    fn offline() -> Arc<dyn Reachability> {
        Arc::new(|_: &str| Ok(false))
    }

    struct Case {
        name: &'static str,
        request: ChatRequest,
        meta: RequestMeta,
        policy: RouterPolicy,
        endpoint: Option<&'static str>,
        probe: Arc<dyn Reachability>,
        prompt_tokens: usize,
        want: Target,
        want_reasons: Vec<Reason>,
    }

    fn asked() -> RequestMeta {
        RequestMeta { cloud_requested: true, local_mean_logprob: None }
    }

    fn benign() -> ChatRequest {
        ChatRequest::user("What is the capital of France?")
    }

    // Synthetic personal data only.
    fn sensitive_variants() -> Vec<(&'static str, ChatRequest)> {
        let pii = "My email is jane.doe.1984@gmail.com and my phone is +44 7911 123456.";
        vec![
            ("new message", ChatRequest::user(pii)),
            ("system prompt", benign().with_system(pii)),
            (
                "history",
                ChatRequest::user(pii)
                    .with_message(Role::Assistant, "Noted.")
                    .with_message(Role::User, "Summarise our chat."),
            ),
            (
                "assistant history",
                ChatRequest::user("hi").with_message(Role::Assistant, pii).with_message(Role::User, "thanks"),
            ),
            ("attachment", benign().with_attachment(pii)),
        ]
    }

    fn run(c: &Case) -> RouteDecision {
        let engine = PolicyEngine::new(c.policy.clone(), c.probe.clone());
        let input = DecisionInput {
            request: &c.request,
            meta: &c.meta,
            endpoint: c.endpoint,
            prompt_tokens: c.prompt_tokens,
            context_limit: 2048,
        };
        engine.decide(&input)
    }

    #[test]
    fn table() {
        use Reason::*;
        let cloud = RouterPolicy::cloud_assist();
        let cases = vec![
            Case {
                name: "default policy stays local",
                request: benign(),
                meta: asked(),
                policy: RouterPolicy::default(),
                endpoint: Some(EP),
                probe: online(),
                prompt_tokens: 10,
                want: Target::Local,
                want_reasons: vec![AppRequested, CloudDisabled],
            },
            Case {
                name: "app asked, all clear",
                request: benign(),
                meta: asked(),
                policy: cloud.clone(),
                endpoint: Some(EP),
                probe: online(),
                prompt_tokens: 10,
                want: Target::Cloud,
                want_reasons: vec![AppRequested],
            },
            Case {
                name: "no reason",
                request: benign(),
                meta: RequestMeta::default(),
                policy: cloud.clone(),
                endpoint: Some(EP),
                probe: online(),
                prompt_tokens: 10,
                want: Target::Local,
                want_reasons: vec![NoEscalationReason],
            },
            Case {
                name: "no endpoint",
                request: benign(),
                meta: asked(),
                policy: cloud.clone(),
                endpoint: None,
                probe: online(),
                prompt_tokens: 10,
                want: Target::Local,
                want_reasons: vec![AppRequested, NoEndpoint],
            },
            Case {
                name: "blank endpoint",
                request: benign(),
                meta: asked(),
                policy: cloud.clone(),
                endpoint: Some("  "),
                probe: online(),
                prompt_tokens: 10,
                want: Target::Local,
                want_reasons: vec![AppRequested, NoEndpoint],
            },
            Case {
                name: "context overflow",
                request: benign(),
                meta: RequestMeta::default(),
                policy: cloud.clone(),
                endpoint: Some(EP),
                probe: online(),
                prompt_tokens: 1900,
                want: Target::Cloud,
                want_reasons: vec![ContextExceedsLocal],
            },
            Case {
                name: "context fits exactly",
                request: benign(),
                meta: RequestMeta::default(),
                policy: cloud.clone(),
                endpoint: Some(EP),
                probe: online(),
                prompt_tokens: 2048 - 256,
                want: Target::Local,
                want_reasons: vec![NoEscalationReason],
            },
            Case {
                name: "low confidence",
                request: benign(),
                meta: RequestMeta { cloud_requested: false, local_mean_logprob: Some(-3.1) },
                policy: cloud.clone(),
                endpoint: Some(EP),
                probe: online(),
                prompt_tokens: 10,
                want: Target::Cloud,
                want_reasons: vec![LowLocalConfidence],
            },
            Case {
                name: "confident enough",
                request: benign(),
                meta: RequestMeta { cloud_requested: false, local_mean_logprob: Some(-0.4) },
                policy: cloud.clone(),
                endpoint: Some(EP),
                probe: online(),
                prompt_tokens: 10,
                want: Target::Local,
                want_reasons: vec![NoEscalationReason],
            },
            Case {
                name: "offline",
                request: benign(),
                meta: asked(),
                policy: cloud.clone(),
                endpoint: Some(EP),
                probe: offline(),
                prompt_tokens: 10,
                want: Target::Local,
                want_reasons: vec![AppRequested, Offline],
            },
            Case {
                name: "rate zero",
                request: benign(),
                meta: asked(),
                policy: RouterPolicy { max_requests_per_minute: Some(0), ..cloud.clone() },
                endpoint: Some(EP),
                probe: online(),
                prompt_tokens: 10,
                want: Target::Local,
                want_reasons: vec![AppRequested, RateLimited],
            },
            Case {
                name: "cost zero",
                request: benign(),
                meta: asked(),
                policy: RouterPolicy { max_cost_per_day_usd: Some(0.0), ..cloud.clone() },
                endpoint: Some(EP),
                probe: online(),
                prompt_tokens: 10,
                want: Target::Local,
                want_reasons: vec![AppRequested, CostBudgetExceeded],
            },
            Case {
                name: "sensitive + no reason + disabled",
                request: ChatRequest::user("Call me on +44 7911 123456, I'm Jane Doe"),
                meta: RequestMeta::default(),
                policy: RouterPolicy::default(),
                endpoint: Some(EP),
                probe: online(),
                prompt_tokens: 10,
                want: Target::Local,
                want_reasons: vec![NoEscalationReason, CloudDisabled, Sensitive],
            },
        ];
        for c in &cases {
            let d = run(c);
            assert_eq!(d.target, c.want, "{}: {:?}", c.name, d);
            assert_eq!(d.reasons, c.want_reasons, "{}", c.name);
        }
    }

    /// The "never escalates" suite: sensitive data in any part of the request stays local under
    /// every preset, with every trigger on and the network up.
    #[test]
    fn sensitive_never_escalates_under_any_preset() {
        for (preset, policy) in RouterPolicy::presets() {
            for (part, request) in sensitive_variants() {
                let c = Case {
                    name: part,
                    request,
                    meta: RequestMeta { cloud_requested: true, local_mean_logprob: Some(-9.0) },
                    policy: policy.clone(),
                    endpoint: Some(EP),
                    probe: online(),
                    prompt_tokens: 5000,
                    want: Target::Local,
                    want_reasons: vec![],
                };
                let d = run(&c);
                assert_eq!(d.target, Target::Local, "{preset}/{part}");
                assert!(d.reasons.contains(&Reason::Sensitive), "{preset}/{part}: {d:?}");
                assert!(!d.categories.is_empty(), "{preset}/{part}");
            }
        }
    }

    /// The probe opens a connection, so it must not run when something else already blocks.
    #[test]
    fn probe_not_called_when_blocked() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = calls.clone();
        let probe: Arc<dyn Reachability> = Arc::new(move |_: &str| {
            c2.fetch_add(1, Ordering::SeqCst);
            Ok(true)
        });
        let engine = PolicyEngine::new(RouterPolicy::cloud_assist(), probe);
        let req = ChatRequest::user("My SSN is 536-22-8174");
        let meta = asked();
        let input =
            DecisionInput { request: &req, meta: &meta, endpoint: Some(EP), prompt_tokens: 5, context_limit: 2048 };
        assert_eq!(engine.decide(&input).target, Target::Local);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn errors_and_panics_fail_closed() {
        let req = benign();
        // A probe that errors.
        let err_probe: Arc<dyn Reachability> =
            Arc::new(|_: &str| Err(Error::CloudUnavailable { reason: "probe broke".into() }));
        // A probe that panics.
        let panic_probe: Arc<dyn Reachability> = Arc::new(|_: &str| -> Result<bool> { panic!("probe panicked") });
        for probe in [err_probe, panic_probe] {
            let engine = PolicyEngine::new(RouterPolicy::cloud_assist(), probe);
            let meta = asked();
            let input =
                DecisionInput { request: &req, meta: &meta, endpoint: Some(EP), prompt_tokens: 5, context_limit: 2048 };
            let d = engine.decide(&input);
            assert_eq!(d.target, Target::Local);
            assert_eq!(d.reasons, vec![Reason::DecisionError]);
        }
        // A non-finite signal from the caller.
        let engine = PolicyEngine::new(RouterPolicy::cloud_assist(), online());
        let meta = RequestMeta { cloud_requested: true, local_mean_logprob: Some(f32::NAN) };
        let input =
            DecisionInput { request: &req, meta: &meta, endpoint: Some(EP), prompt_tokens: 5, context_limit: 2048 };
        assert_eq!(engine.decide(&input), RouteDecision::fail_closed(vec![]));
        // An invalid policy.
        let bad = RouterPolicy { input_cost_per_1k_tokens_usd: f64::NAN, ..RouterPolicy::cloud_assist() };
        let engine = PolicyEngine::new(bad, online());
        let meta = asked();
        let input =
            DecisionInput { request: &req, meta: &meta, endpoint: Some(EP), prompt_tokens: 5, context_limit: 2048 };
        assert_eq!(engine.decide(&input).target, Target::Local);
    }

    #[test]
    fn rate_budget_slides() {
        let policy = RouterPolicy {
            max_requests_per_minute: Some(2),
            max_cost_per_day_usd: None,
            ..RouterPolicy::cloud_assist()
        };
        let engine = PolicyEngine::new(policy, online());
        let req = benign();
        let meta = asked();
        let input =
            DecisionInput { request: &req, meta: &meta, endpoint: Some(EP), prompt_tokens: 5, context_limit: 2048 };
        let t0 = Instant::now();
        assert_eq!(engine.decide_at(&input, t0).target, Target::Cloud);
        assert_eq!(engine.decide_at(&input, t0 + Duration::from_secs(1)).target, Target::Cloud);
        let d = engine.decide_at(&input, t0 + Duration::from_secs(2));
        assert_eq!(d.reasons, vec![Reason::AppRequested, Reason::RateLimited]);
        assert_eq!(engine.decide_at(&input, t0 + Duration::from_secs(61)).target, Target::Cloud);
    }

    #[test]
    fn cost_budget_accumulates() {
        // 1,000 prompt + 1,000 answer tokens at $1 + $1 per 1k = $2 per request; $5 a day => 2 requests.
        let policy = RouterPolicy {
            max_requests_per_minute: None,
            max_cost_per_day_usd: Some(5.0),
            input_cost_per_1k_tokens_usd: 1.0,
            output_cost_per_1k_tokens_usd: 1.0,
            ..RouterPolicy::cloud_assist()
        };
        let engine = PolicyEngine::new(policy, online());
        let req = ChatRequest { max_tokens: Some(1000), ..benign() };
        let meta = asked();
        let input =
            DecisionInput { request: &req, meta: &meta, endpoint: Some(EP), prompt_tokens: 1000, context_limit: 4096 };
        let t0 = Instant::now();
        assert_eq!(engine.decide_at(&input, t0).target, Target::Cloud);
        assert_eq!(engine.decide_at(&input, t0).target, Target::Cloud);
        assert!(engine.decide_at(&input, t0).reasons.contains(&Reason::CostBudgetExceeded));
        assert_eq!(engine.decide_at(&input, t0 + DAY).target, Target::Cloud);
    }

    #[test]
    fn decision_serializes_snake_case() {
        let d = RouteDecision {
            target: Target::Local,
            reasons: vec![Reason::AppRequested, Reason::Offline],
            categories: vec![],
        };
        let j = serde_json::to_string(&d).unwrap_or_default();
        assert_eq!(j, r#"{"target":"local","reasons":["app_requested","offline"],"categories":[]}"#);
        for r in [Reason::AppRequested, Reason::CostBudgetExceeded, Reason::DecisionError] {
            assert_eq!(serde_json::to_value(r).ok(), Some(serde_json::Value::String(r.as_str().into())));
        }
        assert!(d.wanted_cloud_but_offline());
    }

    #[test]
    fn tcp_probe_sees_a_listener_and_a_closed_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").ok();
        let Some(l) = l else { return };
        let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
        let p = TcpProbe { timeout: Duration::from_millis(500) };
        assert_eq!(p.is_reachable(&format!("http://127.0.0.1:{port}/v1")).ok(), Some(true));
        drop(l);
        assert_eq!(p.is_reachable(&format!("http://127.0.0.1:{port}/v1")).ok(), Some(false));
    }
}
