//! The privacy gate: the rules first, then (only for what the rules would let leave) the learned
//! second stage, which can add a block but never remove one.
//!
//! ```
//! use edgewise_pii::{gate, Stage};
//!
//! let g = gate().check("Call me on +44 7700 900123 after five.");
//! assert!(g.sensitive);
//! assert_eq!(g.stage, Stage::Rules); // the rules decided; the classifier did not run
//! assert!(g.classifier_score.is_none());
//! ```

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::classifier::{Classifier, ModelError, ScoreError};
use crate::{detector, PiiDetector, PiiReport};

/// The default time budget of the second stage per text (wall clock); past it the text stays
/// local. A safety bound well above the measured cost (well under 1 ms of CPU for 2,000
/// characters), so that only a pathological input or a starved device fails closed.
pub const DEFAULT_CLASSIFIER_BUDGET: Duration = Duration::from_millis(100);

/// Which stage made the gate's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The rules found sensitive data, or the rules alone cleared the text (no second stage).
    Rules,
    /// The classifier decided: it blocked, cleared, or failed closed on a text the rules cleared.
    Classifier,
}

impl Stage {
    /// `rules` or `classifier`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Rules => "rules",
            Stage::Classifier => "classifier",
        }
    }
}

/// Whether the gate has a usable second stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecondStage {
    /// A verified classifier runs after the rules.
    Present,
    /// No model (built without the `embedded-model` feature, or none given): rules-only behaviour.
    Absent,
    /// A model was given but failed verification: every text the rules clear is kept local.
    Invalid,
}

impl SecondStage {
    /// `present`, `absent` or `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            SecondStage::Present => "present",
            SecondStage::Absent => "absent",
            SecondStage::Invalid => "invalid",
        }
    }
}

/// Why the gate kept a text local without a classifier verdict. Fixed texts, never user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecondStageFailure {
    /// The model failed sha256 or format verification.
    ModelInvalid,
    /// The classifier ran past its time budget.
    Timeout,
    /// The classifier failed unexpectedly (a panic, caught).
    Error,
}

impl SecondStageFailure {
    /// `model_invalid`, `timeout` or `classifier_error`.
    pub fn as_str(self) -> &'static str {
        match self {
            SecondStageFailure::ModelInvalid => "model_invalid",
            SecondStageFailure::Timeout => "timeout",
            SecondStageFailure::Error => "classifier_error",
        }
    }
}

/// The gate's verdict on one text.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GateReport {
    /// Whether the text must stay on the device (rules or classifier).
    pub sensitive: bool,
    /// Which stage decided.
    pub stage: Stage,
    /// Whether a second stage is present.
    pub second_stage: SecondStage,
    /// The classifier's probability, when it ran and finished.
    pub classifier_score: Option<f32>,
    /// The classifier's threshold, when it ran.
    pub classifier_threshold: Option<f32>,
    /// Set when the gate kept the text local because the second stage failed.
    pub second_stage_failure: Option<SecondStageFailure>,
    /// The rules' report (categories and spans come only from the rules).
    pub rules: PiiReport,
}

impl GateReport {
    /// The verdict as a [`PiiReport`]: the rules' report, marked sensitive when the classifier
    /// blocked (then without categories or spans, and with the classifier's score as confidence).
    pub fn into_report(self) -> PiiReport {
        let mut r = self.rules;
        if self.sensitive && !r.sensitive {
            r.sensitive = true;
            r.confidence = self.classifier_score.unwrap_or(0.0);
        }
        r
    }
}

enum Second {
    Absent,
    Invalid,
    Ready(Box<Classifier>),
}

/// Rules plus an optional learned second stage. `Send + Sync`; build once or use [`gate()`].
pub struct PrivacyGate {
    rules: &'static PiiDetector,
    second: Second,
    budget: Duration,
}

impl std::fmt::Debug for PrivacyGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivacyGate").field("second_stage", &self.second_stage()).field("budget", &self.budget).finish()
    }
}

impl PrivacyGate {
    /// The rules alone (the report says `second_stage: absent`).
    pub fn rules_only() -> Self {
        PrivacyGate { rules: detector(), second: Second::Absent, budget: DEFAULT_CLASSIFIER_BUDGET }
    }

