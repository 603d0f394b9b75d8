//! The privacy check and the router's policy types.

use edgewise_core::router::{self as cr, pii};

use crate::error::EdgewiseResult;
use crate::types::{PiiReport, RouterPolicy};

/// Scans `text` for personal data on the device (nothing leaves it). Fails closed: an internal
/// failure reports `sensitive = true`.
#[uniffi::export]
pub fn privacy_check(text: String) -> EdgewiseResult<PiiReport> {
    Ok(pii::detector().scan(&text).into())
}

/// The default policy: everything stays on the device.
#[uniffi::export]
pub fn router_policy_local_only() -> EdgewiseResult<RouterPolicy> {
    Ok(cr::RouterPolicy::local_only().into())
}

/// Cloud allowed when a trigger calls for it (and the request is not sensitive); no queue.
#[uniffi::export]
pub fn router_policy_cloud_assist() -> EdgewiseResult<RouterPolicy> {
    Ok(cr::RouterPolicy::cloud_assist().into())
}

/// `cloud_assist` plus the offline queue (a cloud answer later when there is no signal now).
#[uniffi::export]
pub fn router_policy_field_worker() -> EdgewiseResult<RouterPolicy> {
    Ok(cr::RouterPolicy::field_worker().into())
}
