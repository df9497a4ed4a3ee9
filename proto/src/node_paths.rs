//! Paths of node calls that carry a client's value in their query string, encoded so
//! that a `&`, `=`, `#` or non-ASCII character reaches the node as the client sent it.

/// `/indexes/{uid}/documents?primaryKey={pk}`. Index uids are `[A-Za-z0-9_-]` (checked
/// where they are created); the primary key is any field name.
pub fn documents_with_primary_key(uid: &str, primary_key: &str) -> String {
    format!(
        "/indexes/{uid}/documents?primaryKey={}",
        query_value(primary_key)
    )
}

/// `value` encoded for a query string.
pub fn query_value(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `/indexes/{uid}/documents/{id}`, the id percent-encoded as a path segment (a space,
/// `/`, `?` or `%` in an id reaches the node as the client's id).
pub fn document(uid: &str, id: &str) -> String {
    let id: String = id
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect();
    format!("/indexes/{uid}/documents/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_ids_are_encoded_as_one_segment() {
        assert_eq!(document("books", "a-1_B"), "/indexes/books/documents/a-1_B");
        assert_eq!(
            document("books", " /?%é"),
            "/indexes/books/documents/%20%2F%3F%25%C3%A9"
        );
    }

    #[test]
    fn primary_keys_are_encoded() {
        assert_eq!(
            documents_with_primary_key("books", "id"),
            "/indexes/books/documents?primaryKey=id"
        );
        assert_eq!(
            documents_with_primary_key("books", "a&skipCreation=true #é"),
            "/indexes/books/documents?primaryKey=a%26skipCreation%3Dtrue+%23%C3%A9"
        );
    }
}
