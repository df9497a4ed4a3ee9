//! Webhook limits shared by the gateway (which answers clients) and the control plane
//! (which records webhooks), as Meilisearch 1.50 sets them.

/// Webhooks a fleet may have.
pub const MAX_WEBHOOKS: usize = 20;

/// Meilisearch's message when one more webhook would pass [`MAX_WEBHOOKS`].
pub fn too_many_webhooks() -> String {
    format!(
        "Defining too many webhooks would crush the server. Please limit the number of webhooks to {MAX_WEBHOOKS}. You may use a third-party proxy server to dispatch events to more than {MAX_WEBHOOKS} endpoints."
    )
}
