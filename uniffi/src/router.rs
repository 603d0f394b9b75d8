//! The privacy check, the router's policy presets and the `Router` object.
//!
//! `Router.send` blocks the caller's thread (like `ChatSession.chat`) and streams through the
//! host-implemented [`AnswerListener`] on that same thread; `cancel()` works from any thread.

use std::sync::Arc;

use edgewise_core::router::{self as cr, pii};
use edgewise_core::session::{self as css, CancelGroup};

use crate::adapter::AdapterScale;
use crate::engine::Engine;
use crate::error::{guard, EdgewiseError, EdgewiseResult};
use crate::session::{handle_of, CancelToken};
use crate::types::{
    core_tools, router_messages, to_i32, to_usize, ChatMessage, CloudEndpoint, GenerationParams, PiiReport,
    RequestMeta, RouteDecision, RoutedAnswer, RouterPolicy, SessionConfig, Tool, ToolChoice,
};

/// Scans `text` for personal data on the device (nothing leaves it) with the same gate the router
/// uses: the rules, then the embedded classifier on what the rules would let leave (a classifier
/// block is `sensitive` with no category). Fails closed: an internal failure reports
/// `sensitive = true`.
#[uniffi::export]
pub fn privacy_check(text: String) -> EdgewiseResult<PiiReport> {
    Ok(pii::gate().scan(&text).into())
}

/// The default policy: everything stays on the device.
#[uniffi::export]
pub fn router_policy_local_only() -> RouterPolicy {
    cr::RouterPolicy::local_only().into()
}

/// Cloud allowed when a trigger calls for it (and the request is not sensitive); no queue.
#[uniffi::export]
pub fn router_policy_cloud_assist() -> RouterPolicy {
    cr::RouterPolicy::cloud_assist().into()
}

/// `cloud_assist` plus the offline queue (a cloud answer later when there is no signal now).
#[uniffi::export]
pub fn router_policy_field_worker() -> RouterPolicy {
    cr::RouterPolicy::field_worker().into()
}

/// The core defaults (timeouts, retries, streaming) for an endpoint at `base_url` serving
/// `model`.
#[uniffi::export]
pub fn default_cloud_endpoint(base_url: String, model: String) -> CloudEndpoint {
    cr::cloud::CloudConfig::new(base_url, model).into()
}

/// Receives a routed answer as it streams, from the cloud or the device. Implemented in Kotlin
/// or Swift; called on the thread that called `Router.send`.
#[uniffi::export(foreign)]
pub trait AnswerListener: Send + Sync {
    /// A piece of answer text. Throwing stops the answer, and `send` fails with the thrown error.
    fn on_token(&self, text: String) -> Result<(), EdgewiseError>;
    /// The cloud failed after some text was delivered: discard what this answer showed so far;
    /// the local answer streams next, from its beginning.
    fn on_reset(&self) -> Result<(), EdgewiseError>;
}

/// The offline-first privacy router over a loaded [`Engine`]: each `send` is answered on the
/// device unless every condition for the cloud holds (cloud enabled with an endpoint, nothing
/// sensitive anywhere in the request, a reason, the network up, budgets left); a cloud failure
/// falls back to the device. Thread-safe; `send`s may run concurrently.
#[derive(uniffi::Object)]
pub struct Router {
    router: cr::Router,
    local: cr::LocalEngine,
    /// The requests running now, for `cancel()` (each also has its own handle).
    running: CancelGroup,
}

/// Forwards core's answer stream to the host listener, remembering the first host error.
struct Forward<'a> {
    listener: &'a dyn AnswerListener,
    failure: Option<EdgewiseError>,
}

impl cr::AnswerSink for Forward<'_> {
    fn on_text(&mut self, text: &str) -> bool {
        if self.failure.is_some() {
            return false;
        }
        match self.listener.on_token(text.to_string()) {
            Ok(()) => true,
            Err(e) => {
                self.failure = Some(e);
                false
            }
        }
    }

    fn on_reset(&mut self) {
        if let Err(e) = self.listener.on_reset() {
            self.failure.get_or_insert(e);
        }
    }
}

#[uniffi::export]
impl Router {
    /// A router answering locally with `engine` (each request gets a context of
    /// `session_config.max_context` tokens), deciding with `policy`, escalating to `cloud` (null
    /// keeps everything local) with `cloud_api_key` as its bearer token (never logged).
    /// `data_dir` holds the audit log (`audit.jsonl`) and the offline queue (`queue.wal`); it is
    /// created if missing.
    #[uniffi::constructor]
    pub fn new(
        engine: Arc<Engine>,
        session_config: SessionConfig,
        policy: RouterPolicy,
        cloud: Option<CloudEndpoint>,
        cloud_api_key: Option<String>,
        data_dir: String,
    ) -> EdgewiseResult<Arc<Self>> {
        guard("Router.new", || {
            std::fs::create_dir_all(&data_dir).map_err(cr_io)?;
            let config = cr::RouterConfig {
                policy: policy.into(),
                cloud: cloud
                    .map(|c| cr::cloud::CloudConfig { api_key: cloud_api_key.map(cr::cloud::ApiKey::new), ..c.into() }),
                ..cr::RouterConfig::local_only(&data_dir)
            };
            let router = cr::Router::new(config)?;
            let local =
                cr::LocalEngine::new(engine.core().clone(), session_config.into(), css::GenerationParams::default())?;
            Ok(Arc::new(Self { router, local, running: CancelGroup::new() }))
        })
    }

