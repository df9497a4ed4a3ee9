//! Webhook delivery (Meilisearch 1.50's `/webhooks`): once a client task's outcome is
//! recorded (the first time a gateway sees it finished, or the gateways' sweep), the
//! leader posts it to every webhook of the topology as Meilisearch posts a finished batch:
//! gzip-compressed NDJSON, one task view per line, with the webhook's headers after the
//! defaults. Each task is its own batch in Miroir, so each is its own delivery. As in
//! Meilisearch, a failed delivery is logged and not retried.

use crate::state::ServiceState;
use flate2::Compression;
use flate2::write::GzEncoder;
use miroir_proto::pb;
use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tracing::Instrument;

/// How long one delivery may take, as Meilisearch's.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .build()
            .unwrap_or_default()
    })
}

/// The body of one delivery: `task_views` (JSON texts) as gzip-compressed NDJSON.
pub fn payload<'a>(task_views: impl IntoIterator<Item = &'a str>) -> std::io::Result<Vec<u8>> {
    let mut gzip = GzEncoder::new(Vec::new(), Compression::fast());
    for view in task_views {
        gzip.write_all(view.as_bytes())?;
        gzip.write_all(b"\n")?;
    }
    gzip.finish()
}

/// Posts the finished task `task_view` (its JSON) to every webhook of the topology, in
/// the background.
pub fn deliver(state: &Arc<ServiceState>, uid: u32, task_view: &str) {
    let webhooks = state.topology().webhooks.clone();
    if webhooks.is_empty() {
        return;
    }
    let body = match payload([task_view]) {
        Ok(body) => bytes::Bytes::from(body),
        Err(error) => {
            tracing::error!(%error, uid, "could not compress a webhook payload");
            return;
        }
    };
    for webhook in webhooks {
        let span = tracing::info_span!("webhook_delivery", webhook = %webhook.uuid, task = uid);
        tokio::spawn(post(webhook, body.clone()).instrument(span));
    }
}

async fn post(webhook: pb::Webhook, body: bytes::Bytes) {
    let mut request = client()
        .post(&webhook.url)
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip");
    // The webhook's own headers come last, so they can replace the defaults.
    for (name, value) in &webhook.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    match request.body(body).send().await {
        Ok(response) if response.status().is_success() => {
            tracing::debug!(status = %response.status(), "webhook delivered");
        }
        Ok(response) => tracing::error!(
            url = %webhook.url,
            status = %response.status(),
            "While sending data to the webhook: http status {}",
            response.status().as_u16()
        ),
        Err(error) => {
            tracing::error!(url = %webhook.url, %error, "While sending data to the webhook")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn payloads_are_gzip_ndjson() {
        let body = payload([r#"{"uid":1}"#, r#"{"uid":2}"#]).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "{\"uid\":1}\n{\"uid\":2}\n");
    }
}
