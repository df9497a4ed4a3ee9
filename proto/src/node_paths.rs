//! Paths of node calls that carry a client's value in their query string, encoded so
//! that a `&`, `=`, `#` or non-ASCII character reaches the node as the client sent it.

/// `/indexes/{uid}/documents?primaryKey={pk}`. Index uids are `[A-Za-z0-9_-]` (checked
/// where they are created); the primary key is any field name.
pub fn documents_with_primary_key(uid: &str, primary_key: &str) -> String {
    let key: String = form_urlencoded::byte_serialize(primary_key.as_bytes()).collect();
    format!("/indexes/{uid}/documents?primaryKey={key}")
}

#[cfg(test)]
mod tests {
    use super::*;

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