    /// Answers a conversation (`messages`: system prompt, history and the new user message,
    /// oldest first), streaming into `listener`. `params` drive local generation; their
    /// `max_tokens` and temperature are also sent to the cloud. Blocking: call it from a
    /// background thread. Fails only when the local model itself fails (or the listener throws),
    /// or with `Cancelled` when `cancel` fired before the request started (nothing was decided
    /// or sent). `cancel`: this request's own token; cancelling it stops this request only.
    /// `adapters`: the LoRA adapters and scales a local answer runs with (empty: the base model),
    /// as `ChatSession.set_adapters`; a request under another set than the pooled session's last
    /// never reuses its KV cache. The cloud never sees them. `Adapter` for an adapter loaded by
    /// an engine of another model; `InvalidParameter` for a non-finite scale.
    ///
    /// `tools` (with `tool_choice`, `Auto` when null) are offered to whoever answers: the
    /// device constrains its calls to them; the cloud gets them as OpenAI `tools` and its calls
    /// are checked against their schemas. They count as part of the request for the privacy
    /// check, like the calls and `Tool` results in `messages`. The answer's calls are in
    /// `RoutedAnswer.tool_calls`. `InvalidConstraint` for unusable tools.
    #[uniffi::method(default(cancel = None, adapters = [], tools = None, tool_choice = None))]
    pub fn send(
        &self,
        messages: Vec<ChatMessage>,
        meta: RequestMeta,
        params: GenerationParams,
        listener: Arc<dyn AnswerListener>,
        cancel: Option<Arc<CancelToken>>,
        adapters: Vec<AdapterScale>,
        tools: Option<Vec<Tool>>,
        tool_choice: Option<ToolChoice>,
    ) -> EdgewiseResult<RoutedAnswer> {
        let cancel = handle_of(cancel);
        let _registered = self.running.register(&cancel);
        guard("Router.send", || {
            let params: css::GenerationParams = params.into();
            let set: Vec<_> = adapters.into_iter().map(|a| (a.adapter.inner.clone(), a.scale)).collect();
            let request = cr::ChatRequest {
                messages: router_messages(messages)?,
                attachments: Vec::new(),
                max_tokens: Some(u32::try_from(params.max_tokens).unwrap_or(u32::MAX)),
                temperature: Some(params.sampling.temperature),
                tools: request_tools(tools, tool_choice)?,
                ..Default::default()
            }
            .with_adapters(&set)?;
            let mut sink = Forward { listener: listener.as_ref(), failure: None };
            let answer =
                self.local.answer_cancellable(&self.router, &request, &meta.into(), &params, &cancel, &mut sink);
            match sink.failure {
                Some(e) => Err(e),
                None => Ok(answer?.into()),
            }
        })
    }

    /// The local model's confidence on `messages`: the mean token log-probability (≤ 0) of a
    /// short greedy draft of `draft_tokens` (1..=256) tokens. Pass it as
    /// `RequestMeta.local_mean_logprob` so the policy's `low_confidence_logprob` can send a
    /// benign request the small model is unsure about to the cloud. Blocking (it generates).
    pub fn measure_confidence(&self, messages: Vec<ChatMessage>, draft_tokens: i32) -> EdgewiseResult<f32> {
        guard("Router.measure_confidence", || {
            let request = cr::ChatRequest { messages: router_messages(messages)?, ..Default::default() };
            Ok(self.local.draft_confidence(&request, to_usize(draft_tokens))?)
        })
    }

    /// Where `messages` would run now, without generating anything (for a badge before sending);
    /// pass the `tools` that `send` will offer (they count for the privacy check).
    #[uniffi::method(default(tools = None))]
    pub fn decide(
        &self,
        messages: Vec<ChatMessage>,
        meta: RequestMeta,
        tools: Option<Vec<Tool>>,
    ) -> EdgewiseResult<RouteDecision> {
        guard("Router.decide", || {
            let request = cr::ChatRequest {
                messages: router_messages(messages)?,
                tools: request_tools(tools, None)?,
                ..Default::default()
            };
            Ok(self.router.decide(&self.local, &request, &meta.into()).into())
        })
    }

    /// Stops every answer being produced now (cloud or local) before its next piece; they end
    /// with `finish_reason == Cancelled`. Requests started later are not affected. Safe from any
    /// thread. To stop one request, cancel its own [`CancelToken`] instead.
    pub fn cancel(&self) -> EdgewiseResult<()> {
        self.running.cancel_all();
        self.local.cancel_running();
        Ok(())
    }

    /// The policy in force.
    pub fn policy(&self) -> EdgewiseResult<RouterPolicy> {
        Ok(self.router.policy().clone().into())
    }

    /// Sends requests queued while offline to the cloud, if it is reachable now; returns how
    /// many were answered. The answers stay in the queue file.
    pub fn drain_queue(&self) -> EdgewiseResult<i32> {
        guard("Router.drain_queue", || Ok(to_i32(self.router.drain_queue()?.answered.len())))
    }
}

/// The request's tools: `None` when `tools` is null or empty.
fn request_tools(
    tools: Option<Vec<Tool>>,
    choice: Option<ToolChoice>,
) -> edgewise_core::Result<Option<edgewise_core::structured::tools::Tools>> {
    match tools.filter(|t| !t.is_empty()) {
        Some(t) => Ok(Some(core_tools(t, choice.unwrap_or(ToolChoice::Auto))?)),
        None => Ok(None),
    }
}

fn cr_io(e: std::io::Error) -> EdgewiseError {
    edgewise_core::Error::Io(e).into()
}