    /// Rules plus an already verified classifier.
    pub fn with_classifier(c: Classifier) -> Self {
        PrivacyGate { rules: detector(), second: Second::Ready(Box::new(c)), budget: DEFAULT_CLASSIFIER_BUDGET }
    }

    /// Rules plus the model in `bytes`, verified against `sha256` first. A model that fails
    /// verification makes the gate fail closed (every text the rules clear stays local).
    pub fn from_model_bytes(bytes: &[u8], sha256: &str) -> Self {
        Self::from_result(Some(Classifier::from_verified_bytes(bytes, sha256)))
    }

    /// Rules plus the shipped model (verified now), or rules only when the crate was built
    /// without the `embedded-model` feature.
    pub fn embedded() -> Self {
        Self::from_result(Classifier::embedded())
    }

    fn from_result(r: Option<Result<Classifier, ModelError>>) -> Self {
        let second = match r {
            None => {
                log::warn!("privacy gate: no second-stage model; rules-only behaviour");
                Second::Absent
            }
            Some(Ok(c)) => Second::Ready(Box::new(c)),
            Some(Err(e)) => {
                log::error!("privacy gate: {e}; every request the rules clear will stay local");
                Second::Invalid
            }
        };
        PrivacyGate { rules: detector(), second, budget: DEFAULT_CLASSIFIER_BUDGET }
    }

    /// Sets the second stage's time budget per text (default [`DEFAULT_CLASSIFIER_BUDGET`]).
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// Whether a verified second stage is present.
    pub fn second_stage(&self) -> SecondStage {
        match self.second {
            Second::Absent => SecondStage::Absent,
            Second::Invalid => SecondStage::Invalid,
            Second::Ready(_) => SecondStage::Present,
        }
    }

    /// The verdict on `text`. Never panics; fails closed.
    pub fn check(&self, text: &str) -> GateReport {
        let rules =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.rules.scan(text))).unwrap_or_else(|_| {
                log::error!("privacy gate: the rules failed; the request stays local");
                // A detector without patterns reports every text as sensitive (fail closed).
                PiiDetector { engine: None }.scan(text)
            });
        let second_stage = self.second_stage();
        let mut g = GateReport {
            sensitive: rules.sensitive,
            stage: Stage::Rules,
            second_stage,
            classifier_score: None,
            classifier_threshold: None,
            second_stage_failure: None,
            rules,
        };
        // The classifier only ever adds a block: it runs on what the rules would let leave.
        if g.sensitive || text.trim().is_empty() {
            return g;
        }
        match &self.second {
            Second::Absent => {}
            Second::Invalid => {
                g.sensitive = true;
                g.stage = Stage::Classifier;
                g.second_stage_failure = Some(SecondStageFailure::ModelInvalid);
            }
            Second::Ready(c) => {
                g.stage = Stage::Classifier;
                g.classifier_threshold = Some(c.threshold());
                let deadline = Instant::now() + self.budget;
                let scored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.score(text, Some(deadline))));
                let Ok(scored) = scored else {
                    log::error!("privacy gate: the classifier failed; the request stays local");
                    g.sensitive = true;
                    g.second_stage_failure = Some(SecondStageFailure::Error);
                    return g;
                };
                match scored {
                    Ok(p) if Instant::now() <= deadline => {
                        g.classifier_score = Some(p);
                        g.sensitive = p >= c.threshold();
                        if g.sensitive {
                            log::debug!("privacy gate: the classifier kept a request local (score {p:.3})");
                        }
                    }
                    Ok(_) | Err(ScoreError::Timeout) => {
                        log::warn!(
                            "privacy gate: the classifier ran past its {} ms budget; the request stays local",
                            self.budget.as_millis()
                        );
                        g.sensitive = true;
                        g.second_stage_failure = Some(SecondStageFailure::Timeout);
                    }
                }
            }
        }
        g
    }

    /// The verdict on `text` as a [`PiiReport`] (see [`GateReport::into_report`]).
    pub fn scan(&self, text: &str) -> PiiReport {
        self.check(text).into_report()
    }
}

/// The shared gate: the rules plus the shipped second stage, verified on first use.
pub fn gate() -> &'static PrivacyGate {
    static GATE: OnceLock<PrivacyGate> = OnceLock::new();
    GATE.get_or_init(PrivacyGate::embedded)
}
