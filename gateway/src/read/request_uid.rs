//! Every search answer's `requestUid`, and a stored answer given a new one.

/// A search answer's `requestUid`: Meilisearch 1.50 makes a UUID v7 for every search
/// request (one for a whole multi-search), and so does the gateway for what it merges.
pub fn request_uid() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A stored answer given a new `requestUid` (each of its occurrences: a multi-search
/// repeats it in every result), as every answer has its own.
pub fn with_new_request_uid(body: &[u8]) -> axum::body::Bytes {
    const MEMBER: &[u8] = b"\"requestUid\":\"";
    let Some(at) = body.windows(MEMBER.len()).position(|w| w == MEMBER) else {
        return axum::body::Bytes::copy_from_slice(body);
    };
    let start = at + MEMBER.len();
    let Some(old) = body.get(start..start + 36) else {
        return axum::body::Bytes::copy_from_slice(body);
    };
    let new = request_uid();
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = rest.windows(old.len()).position(|w| w == old) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(new.as_bytes());
        rest = &rest[at + old.len()..];
    }
    out.extend_from_slice(rest);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_stored_answer_gets_a_new_request_uid_everywhere() {
        let old = request_uid();
        let body =
            format!(r#"{{"results":[{{"a":1,"requestUid":"{old}"}},{{"requestUid":"{old}"}}]}}"#);
        let fresh = with_new_request_uid(body.as_bytes());
        let fresh: Value = serde_json::from_slice(&fresh).unwrap();
        let new = fresh["results"][0]["requestUid"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_ne!(new, old);
        assert_eq!(new.len(), 36);
        assert_eq!(fresh["results"][1]["requestUid"], new.as_str());
        assert_eq!(fresh["results"][0]["a"], 1);
        assert_eq!(
            &with_new_request_uid(b"{\"hits\":[]}")[..],
            b"{\"hits\":[]}"
        );
    }
}
